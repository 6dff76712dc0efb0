"""``hookline router``: join events with webhook configs into delivery tasks."""

from __future__ import annotations

import argparse
import logging

from hookline.settings import Settings


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metrics-port", type=int, help="port for /metrics, /healthz, /readyz (default 9102)")
    p.add_argument(
        "--replay-rate",
        type=float,
        default=500.0,
        help="most delivery tasks one replay produces per second (default 500; 0 = unlimited)",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    import faust

    from hookline.logs import setup_logging
    from hookline.probes import ProbeServer
    from processors.router.app import Router

    setup_logging(settings, role="router")
    # uvloop costs less per wake-up than asyncio's loop, and at everyday rates the router pays per
    # wake-up, not per byte (README: Where the CPU goes). mode sets the policy, so Faust's consumer
    # thread gets a uvloop loop too.
    import mode.loop

    mode.loop.use("uvloop")
    # Faust narrates every service start and stop at INFO; keep its warnings and errors.
    for name in ("faust", "mode"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))
    router = Router(settings, replay_rate=args.replay_rate)
    port = args.metrics_port if args.metrics_port is not None else settings.router_metrics_port
    probes = ProbeServer(router.registry, settings.metrics_host, port, ready=router.ready).start()
    router.view.start()
    router.replays.start()
    worker = faust.Worker(
        router.app, loglevel=settings.log_level, override_logging=False, redirect_stdouts=False, quiet=True
    )
    # Faust gives every Worker a terminal spinner, `quiet` or not, and only turns it off while
    # setting up logging, which override_logging=False skips: it would end the start-up by
    # writing a backspace and the show-cursor escape code (ESC [?25h) into the log.
    worker.spinner = None
    try:
        worker.execute_from_commandline()
    finally:
        router.replays.stop()
        router.view.stop()
        probes.stop()
    return 0
