"""``hookline kafka fetch|start|stop|status``."""

from __future__ import annotations

import argparse
import sys

from hookline.settings import Settings


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["fetch", "start", "stop", "status"])
    p.add_argument("--port", type=int, help="client port (default HOOKLINE_KAFKA_PORT, 9092)")
    p.add_argument("--home", help="directory for jars, data and logs (default HOOKLINE_HOME, .hookline)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from hookline.local.kafka import KafkaSetupError, LocalKafka

    if args.port:
        settings = settings.replace(kafka_port=args.port, kafka_controller_port=args.port + 1)
    if args.home:
        settings = settings.replace(home=Path(args.home))
    kafka = LocalKafka(settings)
    try:
        if args.action == "fetch":
            print(kafka.fetch())
        elif args.action == "start":
            print(kafka.start().describe())
        elif args.action == "stop":
            print("stopped" if kafka.stop() else "was not running")
        else:
            st = kafka.status()
            print(st.describe())
            return 0 if st.running else 3
    except KafkaSetupError as exc:
        print(f"hookline kafka {args.action}: {exc}", file=sys.stderr)
        return 1
    return 0
