"""Writes of the management API: upserts and tombstones on the compacted config topic.

A write returns only once the broker has acknowledged it (idempotent producer, ``acks=all``);
the caller gets the record's partition and offset, which it hands to the config view to wait
until this process has applied its own write.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from api.errors import Unavailable
from hookline.clients import new_producer
from hookline.producer import (
    AckTimeout,
    AsyncProducer,
    ProduceError,
    ProducerPort,
    QueueFull,
    RecordRejected,
    Written,
)
from hookline.settings import Settings
from hookline.topics import CONFIG
from hookline.webhooks import Webhook
from schemas.codec import encode

__all__ = ["ConfigWriter", "NotWritten", "ProducerPort", "TopicWriter", "Written"]

log = logging.getLogger("hookline.api")


@dataclass(frozen=True)
class NotWritten:
    """What the 503 says when a write was not acknowledged, for each :mod:`hookline.producer` error."""

    refused: str  # "{}" stands for the broker's error name
    busy: str
    late: str
    closed: str

    def error(self, exc: ProduceError) -> Unavailable:
        if isinstance(exc, RecordRejected):
            return Unavailable(self.refused.format(exc.error.name()))
        if isinstance(exc, QueueFull):
            return Unavailable(self.busy)
        if isinstance(exc, AckTimeout):
            return Unavailable(self.late)
        return Unavailable(self.closed)


class TopicWriter:
    """Writes to one topic, each awaited until acknowledged; one that is not raises :class:`Unavailable`.

    ``topic`` is named as in :mod:`hookline.topics` (the settings add the prefix); ``name`` names the
    poll thread. Pass ``producer`` to write through it (tests), else one is created by :meth:`start`.
    """

    def __init__(
        self,
        settings: Settings,
        topic: str,
        producer: ProducerPort | None,
        *,
        name: str,
        ack_timeout: float,
        not_written: NotWritten,
    ) -> None:
        self._settings = settings
        self._given = producer
        self.topic = settings.topic(topic)
        self._name = name
        self._ack_timeout = ack_timeout
        self._not_written = not_written
        self._producer: AsyncProducer | None = None

    @property
    def started(self) -> bool:
        return self._producer is not None

    def start(self) -> None:
        """Create the producer (unless one was given) and start its poll thread."""
        if self._producer is None:
            # API writes wait for their ack one by one: send at once instead of lingering.
            given = self._given
            kafka = (
                given
                if given is not None
                else new_producer(self._settings, **{"linger.ms": 0, "client.id": "hookline-api"})
            )
            # Started before it is visible: a concurrent send must not find it without its thread.
            self._producer = AsyncProducer(kafka, name=self._name, logger=log).start()
        else:
            self._producer.start()  # again, after close()

    def close(self, timeout: float) -> int:
        """Flush and stop; return how many writes were left unacknowledged."""
        return 0 if self._producer is None else self._producer.close(timeout)

    async def send(self, key: bytes, value: bytes | None) -> Written:
        if self._producer is None:
            raise Unavailable(self._not_written.closed)
        try:
            return await self._producer.send(self.topic, key, value, timeout=self._ack_timeout)
        except ProduceError as exc:
            raise self._not_written.error(exc) from None


class ConfigWriter:
    """Produce config records and await their delivery reports from asyncio."""

    def __init__(
        self, settings: Settings, producer: ProducerPort | None = None, *, ack_timeout: float = 35.0
    ) -> None:
        self._writer = TopicWriter(
            settings,
            CONFIG,
            producer,
            name="config-writer",
            ack_timeout=ack_timeout,
            not_written=NotWritten(
                refused="the config topic refused the write ({})",
                busy="too many writes in flight; retry shortly",
                late="the broker did not acknowledge the write in time",
                closed="the API is not started",
            ),
        )

    def start(self) -> ConfigWriter:
        self._writer.start()
        return self

    def close(self, timeout: float = 10.0) -> None:
        left = self._writer.close(timeout)
        if left:
            log.warning("config writer closed with %d unacknowledged writes", left)

    async def put(self, webhook: Webhook) -> Written:
        """Upsert ``webhook``; return once the broker has acknowledged it."""
        return await self._writer.send(
            webhook.id.encode("utf-8"), encode("WebhookConfig", webhook.to_record())
        )

    async def delete(self, webhook_id: str) -> Written:
        """Write the tombstone for ``webhook_id``; return once acknowledged."""
        return await self._writer.send(webhook_id.encode("utf-8"), None)
