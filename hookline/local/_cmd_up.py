"""``hookline up``: run the whole pipeline locally on the embedded Kafka, with a demo."""

from __future__ import annotations

import argparse
import sys

from hookline.settings import Settings

ROLES = ["api", "router", "deliver", "logsink", "health"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--roles", default=",".join(ROLES), help=f"roles to run (default {','.join(ROLES)})")
    p.add_argument("--no-demo", action="store_true", help="no demo receiver, webhook or sample events")
    p.add_argument(
        "--events", type=int, default=24, help="sample events to publish for the demo (default 24)"
    )
    p.add_argument("--receiver-port", type=int, default=8001)
    p.add_argument(
        "--exit-after-demo",
        action="store_true",
        help="stop everything once every demo delivery arrived verified (exit 1 if not in time)",
    )
    p.add_argument("--keep-kafka", action="store_true", help="leave the local broker running on exit")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the demo deliveries")


def run(args: argparse.Namespace, settings: Settings) -> int:
    import signal
    import threading

    from hookline.local.kafka import KafkaSetupError
    from hookline.local.up import Pipeline, UpError

    roles = [r.strip() for r in args.roles.split(",") if r.strip()]
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        print(f"hookline up: unknown roles {unknown}; choose from {ROLES}", file=sys.stderr)
        return 2
    pipeline = Pipeline(settings, receiver_port=args.receiver_port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    demo = not args.no_demo
    try:
        api_key = pipeline.up(roles=roles, demo=demo, events=args.events, keep_kafka=args.keep_kafka)
        s = settings
        pipeline.say("─" * 60)
        pipeline.say(f"API            : http://127.0.0.1:{s.api_port}/api/webhooks   (X-API-Key: {api_key})")
        pipeline.say(f"OpenAPI        : http://127.0.0.1:{s.api_port}/openapi.json")
        pipeline.say(
            f"metrics        : router :{s.router_metrics_port}  deliver :{s.deliver_metrics_port}  "
            f"logsink :{s.logsink_metrics_port}  (/metrics, /healthz, /readyz)"
        )
        pipeline.say("more events    : .venv/bin/hookline produce --count 100 --account demo")
        if "api" in roles:
            # Last, so it is what the reader sees: the page shows the webhooks and their delivery logs.
            page = f"http://127.0.0.1:{s.api_port}/"
            pipeline.say(f"web page       : {page}   (sign in with the API key above)")
        pipeline.say("─" * 60)
        if demo and args.events and "deliver" in roles:
            ok = pipeline.wait_verified(args.events, args.timeout)
            if ok:
                pipeline.say(f"all {args.events} demo deliveries arrived with valid signatures")
            else:
                pipeline.say(
                    f"only {len(pipeline.verified)} of {args.events} demo deliveries arrived in time"
                )
                if args.exit_after_demo:
                    return 1
        if args.exit_after_demo:
            return 0
        running = "running; press Ctrl-C to stop everything"
        if "api" in roles:
            running = f"running; web page: http://127.0.0.1:{s.api_port}/  (Ctrl-C stops everything)"
        pipeline.say(running)
        while not stop.wait(0.5):
            pass
        return 0
    except (UpError, KafkaSetupError) as exc:
        print(f"hookline up: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        pipeline.say("stopping ...")
        pipeline.stop()
