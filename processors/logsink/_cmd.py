"""``hookline logsink``: write every delivery attempt from the results topic into the log store."""

from __future__ import annotations

import argparse

from hookline.settings import Settings


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metrics-port", type=int, help="port for /metrics, /healthz, /readyz (default 9104)")
    p.add_argument(
        "--from-beginning",
        action="store_true",
        help="read the results topic again from its start (rebuilds a store; stored rows are not duplicated)",
    )
    p.add_argument(
        "--purge-interval", type=float, default=300.0, help="seconds between retention purges (default 300)"
    )
    p.add_argument("--batch-size", type=int, default=500, help="results written per transaction at most")


def run(args: argparse.Namespace, settings: Settings) -> int:
    import logging
    import signal
    import threading

    from hookline.logs import setup_logging
    from hookline.probes import ProbeServer
    from processors.logsink.app import LogSink

    setup_logging(settings, role="logsink")
    log = logging.getLogger("hookline.logsink")
    sink = LogSink(
        settings,
        from_beginning=args.from_beginning,
        purge_interval=args.purge_interval,
        batch_size=args.batch_size,
    )
    port = args.metrics_port if args.metrics_port is not None else settings.logsink_metrics_port
    probes = ProbeServer(sink.registry, settings.metrics_host, port, ready=sink.ready, healthy=sink.healthy)
    probes.start()
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        log.info("log sink: %s received, finishing the batch in hand", signal.Signals(signum).name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    try:
        sink.run(stop)
    except Exception:
        log.exception("log sink failed")
        return 1
    finally:
        probes.stop()
    log.info("log sink stopped")
    return 0
