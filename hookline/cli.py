"""The ``hookline`` console command: one subcommand per role or tool.

Subcommands are named by module path and imported only when run, so the kernel itself never
imports Faust, httpx or the role packages (each command module exposes ``add_arguments`` and ``run``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from hookline import __version__
from hookline.settings import SettingsError, load_settings

__all__ = ["main"]

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "kafka": ("hookline._cmd_kafka", "Fetch, start, stop or inspect the local Apache Kafka broker."),
    "topics": ("hookline._cmd_topics", "Create every hookline topic (idempotent) or list them."),
    "router": ("processors._cmd_router", "Run the router: join events with webhook configs into tasks."),
    "deliver": (
        "processors._cmd_deliver",
        "Run a delivery worker: sign and POST tasks, retry, record every attempt.",
    ),
    "api": ("producers._cmd_api", "Run the management API: create, list, change and delete webhooks."),
    "logsink": (
        "processors._cmd_logsink",
        "Run the log sink: write every delivery attempt from the results topic to the log store.",
    ),
    "receiver": (
        "hookline._cmd_receiver",
        "Run a demo receiver that verifies signatures and prints deliveries.",
    ),
    "up": ("hookline._cmd_up", "Run the whole pipeline locally (broker, roles, demo receiver and events)."),
    "settings": ("hookline._cmd_settings", "Print every HOOKLINE_* setting, its value and meaning."),
    "produce": ("producers._cmd_produce", "Publish realistic sample events of all six kinds."),
    "bench": (
        "benchmarks._cmd_bench",
        "Benchmark throughput, latency and memory of the pipeline beside raw baselines.",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hookline", description="Kafka-native webhook delivery.")
    parser.add_argument("--version", action="version", version=f"hookline {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        mod = importlib.import_module(module)
        mod.add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"hookline: {exc}", file=sys.stderr)
        return 2
    mod = importlib.import_module(args._module)
    try:
        return int(mod.run(args, settings) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
