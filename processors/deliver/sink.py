"""Produce records and wait for the broker's acknowledgement, from asyncio.

:meth:`KafkaSink.send` returns only once the record is acknowledged (:mod:`hookline.producer`),
retrying a record the producer gave up on (a broker outage), so a caller that stores an offset
afterwards never stores past a record that was lost. A record the broker refuses for good raises
:class:`~hookline.producer.RecordRejected`; a send while the sink closes raises
:class:`~hookline.producer.ProducerClosed`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from hookline.producer import AsyncProducer, ProducerPort

__all__ = ["KafkaSink", "RecordSink"]

log = logging.getLogger("hookline.deliver")


class RecordSink(Protocol):
    async def send(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        """Write one record; return once the broker acknowledged it."""


class KafkaSink:
    """A producer shared by every task of a worker. Start with :meth:`start`, end with :meth:`close`."""

    def __init__(self, producer: ProducerPort, *, retry_backoff: float = 1.0) -> None:
        self._producer = AsyncProducer(
            producer, name="deliver-producer", retry_backoff=retry_backoff, logger=log
        )

    @property
    def closing(self) -> bool:
        return self._producer.closing

    def start(self) -> KafkaSink:
        self._producer.start()
        return self

    async def send(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        await self._producer.send(topic, key, value, retry_transient=True)

    async def close(self, timeout: float = 10.0) -> int:
        """Flush what is queued (waiting up to ``timeout``), stop the poll thread; return records left."""
        left = await asyncio.get_running_loop().run_in_executor(None, self._producer.close, timeout)
        if left:
            log.warning("%d records were not acknowledged before shutdown", left)
        return left
