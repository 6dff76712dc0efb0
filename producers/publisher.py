"""Publish events to their Kafka topics: idempotent, acks=all, batched, and never silently lossy.

:meth:`EventPublisher.publish` queues an event and returns a :class:`~concurrent.futures.Future`
that the broker's delivery report resolves with a :class:`Receipt` or fails with a
:class:`PublishError`. Every failure is also kept until the next :meth:`~EventPublisher.flush`
(or :meth:`~EventPublisher.close`), which raises one :class:`PublishError` listing them all, so a
caller that ignores the futures still cannot lose an event without hearing about it.

Time is bounded everywhere: a record not acknowledged within ``delivery_timeout`` seconds fails
(``message.timeout.ms``), and ``flush`` never waits longer than its timeout.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from hookline.clients import producer_config
from hookline.settings import Settings
from producers.events import Event, EventType, InvalidEvent
from schemas.codec import CodecError, encode

__all__ = ["DeliveryFailure", "EventPublisher", "PublishError", "Receipt"]

log = logging.getLogger(__name__)

# Errors that mean "the broker could not be reached" rather than "the broker said no".
_UNREACHABLE = frozenset({"_MSG_TIMED_OUT", "_TRANSPORT", "_ALL_BROKERS_DOWN", "_RESOLVE"})


class _LibrdkafkaLog:
    """librdkafka's own log lines, at debug level: what they report reaches callers anyway,
    through delivery reports and the error callback, instead of being printed to stderr."""

    def log(self, level: int, fmt: str, *args: Any) -> None:
        log.debug("librdkafka: " + fmt, *args)


@dataclass(frozen=True)
class Receipt:
    """Where the broker stored one event."""

    event_id: str
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class DeliveryFailure:
    """One event the broker did not acknowledge."""

    event_id: str
    event_type: EventType
    account_id: str
    topic: str
    error: str  # librdkafka's message
    code: str  # librdkafka's error name, e.g. "_MSG_TIMED_OUT", "TOPIC_AUTHORIZATION_FAILED"
    retriable: bool

    def __str__(self) -> str:
        return (
            f"{self.event_type} {self.event_id} (account {self.account_id!r}) to {self.topic}: {self.error}"
        )


class PublishError(RuntimeError):
    """Events were not (or may not have been) delivered; ``failures`` lists each one that failed."""

    def __init__(self, message: str, failures: Iterable[DeliveryFailure] = (), undelivered: int = 0) -> None:
        self.failures: tuple[DeliveryFailure, ...] = tuple(failures)
        #: Events still unconfirmed when a flush gave up (their futures resolve later, or at close).
        self.undelivered = undelivered
        super().__init__(message)


class EventPublisher:
    """Publish :class:`~producers.events.Event` values, keyed by account id, to the event topics.

    ``delivery_timeout`` bounds how long one event may wait for the broker (librdkafka's
    ``message.timeout.ms``); ``flush_timeout`` (default: ``delivery_timeout`` + 5 s) bounds
    :meth:`flush` and :meth:`close`. ``producer_overrides`` are librdkafka settings that win over
    everything here. Not meant to be shared between processes; safe to call from several threads.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        producer_overrides: Mapping[str, Any] | None = None,
        delivery_timeout: float = 30.0,
        flush_timeout: float | None = None,
    ) -> None:
        if delivery_timeout <= 0:
            raise ValueError("delivery_timeout must be > 0")
        self._settings = settings
        self.delivery_timeout = delivery_timeout
        self.flush_timeout = delivery_timeout + 5.0 if flush_timeout is None else flush_timeout
        timeout_ms = max(1, int(delivery_timeout * 1000))
        conf = producer_config(
            settings,
            **{
                "client.id": "hookline-producer",
                "message.timeout.ms": timeout_ms,
                # A request to a dead connection must not outlive the record it carries.
                "socket.timeout.ms": max(10, min(60_000, timeout_ms)),
                "request.timeout.ms": max(1, min(30_000, timeout_ms)),
                "error_cb": self._on_client_error,
                "logger": _LibrdkafkaLog(),
                **(producer_overrides or {}),
            },
        )
        self._producer = Producer(conf)
        self._topics = {t: settings.topic(t.topic) for t in EventType}
        self._lock = threading.Lock()
        self._failures: list[DeliveryFailure] = []
        self._fatal: KafkaError | None = None
        self._last_client_error: str | None = None
        self._closed = False
        self._in_flight = 0
        self._delivered = 0
        self._failed = 0

    # ------------------------------------------------------------------ publishing

    def publish(self, event: Event) -> Future[Receipt]:
        """Queue ``event``; the future resolves when the broker acknowledges (or refuses) it."""
        return self._produce(event, self._encode(event))

    def publish_many(self, events: Iterable[Event]) -> list[Future[Receipt]]:
        """Queue several events; all are encoded before the first is sent (all or nothing locally)."""
        encoded = [(e, self._encode(e)) for e in events]
        return [self._produce(e, value) for e, value in encoded]

    def poll(self, timeout: float = 0.0) -> None:
        """Serve delivery reports for up to ``timeout`` seconds (publish and flush also do this)."""
        self._producer.poll(timeout)

    @property
    def pending(self) -> int:
        """Events queued or in flight, not yet acknowledged or failed."""
        return self._in_flight

    @property
    def delivered(self) -> int:
        """Events the broker acknowledged so far."""
        return self._delivered

    @property
    def failed(self) -> int:
        """Events that failed so far (reported or not)."""
        return self._failed

    def flush(self, timeout: float | None = None) -> None:
        """Wait for every queued event; raise :class:`PublishError` for failures since the last flush.

        Raises as well when events are still unconfirmed after ``timeout`` seconds (default
        :attr:`flush_timeout`); those stay queued and may still be delivered.
        """
        if self._closed:
            raise RuntimeError("EventPublisher is closed")
        self._flush(timeout)

    def _flush(self, timeout: float | None) -> None:
        timeout = self.flush_timeout if timeout is None else timeout
        self._producer.flush(max(0.0, timeout))
        with self._lock:
            failures, self._failures = self._failures, []
            remaining = self._in_flight
        if not failures and not remaining:
            return
        raise PublishError(self._describe(failures, remaining, timeout), failures, remaining)

    def close(self, timeout: float | None = None) -> None:
        """Flush, then release the producer; raise :class:`PublishError` if any event failed.

        Events still unconfirmed after the timeout are purged, so every future is resolved.
        """
        if self._closed:
            return
        self._closed = True
        try:
            self._flush(timeout)
        except PublishError:
            if self._in_flight:
                self._producer.purge()
                self._producer.flush(1.0)  # serve the purge reports: the futures fail now
            raise
        finally:
            close = getattr(self._producer, "close", None)  # confluent-kafka >= 2.9
            if close is not None and not self._in_flight:
                close()

    def __enter__(self) -> EventPublisher:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            self.close()
            return
        # Keep the original exception, but never hide failed events behind it.
        try:
            self.close()
        except PublishError as failure:
            log.error("%s", failure)
            exc.add_note(f"also: {failure}")

    # ------------------------------------------------------------------ internals

    def _encode(self, event: Event) -> bytes:
        if not isinstance(event, Event):
            raise TypeError(f"expected an Event, got {type(event).__name__}")
        try:
            return encode("Event", event.to_avro())
        except CodecError as exc:  # the Event validated, so this means the two disagree: a bug
            raise InvalidEvent([("event", f"does not fit Event.avsc: {exc}")]) from exc

    def _produce(self, event: Event, value: bytes) -> Future[Receipt]:
        if self._closed:
            raise RuntimeError("EventPublisher is closed")
        if self._fatal is not None:
            raise PublishError(f"the producer stopped after a fatal error: {self._fatal.str()}")
        future: Future[Receipt] = Future()
        future.set_running_or_notify_cancel()  # only the delivery report settles it
        topic = self._topics[event.type]

        def on_delivery(err: KafkaError | None, msg: Any) -> None:
            self._on_delivery(future, event, topic, err, msg)

        with self._lock:  # counted before produce(): another thread may serve its report at once
            self._in_flight += 1
        try:
            self._produce_waiting(topic, event, value, on_delivery)
        except BaseException:
            with self._lock:
                self._in_flight -= 1
            raise
        self._producer.poll(0)
        return future

    def _produce_waiting(self, topic: str, event: Event, value: bytes, on_delivery: Any) -> None:
        deadline: float | None = None
        while True:
            try:
                self._producer.produce(topic, value=value, key=event.key, on_delivery=on_delivery)
                return
            except BufferError:
                # Local queue full: serve delivery reports to make room. Records leave the queue
                # within delivery_timeout (delivered or failed), so this wait is bounded too.
                now = time.monotonic()
                deadline = deadline or now + self.delivery_timeout + 5.0
                if now >= deadline:
                    raise PublishError(
                        f"the local producer queue stayed full for {self.delivery_timeout + 5:g}s"
                    ) from None
                self._producer.poll(0.05)
            except KafkaException as exc:
                raise PublishError(f"could not queue {event.type} {event.event_id}: {exc}") from exc

    def _on_delivery(
        self, future: Future[Receipt], event: Event, topic: str, err: KafkaError | None, msg: Any
    ) -> None:
        # Runs inside poll()/flush(); must not raise (librdkafka would re-raise it there).
        if err is None:
            with self._lock:
                self._in_flight -= 1
                self._delivered += 1
            future.set_result(Receipt(event.event_id, topic, msg.partition(), msg.offset()))
            return
        failure = DeliveryFailure(
            event_id=event.event_id,
            event_type=event.type,
            account_id=event.account_id,
            topic=topic,
            error=err.str(),
            code=err.name(),
            retriable=bool(err.retriable()),
        )
        with self._lock:
            self._in_flight -= 1
            self._failed += 1
            self._failures.append(failure)
        future.set_exception(PublishError(self._describe([failure], 0, 0), [failure]))

    def _on_client_error(self, err: KafkaError) -> None:
        if err.fatal():
            # Idempotence guarantees are gone (e.g. a sequence gap): stop accepting events.
            self._fatal = err
            log.error("kafka producer fatal error: %s", err.str())
        else:
            log.debug("kafka producer error: %s", err.str())
        self._last_client_error = err.str()

    def _describe(self, failures: list[DeliveryFailure], remaining: int, timeout: float) -> str:
        parts = []
        if failures:
            shown = "; ".join(str(f) for f in failures[:5])
            more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
            parts.append(f"{len(failures)} event(s) failed: {shown}{more}")
        if remaining:
            parts.append(f"{remaining} event(s) still unconfirmed after {timeout:g}s")
        if self._last_client_error:
            parts.append(f"last client error: {self._last_client_error}")
        if any(f.code in _UNREACHABLE for f in failures):
            parts.append(f"is Kafka reachable at {self._settings.kafka_bootstrap}?")
        return "; ".join(parts)
