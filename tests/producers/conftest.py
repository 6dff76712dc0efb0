"""Helpers for the producer tests: read the event topics back, a closed port."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import OffsetSpec  # type: ignore[attr-defined]

from hookline.clients import admin_client, consumer_config
from hookline.settings import Settings
from hookline.topics import CONTACT_EVENTS, SALE_EVENTS
from schemas.codec import decode
from tests.support import scaled


@dataclass(frozen=True)
class Consumed:
    topic: str
    partition: int
    offset: int
    key: str
    record: dict[str, Any]


def read_events(settings: Settings, expected: int, timeout: float = 60.0) -> list[Consumed]:
    """Read both event topics from the start until ``expected`` records arrived (or fail at the deadline).

    Records come back in partition order, i.e. in order per key. The topics' end offsets must add
    up to ``expected`` too, so extra (duplicate) records fail the caller's checks.
    """
    conf = consumer_config(settings, None, **{"enable.auto.commit": False})
    consumer = Consumer(conf)
    try:
        topics = [settings.topic(CONTACT_EVENTS), settings.topic(SALE_EVENTS)]
        meta = consumer.list_topics(timeout=scaled(60))
        parts = [
            TopicPartition(t, p, OFFSET_BEGINNING) for t in topics for p in sorted(meta.topics[t].partitions)
        ]
        consumer.assign(parts)
        out: list[Consumed] = []
        limit = scaled(timeout)
        deadline = time.monotonic() + limit
        while len(out) < expected:
            assert time.monotonic() < deadline, f"only {len(out)} of {expected} events arrived in {limit:g}s"
            for msg in consumer.consume(num_messages=2000, timeout=0.5):
                assert msg.error() is None, msg.error()
                topic, partition, offset, key = msg.topic(), msg.partition(), msg.offset(), msg.key()
                assert topic is not None and partition is not None and offset is not None and key
                out.append(
                    Consumed(topic, partition, offset, key.decode("utf-8"), decode(msg.value(), "Event"))
                )
        ends = _end_offsets(settings, parts)
        assert ends == expected, f"the topics hold {ends} records, expected {expected}"
        return out
    finally:
        consumer.close()


def _end_offsets(settings: Settings, parts: list[TopicPartition]) -> int:
    """Sum of the partitions' end offsets, in one request (per-partition watermark queries are slow)."""
    specs = {TopicPartition(tp.topic, tp.partition): OffsetSpec.latest() for tp in parts}  # type: ignore[no-untyped-call]
    admin = admin_client(settings)  # must outlive the futures
    futures = admin.list_offsets(specs, request_timeout=scaled(60))
    return sum(f.result(timeout=scaled(60)).offset for f in futures.values())


@pytest.fixture
def consume() -> Callable[..., list[Consumed]]:
    return read_events


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on (bound once, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
