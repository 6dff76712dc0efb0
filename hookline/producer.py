"""Produce to Kafka from asyncio and return once the broker has acknowledged the record.

Exceptions::

    ProduceError            the record was not acknowledged (also a RuntimeError)
    ├── ProducerClosed      the producer is shutting down; the record was not written
    ├── RecordRejected      the delivery report carried an error: the broker refused the record
    ├── QueueFull           the producer's local queue is full; the record was not written
    └── AckTimeout          no acknowledgement within the caller's timeout; it may still come

A confluent-kafka producer (idempotent, ``acks=all``: :func:`hookline.clients.producer_config`)
is polled by a thread of its own; each delivery report resolves an asyncio future on the sender's
loop, so :meth:`AsyncProducer.send` returns only once the record is acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import KafkaError

__all__ = [
    "AckTimeout",
    "AsyncProducer",
    "ProduceError",
    "ProducerClosed",
    "ProducerPort",
    "QueueFull",
    "RecordRejected",
    "Written",
]

log = logging.getLogger(__name__)


class ProduceError(RuntimeError):
    """The record was not acknowledged by the broker."""


class ProducerClosed(ProduceError):
    """The producer is shutting down; the record was not written."""


class RecordRejected(ProduceError):
    """The broker refused the record: for good (too large, invalid), or for now (no ``retry_transient``)."""

    def __init__(self, topic: str, error: DeliveryError) -> None:
        super().__init__(f"{topic} refused a record: {error}")
        self.topic = topic
        self.error = error


class QueueFull(ProduceError):
    """The producer's local queue is full (too many records in flight); the record was not written."""


class AckTimeout(ProduceError):
    """The broker did not acknowledge the record in time; it may still be written."""


DeliveryCallback = Callable[[Any, Any], None]


class ProducerPort(Protocol):
    """The part of ``confluent_kafka.Producer`` used here."""

    def produce(
        self, topic: str, value: bytes | None = ..., key: bytes | None = ..., *, on_delivery: DeliveryCallback
    ) -> None: ...

    def poll(self, timeout: float) -> int: ...

    def flush(self, timeout: float) -> int: ...


class DeliveryError(Protocol):
    """The part of ``confluent_kafka.KafkaError`` (a failed delivery report) used here."""

    def code(self) -> int: ...

    def name(self) -> str: ...

    def retriable(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Written:
    """Where the broker stored a record."""

    partition: int
    offset: int


_Outcome = Written | DeliveryError


class AsyncProducer:
    """A producer polled by a thread of its own, awaited from asyncio. :meth:`start`, then :meth:`close`."""

    def __init__(
        self,
        producer: ProducerPort,
        *,
        name: str = "producer",
        retry_backoff: float = 1.0,
        logger: logging.Logger = log,
    ) -> None:
        """``name`` names the poll thread and its log lines, written to the role's ``logger``."""
        self._producer = producer
        self._name = name
        self._log = logger
        self._retry_backoff = retry_backoff
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.closing = False

    def start(self) -> AsyncProducer:
        """Start the poll thread (again, after :meth:`close`); a no-op when it runs."""
        if self._thread is None:
            self.closing = False
            self._stop.clear()
            self._thread = threading.Thread(target=self._poll, name=self._name, daemon=True)
            self._thread.start()
        return self

    def close(self, timeout: float = 10.0) -> int:
        """Flush what is queued (up to ``timeout``), refuse further sends, stop the poll thread.

        Return how many records were left unacknowledged. It blocks: from asyncio, run it in an executor.
        """
        left = int(self._producer.flush(timeout))
        self.closing = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)  # the poll loop checks the stop flag every 0.1 s
            self._thread = None
        return left

    def _poll(self) -> None:
        # Delivery reports run inside poll(); this thread keeps them flowing without blocking the loop.
        while not self._stop.is_set():
            try:
                self._producer.poll(0.1)
            except Exception as exc:  # a failing poll must not end delivery reports silently
                self._log.error("%s: poll failed: %s", self._name, type(exc).__name__)
                self._stop.wait(0.5)

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        *,
        retry_transient: bool = False,
        timeout: float | None = None,
    ) -> Written:
        """Produce one record; return where it was stored once the broker has acknowledged it.

        With ``retry_transient``, wait out a full local queue and produce the record again after a
        transient error (a broker outage: the producer gave up on it), until it is acknowledged;
        without, raise :class:`QueueFull` or :class:`RecordRejected` at once. ``timeout`` bounds
        the whole wait (:class:`AckTimeout`); ``None`` waits as long as it takes.
        """
        if timeout is None:
            return await self._send(topic, key, value, retry_transient)
        try:
            async with asyncio.timeout(timeout):
                return await self._send(topic, key, value, retry_transient)
        except TimeoutError:
            raise AckTimeout(f"{topic} did not acknowledge a record within {timeout} s") from None

    async def _send(
        self, topic: str, key: bytes | None, value: bytes | None, retry_transient: bool
    ) -> Written:
        loop = asyncio.get_running_loop()
        while True:
            if self.closing:
                raise ProducerClosed(f"not written to {topic}: shutting down")
            if self._thread is None:
                raise RuntimeError(f"{self._name}: start() first")
            done: asyncio.Future[_Outcome] = loop.create_future()

            def report(err: Any, msg: Any, done: asyncio.Future[_Outcome] = done) -> None:  # poll thread
                outcome = err if err is not None else Written(int(msg.partition()), int(msg.offset()))
                with contextlib.suppress(RuntimeError):  # the loop has closed (shutdown): nobody waits
                    loop.call_soon_threadsafe(_settle, done, outcome)

            try:
                self._producer.produce(topic, value=value, key=key, on_delivery=report)
            except BufferError:
                if not retry_transient:
                    raise QueueFull(f"not written to {topic}: too many records in flight") from None
                await asyncio.sleep(0.05)  # let the poll thread drain the queue
                continue
            outcome = await done
            if isinstance(outcome, Written):
                return outcome
            if not (retry_transient and _transient(outcome)):
                raise RecordRejected(topic, outcome)
            self._log.error("producing to %s failed (%s); retrying", topic, outcome)
            await asyncio.sleep(self._retry_backoff)


def _transient(err: DeliveryError) -> bool:
    # _MSG_TIMED_OUT: the producer gave up after message.timeout.ms (a broker outage); not "retriable".
    return err.retriable() or err.code() == KafkaError._MSG_TIMED_OUT


def _settle(done: asyncio.Future[_Outcome], outcome: _Outcome) -> None:
    if not done.done():  # a cancelled or timed-out sender no longer waits
        done.set_result(outcome)
