"""Writes of the management API: upserts and tombstones on the compacted config topic.

A write returns only once the broker has acknowledged it (idempotent producer, ``acks=all``);
the caller gets the record's partition and offset, which it hands to the config view to wait
until this process has applied its own write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

from hookline.clients import producer_config
from hookline.settings import Settings
from hookline.topics import CONFIG
from hookline.webhooks import Webhook
from producers.api.errors import Unavailable
from schemas.codec import encode

__all__ = ["ConfigWriter", "ProducerPort", "Written"]

log = logging.getLogger("hookline.api")

DeliveryCallback = Callable[[Any, Any], None]


class ProducerPort(Protocol):
    """The part of ``confluent_kafka.Producer`` the writer uses."""

    def produce(
        self, topic: str, value: bytes | None = ..., key: bytes | None = ..., *, on_delivery: DeliveryCallback
    ) -> None: ...

    def poll(self, timeout: float) -> int: ...

    def flush(self, timeout: float) -> int: ...


class Written:
    """Where the broker stored a write."""

    __slots__ = ("offset", "partition")

    def __init__(self, partition: int, offset: int) -> None:
        self.partition = partition
        self.offset = offset

    def __repr__(self) -> str:
        return f"Written(partition={self.partition}, offset={self.offset})"


class ConfigWriter:
    """Produce config records and await their delivery reports from asyncio."""

    def __init__(
        self, settings: Settings, producer: ProducerPort | None = None, *, ack_timeout: float = 35.0
    ) -> None:
        self._settings = settings
        self._given = producer
        self._producer: ProducerPort | None = None
        self._topic = settings.topic(CONFIG)
        self._ack_timeout = ack_timeout
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> ConfigWriter:
        if self._producer is None:
            if self._given is not None:
                self._producer = self._given
            else:
                from confluent_kafka import Producer

                # API writes wait for their ack one by one: send at once instead of lingering.
                self._producer = Producer(producer_config(self._settings, **{"linger.ms": 0}))
        # Delivery callbacks run inside poll(); a thread keeps them flowing without blocking the loop.
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._poll_loop, name="config-writer", daemon=True)
            self._thread.start()
        return self

    def close(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._producer is None:
            return
        left = self._producer.flush(timeout)
        if left:
            log.warning("config writer closed with %d unacknowledged writes", left)

    def _poll_loop(self) -> None:
        producer = self._producer
        assert producer is not None
        while not self._stop.is_set():
            try:
                producer.poll(0.1)
            except Exception as exc:  # a failing poll must not end delivery reports silently
                log.error("config writer: poll failed: %s", type(exc).__name__)
                self._stop.wait(0.5)

    async def put(self, webhook: Webhook) -> Written:
        """Upsert ``webhook``; return once the broker has acknowledged it."""
        return await self._send(webhook.id, encode("WebhookConfig", webhook.to_record()))

    async def delete(self, webhook_id: str) -> Written:
        """Write the tombstone for ``webhook_id``; return once acknowledged."""
        return await self._send(webhook_id, None)

    async def _send(self, key: str, value: bytes | None) -> Written:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Written] = loop.create_future()
        # Mark a late failure as retrieved, so a timed-out caller leaves no "never retrieved" noise.
        done.add_done_callback(lambda f: f.cancelled() or f.exception())

        def settle(err: Any, msg: Any) -> None:  # runs on the poll thread
            if err is not None:
                outcome: Written | BaseException = Unavailable(
                    f"the config topic refused the write ({err.name()})"
                )
            else:
                outcome = Written(int(msg.partition()), int(msg.offset()))
            with contextlib.suppress(RuntimeError):  # the loop has closed (shutdown): nobody waits
                loop.call_soon_threadsafe(_resolve, done, outcome)

        if self._producer is None:
            raise Unavailable("the API is not started")
        try:
            self._producer.produce(self._topic, value=value, key=key.encode("utf-8"), on_delivery=settle)
        except BufferError:
            raise Unavailable("too many writes in flight; retry shortly") from None
        try:
            # shield: a client that disconnects must not orphan the future the callback resolves
            return await asyncio.wait_for(asyncio.shield(done), self._ack_timeout)
        except TimeoutError:
            raise Unavailable("the broker did not acknowledge the write in time") from None


def _resolve(future: asyncio.Future[Written], outcome: Written | BaseException) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
