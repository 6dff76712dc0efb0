"""``hookline health``: failure streaks per webhook, alerts and disables (docs/architecture.md §6)."""

from __future__ import annotations

import argparse
import logging

from hookline.settings import Settings


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metrics-port", type=int, help="port for /metrics, /healthz, /readyz (default 9105)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    import faust

    from hookline.logs import setup_logging
    from hookline.probes import ProbeServer
    from processors.health.app import HealthApp

    setup_logging(settings, role="health")
    import mode.loop

    mode.loop.use("uvloop")  # as the router (processors/router/_cmd.py)
    # Faust narrates every service start and stop at INFO; keep its warnings and errors.
    for name in ("faust", "mode"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))
    health = HealthApp(settings)
    port = args.metrics_port if args.metrics_port is not None else settings.health_metrics_port
    probes = ProbeServer(health.registry, settings.metrics_host, port, ready=health.ready).start()
    health.view.start()
    worker = faust.Worker(
        health.app, loglevel=settings.log_level, override_logging=False, redirect_stdouts=False, quiet=True
    )
    worker.spinner = None  # no terminal spinner escape codes in the log (see processors/router/_cmd.py)
    try:
        worker.execute_from_commandline()
    finally:
        health.view.stop()
        probes.stop()
    return 0
