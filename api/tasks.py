"""Sends the owner asks for (redeliver, test): DeliveryTasks produced to ``webhook-deliveries``.

A send returns only once the broker has acknowledged the task (idempotent producer, ``acks=all``),
so a 202 means the task is durable and a delivery worker will attempt it. Keyed by webhook id, as
the router keys its tasks, so one webhook's tasks share a partition.

Sends are rare, so the producer (and its poll thread) is created by the first one, not at start-up.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from api.errors import Unavailable
from api.writer import NotWritten, TopicWriter
from hookline.producer import ProducerPort, Written
from hookline.records import DeliveryTask
from hookline.settings import Settings
from hookline.topics import DELIVERIES

__all__ = ["TaskWriter"]

log = logging.getLogger("hookline.api")

_NOT_WRITTEN = NotWritten(
    refused="the delivery topic refused the task ({})",
    busy="too many sends in flight; retry shortly",
    late="the broker did not acknowledge the task in time",
    closed="the API is stopping",
)


class TaskWriter:
    """Produce DeliveryTask records and await their delivery reports from asyncio."""

    def __init__(
        self, settings: Settings, producer: ProducerPort | None = None, *, ack_timeout: float = 35.0
    ) -> None:
        self._writer = TopicWriter(
            settings,
            DELIVERIES,
            producer,
            name="task-writer",
            ack_timeout=ack_timeout,
            not_written=_NOT_WRITTEN,
        )
        self._start_lock = threading.Lock()
        self._closed = False

    @property
    def topic(self) -> str:
        return self._writer.topic

    def start(self) -> TaskWriter:
        """Create the producer and its poll thread now (:meth:`send` does it when needed)."""
        with self._start_lock:
            if self._closed:
                raise Unavailable(_NOT_WRITTEN.closed)
            self._writer.start()
        return self

    def close(self, timeout: float = 10.0) -> None:
        with self._start_lock:
            self._closed = True
        left = self._writer.close(timeout)
        if left:
            log.warning("task writer closed with %d unacknowledged tasks", left)

    async def send(self, task: DeliveryTask) -> Written:
        """Produce ``task``; return once the broker has acknowledged it."""
        if not self._writer.started:
            await asyncio.to_thread(self.start)  # creating a producer may block briefly
        return await self._writer.send(task.key, task.encode())
