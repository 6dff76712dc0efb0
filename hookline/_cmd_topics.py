"""``hookline topics create|list``."""

from __future__ import annotations

import argparse
import sys

from hookline.settings import Settings


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["create", "list"])


def run(args: argparse.Namespace, settings: Settings) -> int:
    from hookline.clients import BrokerUnavailable, create_topics, wait_for_broker
    from hookline.topics import all_topics

    try:
        wait_for_broker(settings, timeout=10)
    except BrokerUnavailable as exc:
        print(f"hookline topics: {exc}. Start one with `hookline kafka start`.", file=sys.stderr)
        return 1
    if args.action == "list":
        for spec in all_topics(settings):
            cfg = " ".join(f"{k}={v}" for k, v in sorted(spec.config.items()))
            print(f"{spec.full_name(settings):40} partitions={spec.partitions:<3} {cfg}")
        return 0
    created, present = create_topics(settings)
    for name in created:
        print(f"created  {name}")
    for name in present:
        print(f"exists   {name}")
    print(f"{len(created)} created, {len(present)} already present")
    return 0
