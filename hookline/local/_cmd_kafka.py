"""``hookline kafka fetch|start|stop|status``."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from hookline.settings import Settings

if TYPE_CHECKING:
    from hookline.local.kafka import LocalKafka

BROKERS_HELP = (
    "nodes of a local KRaft cluster, each a broker and a controller (default 1: the single broker). "
    "Node i listens on HOOKLINE_KAFKA_PORT + 2(i-1) for clients and HOOKLINE_KAFKA_CONTROLLER_PORT + 2(i-1) "
    "for the quorum (9092/9093, 9094/9095, 9096/9097 for 3), keeps its data and log in "
    "HOOKLINE_HOME/kafka/node-<i>; with 3 or more, topics get 3 replicas and min.insync.replicas=2. "
    "status and stop without --brokers cover every node under HOOKLINE_HOME"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["fetch", "start", "stop", "status"])
    p.add_argument("--port", type=int, help="client port (default HOOKLINE_KAFKA_PORT, 9092)")
    p.add_argument("--home", help="directory for jars, data and logs (default HOOKLINE_HOME, .hookline)")
    p.add_argument("--brokers", type=int, metavar="N", help=BROKERS_HELP)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from hookline.local.kafka import KafkaSetupError, LocalKafka

    if args.port:
        settings = settings.replace(kafka_port=args.port, kafka_controller_port=args.port + 1)
    if args.home:
        settings = settings.replace(home=Path(args.home))
    try:
        if args.action == "fetch":
            print(LocalKafka(settings).fetch())
        elif args.action == "start":
            print(LocalKafka(settings, brokers=args.brokers or 1).start().describe())
        elif args.action == "stop":
            stopped = [k.stop() for k in _every_broker(settings, args.brokers)]
            print("stopped" if any(stopped) else "was not running")
        else:
            kafkas = _every_broker(settings, args.brokers)
            running = [k for k in kafkas if k.status().running]
            for k in running or kafkas[-1:]:
                print(k.status().describe())
            return 0 if running else 3
    except KafkaSetupError as exc:
        print(f"hookline kafka {args.action}: {exc}", file=sys.stderr)
        return 1
    return 0


def _every_broker(settings: Settings, brokers: int | None) -> list[LocalKafka]:
    """The single broker and the cluster formatted under HOOKLINE_HOME, or just the ``--brokers`` one."""
    from hookline.local.kafka import LocalKafka

    if brokers:
        return [LocalKafka(settings, brokers=brokers)]
    cluster = LocalKafka.formatted_brokers(settings)
    kafkas = [LocalKafka(settings)]
    if cluster is not None and cluster > 1:
        kafkas.append(LocalKafka(settings, brokers=cluster))
    return kafkas
