"""``hookline topics create|list|retention``."""

from __future__ import annotations

import argparse
import sys

from hookline.settings import Settings


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "action",
        choices=["create", "list", "retention"],
        help="create the missing topics; list them; retention: set retention.ms of the existing"
        " delete-policy topics to their HOOKLINE_RETENTION_*_DAYS settings (docs/data-retention.md)",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    from hookline.clients import BrokerUnavailable, TopicsNotVisible, create_topics, wait_for_broker
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
    if args.action == "retention":
        return _retention(settings)
    try:
        created, present = create_topics(settings)
    except TopicsNotVisible as exc:
        print(f"hookline topics: {exc}; run `hookline topics create` again.", file=sys.stderr)
        return 1
    for name in created:
        print(f"created  {name}")
    for name in present:
        print(f"exists   {name}")
    print(f"{len(created)} created, {len(present)} already present")
    return 0


def _retention(settings: Settings) -> int:
    """Bring the existing delete-policy topics' ``retention.ms`` to the settings (create never alters)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
    )

    from hookline.clients import admin_client, describe_topic_config
    from hookline.topics import all_topics

    admin = admin_client(settings)
    existing = set(admin.list_topics(timeout=10).topics)
    changed = failed = 0
    for spec in all_topics(settings):
        wanted = spec.config.get("retention.ms")
        if wanted is None or spec.config.get("cleanup.policy", "delete") != "delete":
            continue  # compacted topics keep their latest record per key
        name = spec.full_name(settings)
        if name not in existing:
            print(f"missing  {name} (hookline topics create makes it)")
            continue
        current = describe_topic_config(settings, name).get("retention.ms")
        if current == wanted:
            print(f"kept     {name} retention.ms={wanted}")
            continue
        entry = ConfigEntry("retention.ms", wanted, incremental_operation=AlterConfigOpType.SET)
        resource = ConfigResource(ConfigResource.Type.TOPIC, name, incremental_configs=[entry])
        try:
            admin.incremental_alter_configs([resource], request_timeout=10)[resource].result()
        except KafkaException as exc:
            print(f"failed   {name}: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"changed  {name} retention.ms={current} -> {wanted}")
        changed += 1
    print(f"{changed} changed, {failed} failed")
    return 1 if failed else 0
