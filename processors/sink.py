"""Produce records and wait for the broker's acknowledgement, from asyncio.

A confluent-kafka producer (idempotent, acks=all) is polled by its own thread; each delivery
report resolves an asyncio future on the loop. :meth:`KafkaSink.send` returns only once the
record is acknowledged, retrying a record the producer gave up on (a broker outage), so a caller
that stores an offset afterwards never stores past a record that was lost. A record the broker
refuses for good raises :class:`RecordRejected`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Protocol

from confluent_kafka import KafkaError, Producer

__all__ = ["KafkaSink", "RecordRejected", "RecordSink", "SinkClosed"]

log = logging.getLogger("hookline.deliver")

_Ack = asyncio.Future[KafkaError | None]


class SinkClosed(RuntimeError):
    """The sink is shutting down; the record may not have been written."""


class RecordRejected(RuntimeError):
    """The broker refused the record for good (too large, invalid): retrying cannot help."""


class RecordSink(Protocol):
    async def send(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        """Write one record; return once the broker acknowledged it."""


class KafkaSink:
    """A producer shared by every task of a worker. Start with :meth:`start`, end with :meth:`close`."""

    def __init__(self, producer: Producer, *, retry_backoff: float = 1.0) -> None:
        self._producer = producer
        self._retry_backoff = retry_backoff
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closing = False

    def start(self) -> KafkaSink:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._poll, name="deliver-producer", daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.1)

    async def send(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        loop = self._loop
        assert loop is not None, "KafkaSink.start() first"
        while True:
            if self.closing:
                raise SinkClosed(f"not written to {topic}: shutting down")
            fut: _Ack = loop.create_future()

            def report(err: KafkaError | None, _msg: Any, fut: _Ack = fut) -> None:
                loop.call_soon_threadsafe(_settle, fut, err)

            try:
                self._producer.produce(topic, key=key, value=value, on_delivery=report)
            except BufferError:  # the local queue is full: let the poll thread drain it
                await asyncio.sleep(0.05)
                continue
            err = await fut
            if err is None:
                return
            if not (err.retriable() or err.code() == KafkaError._MSG_TIMED_OUT):
                raise RecordRejected(f"{topic} refused a record: {err}")
            log.error("producing to %s failed (%s); retrying", topic, err)
            await asyncio.sleep(self._retry_backoff)

    async def close(self, timeout: float = 10.0) -> int:
        """Flush what is queued (waiting up to ``timeout``), stop the poll thread; return records left."""
        loop = asyncio.get_running_loop()
        left = int(await loop.run_in_executor(None, self._producer.flush, timeout))
        self.closing = True
        self._stop.set()
        if self._thread is not None:
            await loop.run_in_executor(None, self._thread.join, 5.0)
            self._thread = None
        if left:
            log.warning("%d records were not acknowledged before shutdown", left)
        return left


def _settle(fut: _Ack, err: KafkaError | None) -> None:
    if not fut.done():
        fut.set_result(err)
