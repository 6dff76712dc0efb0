"""Sends the owner asks for (redeliver, test): DeliveryTasks produced to ``webhook-deliveries``.

A send returns only once the broker has acknowledged the task (idempotent producer, ``acks=all``),
so a 202 means the task is durable and a delivery worker will attempt it. Keyed by webhook id, as
the router keys its tasks, so one webhook's tasks share a partition.

Sends are rare, so the producer (and its poll thread) is created by the first one, not at start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Mapping
from typing import Any

from hookline.clients import producer_config
from hookline.settings import Settings
from hookline.topics import DELIVERIES
from producers.api.errors import Unavailable
from producers.api.writer import ProducerPort, Written
from schemas.codec import encode

__all__ = ["TaskWriter"]

log = logging.getLogger("hookline.api")


class TaskWriter:
    """Produce DeliveryTask records and await their delivery reports from asyncio."""

    def __init__(
        self, settings: Settings, producer: ProducerPort | None = None, *, ack_timeout: float = 35.0
    ) -> None:
        self._settings = settings
        self._given = producer
        self._producer: ProducerPort | None = None
        self._topic = settings.topic(DELIVERIES)
        self._ack_timeout = ack_timeout
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False

    @property
    def topic(self) -> str:
        return self._topic

    def start(self) -> TaskWriter:
        """Create the producer and its poll thread now (:meth:`send` does it when needed)."""
        with self._start_lock:
            return self._start()

    def _start(self) -> TaskWriter:
        if self._closed:
            raise Unavailable("the API is stopping")
        if self._producer is None:
            if self._given is not None:
                self._producer = self._given
            else:
                from confluent_kafka import Producer

                # One task per request, awaited: send at once instead of lingering.
                self._producer = Producer(producer_config(self._settings, **{"linger.ms": 0}))
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._poll_loop, name="task-writer", daemon=True)
            self._thread.start()
        return self

    def close(self, timeout: float = 10.0) -> None:
        with self._start_lock:
            self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._producer is None:
            return
        left = self._producer.flush(timeout)
        if left:
            log.warning("task writer closed with %d unacknowledged tasks", left)

    def _poll_loop(self) -> None:
        producer = self._producer
        assert producer is not None
        while not self._stop.is_set():
            try:
                producer.poll(0.1)
            except Exception as exc:  # a failing poll must not end delivery reports silently
                log.error("task writer: poll failed: %s", type(exc).__name__)
                self._stop.wait(0.5)

    async def send(self, task: Mapping[str, Any]) -> Written:
        """Produce ``task`` (a DeliveryTask record); return once the broker has acknowledged it."""
        value = encode("DeliveryTask", dict(task))
        key = str(task["webhookId"]).encode("utf-8")
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Written] = loop.create_future()
        done.add_done_callback(lambda f: f.cancelled() or f.exception())

        def settle(err: Any, msg: Any) -> None:  # runs on the poll thread
            if err is not None:
                outcome: Written | BaseException = Unavailable(
                    f"the delivery topic refused the task ({err.name()})"
                )
            else:
                outcome = Written(int(msg.partition()), int(msg.offset()))
            with contextlib.suppress(RuntimeError):  # the loop has closed (shutdown): nobody waits
                loop.call_soon_threadsafe(_resolve, done, outcome)

        if self._producer is None:
            await asyncio.to_thread(self.start)  # creating a producer may block briefly
        assert self._producer is not None
        try:
            self._producer.produce(self._topic, value=value, key=key, on_delivery=settle)
        except BufferError:
            raise Unavailable("too many sends in flight; retry shortly") from None
        try:
            # shield: a client that disconnects must not orphan the future the callback resolves
            return await asyncio.wait_for(asyncio.shield(done), self._ack_timeout)
        except TimeoutError:
            raise Unavailable("the broker did not acknowledge the task in time") from None


def _resolve(future: asyncio.Future[Written], outcome: Written | BaseException) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
