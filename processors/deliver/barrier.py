"""Wait until the config view has applied everything on the config topic *now*.

A task can arrive before the view has applied its webhook's config (both are produced by
others, to different topics). When the view has no config for a task's webhook, or an older
version than the task was routed with, the worker waits on this barrier before believing it:
the barrier reads the config topic's end offsets and waits for the view to pass them. Calls that
overlap share one barrier, so a burst of tasks for a deleted webhook costs one round trip.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaException, TopicPartition

__all__ = ["ConfigBarrier"]

log = logging.getLogger("hookline.deliver")


class _AppliedView(Protocol):
    async def wait_applied_async(self, partition: int, offset: int, timeout: float = 10.0) -> bool: ...


class ConfigBarrier:
    """``await barrier.after(t)``: the view has applied every record written before monotonic time ``t``."""

    def __init__(
        self, view: _AppliedView, consumer_conf: dict[str, Any], topic: str, *, timeout: float = 10.0
    ) -> None:
        self._view = view
        self._conf = consumer_conf
        self._topic = topic
        self._timeout = timeout
        self._consumer: Consumer | None = None
        self._current: asyncio.Task[None] | None = None
        self._current_started = 0.0
        self._done_started = -1.0  # start time of the last barrier that completed

    async def after(self, since: float) -> None:
        """Return once a barrier that started at or after ``since`` has completed."""
        while self._done_started < since:
            if self._current is None or self._current_started < since:
                if self._current is not None:
                    await asyncio.shield(self._current)  # let the older one finish first
                    continue
                self._current_started = time.monotonic()
                self._current = asyncio.ensure_future(self._run(self._current_started))
            await asyncio.shield(self._current)

    async def _run(self, started: float) -> None:
        try:
            loop = asyncio.get_running_loop()
            ends = await loop.run_in_executor(None, self._end_offsets)
            for partition, end in ends.items():
                if end > 0 and not await self._view.wait_applied_async(partition, end - 1, self._timeout):
                    log.warning("config view did not reach offset %d of partition %d in time", end, partition)
        except (KafkaException, KeyError, RuntimeError) as exc:  # best effort: the view is used as it is
            log.warning("cannot read the config topic's end offsets: %s", exc)
        finally:
            self._done_started = max(self._done_started, started)
            self._current = None

    def _end_offsets(self) -> dict[int, int]:
        if self._consumer is None:
            self._consumer = Consumer(self._conf)
        md = self._consumer.list_topics(self._topic, timeout=self._timeout)
        parts = sorted(md.topics[self._topic].partitions)
        ends = {}
        for p in parts:
            tp = TopicPartition(self._topic, p)
            _low, ends[p] = self._consumer.get_watermark_offsets(tp, timeout=self._timeout)
        return ends

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
