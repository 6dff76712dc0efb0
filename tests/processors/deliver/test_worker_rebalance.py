"""The consume loop across a rebalance, against the real broker: a partition the worker had paused
(its head waiting, as a retry tier's head waits for its due time), revoked and assigned back to the
same worker is read again.

librdkafka keeps an application's pause across a revocation and a new assignment of the same
partition; the worker used to start every new assignment as "not paused" and never resumed it, so
such a partition was never fetched again (issue 12: a surviving worker's retry tier stopped after
the other worker's SIGKILL, and every ordered lane whose head was in it with it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, Producer

from hookline.clients import consumer_config, producer_config
from hookline.settings import Settings
from processors.deliver.handler import Record
from processors.deliver.worker import Worker
from tests.support import scaled

pytestmark = pytest.mark.kafka

FAR = 2**62


class HoldingPort:
    """Holds every record until :attr:`release_at`, then records which partitions it processed."""

    stopping = False

    def __init__(self) -> None:
        self.release_at = FAR
        self.asked: set[int] = set()
        self.processed: set[int] = set()

    def hold_until(self, rec: Record) -> int:
        self.asked.add(rec.partition)
        return self.release_at

    async def process(self, rec: Record) -> None:
        self.processed.add(rec.partition)


def test_a_partition_paused_when_revoked_and_assigned_back_is_read_again(settings: Settings) -> None:
    topic = settings.topic("webhook-deliveries")
    producer = Producer(producer_config(settings))
    for partition in range(3):
        producer.produce(topic, key=b"k", value=b"held", partition=partition)
    assert producer.flush(30) == 0
    group = "rebalance-test"
    conf = consumer_config(settings, group, **{"session.timeout.ms": 6000})
    port = HoldingPort()
    worker = Worker(conf, [topic], port, max_buffered=10, drain_timeout=1.0, poll_timeout=0.05)
    stop = asyncio.Event()
    other = Consumer(consumer_config(settings, group, **{"enable.auto.commit": False}))
    theirs: set[int] = set()

    def join_other() -> None:
        """A second member joins: the worker's three paused partitions are revoked, some assigned back."""
        other.subscribe([topic])
        deadline = time.monotonic() + scaled(60)
        while not other.assignment() and time.monotonic() < deadline:
            other.poll(0.1)
        theirs.update(tp.partition for tp in other.assignment())

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        running = asyncio.create_task(worker.run(stop))
        try:
            await _wait(lambda: port.asked == {0, 1, 2}, 60, "every partition's record held")
            await asyncio.sleep(0.3)  # a few loop turns: each held partition is paused now
            await loop.run_in_executor(None, join_other)
            assert theirs and len(theirs) < 3, theirs
            await _wait(lambda: len(assignments) >= 2, 30, "the worker's second assignment")
            assert not port.processed
            port.release_at = 0
            mine = {0, 1, 2} - theirs
            await _wait(lambda: port.processed >= mine, 30, f"the records of partitions {sorted(mine)}")
        finally:
            stop.set()
            await running

    assignments: list[str] = []
    watch = _Assignments(assignments)
    logger = logging.getLogger("hookline.deliver")
    level = logger.level
    logger.addHandler(watch)
    logger.setLevel(logging.INFO)
    try:
        asyncio.run(scenario())
    finally:
        logger.removeHandler(watch)
        logger.setLevel(level)
        other.close()


class _Assignments(logging.Handler):
    """Collects the worker's "assigned N partitions" log lines."""

    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.INFO)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("assigned "):
            self.into.append(record.getMessage())


async def _wait(check: Callable[[], object], timeout: float, what: str) -> None:
    """Wait on the loop (the worker runs on it) for ``check()``; fail with ``what`` after ``timeout``."""
    limit = scaled(timeout)
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit:g}s waiting for {what}")
        await asyncio.sleep(0.05)
