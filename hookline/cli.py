"""The ``hookline`` console command: one subcommand per role or tool.

Each subcommand lives in its own module (``add_arguments`` and ``run``), named here by path and
imported only when that command runs: ``hookline --version`` and ``hookline --help`` import no
role, and an install without ``benchmarks`` (the container image) simply has no ``bench``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence

from hookline import __version__
from hookline.settings import SettingsError, load_settings

__all__ = ["COMMANDS", "build_parser", "main"]

# name -> (module, one-line help)
_ALL_COMMANDS: dict[str, tuple[str, str]] = {
    "api": ("api._cmd", "Run the management API: create, list, change and delete webhooks."),
    "router": ("processors.router._cmd", "Run the router: join events with webhook configs into tasks."),
    "deliver": (
        "processors.deliver._cmd",
        "Run a delivery worker: sign and POST tasks, retry, record every attempt.",
    ),
    "logsink": (
        "processors.logsink._cmd",
        "Run the log sink: write every delivery attempt from the results topic to the log store.",
    ),
    "health": (
        "processors.health._cmd",
        "Run the health processor: failure streaks per webhook, alerts, and disables.",
    ),
    "topics": ("hookline._cmd_topics", "Create every hookline topic (idempotent) or list them."),
    "erase": (
        "hookline._cmd_erase",
        "Erase a contact's deliveries from the log store (GDPR Art. 17) and record the erasure.",
    ),
    "settings": ("hookline._cmd_settings", "Print every HOOKLINE_* setting, its value and meaning."),
    "produce": ("producers._cmd_produce", "Publish realistic sample events of all six kinds."),
    "up": (
        "hookline.local._cmd_up",
        "Run the whole pipeline locally (broker, roles, demo receiver and events).",
    ),
    "kafka": ("hookline.local._cmd_kafka", "Fetch, start, stop or inspect the local Apache Kafka broker."),
    "receiver": (
        "hookline.local._cmd_receiver",
        "Run a demo receiver that verifies signatures and prints deliveries.",
    ),
    "bench": (
        "benchmarks._cmd_bench",
        "Benchmark throughput, latency and memory of the pipeline beside raw baselines.",
    ),
}


def _available(module: str) -> bool:
    """True when the top-level package of ``module`` is installed (``benchmarks`` is not in the image)."""
    return importlib.util.find_spec(module.split(".")[0]) is not None


#: The commands of this install.
COMMANDS: dict[str, tuple[str, str]] = {
    name: entry for name, entry in _ALL_COMMANDS.items() if _available(entry[0])
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported, to add that command's own arguments."""
    parser = argparse.ArgumentParser(prog="hookline", description="Kafka-native webhook delivery.")
    parser.add_argument("--version", action="version", version=f"hookline {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        if name == command:
            importlib.import_module(module).add_arguments(p)
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv``: its first word that is not an option."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command_of(argv))
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
