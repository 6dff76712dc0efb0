"""The records of the delivery topics as typed values, each built in one place (docs/architecture.md §4).

- :class:`DeliveryTask`: one event for one webhook (``webhook-deliveries`` and the retry tiers);
  the router and the API's sends build it with :meth:`DeliveryTask.for_webhook`.
- :class:`DeliveryResult`: one attempt, or one skip, of a task (``webhook-results``), built from
  the task and the :class:`Exchange` the sender reports.
- :class:`DeadLetter`: a record a stage could not process, or a task whose retries are exhausted
  (``webhook-dlq``); :class:`DeadLetters` builds, logs, counts and encodes them for every stage.

Each has ``to_record``/``from_record`` (the Avro record as :mod:`schemas.codec` reads and writes
it) and ``encode``/``decode`` (the bytes on the topic). Field names are snake_case here and
camelCase on the wire; nothing outside this module reads a record by string key.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from hookline.signing import message_id as derive_message_id
from hookline.webhooks import Webhook
from schemas.codec import CodecError, decode, encode

__all__ = [
    "EXCERPT_BYTES",
    "REQUEST_BODY_BYTES",
    "DeadLetter",
    "DeadLetters",
    "DeliveryResult",
    "DeliveryTask",
    "Exchange",
    "Outcome",
    "Source",
    "Trigger",
]

#: What caused a task: the router (``automatic``), the owner's "send test", "redeliver", "recover" or
#: "replay" (re-routing from the event topics, processors/router/replay.py).
Trigger = Literal["automatic", "test", "manual", "recover", "replay"]
#: How an attempt ended (see :class:`DeliveryResult`).
Outcome = Literal["delivered", "failed", "skipped", "dead_lettered", "deferred"]

#: The most of a response body a result keeps; the sender stops reading there.
EXCERPT_BYTES = 16 * 1024
#: The most of the request body a result keeps, so that a result always fits in a record.
REQUEST_BODY_BYTES = 256 * 1024
#: The most of an error message or a dead letter's detail a record keeps.
MESSAGE_CHARS = 1000


@dataclass(frozen=True, slots=True)
class DeliveryTask:
    """One event for one webhook, due for attempt ``attempt`` at ``due_at`` (epoch ms; 0 = now)."""

    message_id: str  # stable across retries and redeliveries: derived from (event id, webhook id)
    event_id: str
    webhook_id: str
    account_id: str
    event_type: str
    event_occurred_at: int
    routed_at: int
    config_version: int  # the webhook's version the task was routed with
    payload: bytes  # the exact JSON body: signed and sent as is
    attempt: int = 1
    due_at: int = 0
    trigger: Trigger = "automatic"
    first_attempt_at: int | None = None

    @classmethod
    def for_webhook(
        cls,
        webhook: Webhook,
        *,
        event_id: str,
        event_type: str,
        occurred_at: int,
        payload: bytes,
        now_ms: int,
        trigger: Trigger = "automatic",
        attempt: int = 1,
        message_id: str | None = None,
    ) -> DeliveryTask:
        """The task that sends ``payload`` to ``webhook``; the message id derives from the event's."""
        return cls(
            message_id=message_id or derive_message_id(event_id, webhook.id),
            event_id=event_id,
            webhook_id=webhook.id,
            account_id=webhook.account_id,
            event_type=event_type,
            event_occurred_at=occurred_at,
            routed_at=now_ms,
            config_version=webhook.version,
            payload=payload,
            attempt=attempt,
            trigger=trigger,
        )

    @property
    def key(self) -> bytes:
        """The record key: tasks, results and configs of one webhook share a partition."""
        return self.webhook_id.encode()

    def retry(self, *, attempt: int, due_at: int, first_attempt_at: int) -> DeliveryTask:
        """This task again, for attempt ``attempt``, due at ``due_at``."""
        first = self.first_attempt_at if self.first_attempt_at is not None else first_attempt_at
        return dataclasses.replace(self, attempt=attempt, due_at=due_at, first_attempt_at=first)

    def later(self, due_at: int) -> DeliveryTask:
        """This task unchanged but for when it is due (deferred, not attempted)."""
        return dataclasses.replace(self, due_at=due_at)

    def to_record(self) -> dict[str, Any]:
        return {
            "messageId": self.message_id,
            "eventId": self.event_id,
            "webhookId": self.webhook_id,
            "accountId": self.account_id,
            "eventType": self.event_type,
            "eventOccurredAt": self.event_occurred_at,
            "routedAt": self.routed_at,
            "configVersion": self.config_version,
            "payload": self.payload,
            "attempt": self.attempt,
            "dueAt": self.due_at,
            "trigger": self.trigger,
            "firstAttemptAt": self.first_attempt_at,
        }

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> DeliveryTask:
        return cls(
            r["messageId"], r["eventId"], r["webhookId"], r["accountId"], r["eventType"],
            r["eventOccurredAt"], r["routedAt"], r["configVersion"], r["payload"], r["attempt"],
            r["dueAt"], r["trigger"], r["firstAttemptAt"],
        )

    def encode(self) -> bytes:
        return encode("DeliveryTask", self.to_record())

    @classmethod
    def decode(cls, value: bytes | None) -> DeliveryTask:
        """The task in ``value``; raise :class:`~schemas.codec.CodecError` for anything else."""
        task = cls.from_record(decode(value, "DeliveryTask"))
        if task.attempt < 1:
            raise CodecError("invalid_field", "DeliveryTask.attempt: below 1", field="attempt")
        return task


@dataclass(frozen=True, slots=True)
class Exchange:
    """One HTTP attempt as a result shows it: the request sent, and the response or the error."""

    attempt_id: str
    attempted_at_ms: int
    url: str  # without credentials, query and fragment
    request_headers: Mapping[str, str]  # signatures redacted
    latency: float
    status: int | None = None
    response_headers: Mapping[str, str] = field(default_factory=dict)
    excerpt: bytes = b""
    truncated: bool = False
    error_class: str | None = None
    error_message: str | None = None

    def header(self, name: str) -> str | None:
        """A response header by case-insensitive name."""
        lowered = name.lower()
        for key, value in self.response_headers.items():
            if key.lower() == lowered:
                return value
        return None


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """One attempt of a task as the log shows it, or a skip (no request was made).

    ``outcome``: ``delivered`` (2xx); ``failed`` (any other attempt; ``final`` says whether another
    automatic attempt follows); ``dead_lettered`` (the last allowed attempt failed and the task
    went to the DLQ; ``final``); ``skipped`` (the webhook is deleted, inactive or no longer
    subscribed; ``final``); ``deferred`` (no request was made: the webhook's circuit breaker is
    open and the task moved on to its next attempt; ``errorMessage`` says why).
    """

    message_id: str
    attempt_id: str
    attempt: int
    event_id: str
    webhook_id: str
    account_id: str
    event_type: str
    event_occurred_at: int
    attempted_at: int
    url: str  # without credentials, query and fragment
    outcome: Outcome
    request_headers: Mapping[str, str] = field(default_factory=dict)  # signatures redacted
    request_body: bytes = b""
    response_status: int | None = None
    response_headers: Mapping[str, str] = field(default_factory=dict)
    response_body_excerpt: bytes = b""
    response_body_truncated: bool = False
    latency_seconds: float = 0.0
    error_class: str | None = None
    error_message: str | None = None
    next_retry_at: int | None = None
    final: bool = False
    trigger: Trigger = "automatic"

    @classmethod
    def of(
        cls,
        task: DeliveryTask,
        exchange: Exchange,
        *,
        outcome: Outcome,
        final: bool,
        next_retry_at: int | None = None,
    ) -> DeliveryResult:
        """The result of one attempt (or skip) of ``task``, cut to the sizes a record may carry."""
        excerpt, message = exchange.excerpt, exchange.error_message
        return cls(
            message_id=task.message_id,
            attempt_id=exchange.attempt_id,
            attempt=task.attempt,
            event_id=task.event_id,
            webhook_id=task.webhook_id,
            account_id=task.account_id,
            event_type=task.event_type,
            event_occurred_at=task.event_occurred_at,
            attempted_at=exchange.attempted_at_ms,
            url=exchange.url,
            outcome=outcome,
            request_headers=exchange.request_headers,
            request_body=task.payload[:REQUEST_BODY_BYTES],
            response_status=exchange.status,
            response_headers=exchange.response_headers,
            response_body_excerpt=excerpt[:EXCERPT_BYTES],
            response_body_truncated=exchange.truncated or len(excerpt) > EXCERPT_BYTES,
            latency_seconds=float(exchange.latency),
            error_class=exchange.error_class,
            error_message=message[:MESSAGE_CHARS] if message else None,
            next_retry_at=next_retry_at,
            final=final,
            trigger=task.trigger,
        )

    @classmethod
    def skipped(
        cls, task: DeliveryTask, *, attempt_id: str, now_ms: int, url: str, reason: str
    ) -> DeliveryResult:
        """The result of a task that was not sent; ``reason`` says why."""
        exchange = Exchange(attempt_id, now_ms, url, {}, 0.0, error_message=reason)
        return cls.of(task, exchange, outcome="skipped", final=True)

    @property
    def key(self) -> bytes:
        return self.webhook_id.encode()

    def to_record(self) -> dict[str, Any]:
        return {
            "messageId": self.message_id,
            "attemptId": self.attempt_id,
            "attempt": self.attempt,
            "eventId": self.event_id,
            "webhookId": self.webhook_id,
            "accountId": self.account_id,
            "eventType": self.event_type,
            "eventOccurredAt": self.event_occurred_at,
            "attemptedAt": self.attempted_at,
            "url": self.url,
            "requestHeaders": dict(self.request_headers),
            "requestBody": self.request_body,
            "responseStatus": self.response_status,
            "responseHeaders": dict(self.response_headers),
            "responseBodyExcerpt": self.response_body_excerpt,
            "responseBodyTruncated": self.response_body_truncated,
            "latencySeconds": self.latency_seconds,
            "outcome": self.outcome,
            "errorClass": self.error_class,
            "errorMessage": self.error_message,
            "nextRetryAt": self.next_retry_at,
            "final": self.final,
            "trigger": self.trigger,
        }

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> DeliveryResult:
        return cls(
            message_id=r["messageId"],
            attempt_id=r["attemptId"],
            attempt=r["attempt"],
            event_id=r["eventId"],
            webhook_id=r["webhookId"],
            account_id=r["accountId"],
            event_type=r["eventType"],
            event_occurred_at=r["eventOccurredAt"],
            attempted_at=r["attemptedAt"],
            url=r["url"],
            outcome=r["outcome"],
            request_headers=r["requestHeaders"],
            request_body=r["requestBody"],
            response_status=r["responseStatus"],
            response_headers=r["responseHeaders"],
            response_body_excerpt=r["responseBodyExcerpt"],
            response_body_truncated=r["responseBodyTruncated"],
            latency_seconds=r["latencySeconds"],
            error_class=r["errorClass"],
            error_message=r["errorMessage"],
            next_retry_at=r["nextRetryAt"],
            final=r["final"],
            trigger=r["trigger"],
        )

    def encode(self) -> bytes:
        return encode("DeliveryResult", self.to_record())

    @classmethod
    def decode(cls, value: bytes | None) -> DeliveryResult:
        return cls.from_record(decode(value, "DeliveryResult"))


@dataclass(frozen=True, slots=True)
class Source:
    """Where a record came from: what a dead letter points back to, with the bytes as consumed."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record ``stage`` could not process (or a task whose retries ran out), with its bytes unchanged."""

    stage: str  # router, deliver, logsink
    reason: str  # machine-readable, a bounded set per stage
    detail: str
    source_topic: str
    source_partition: int
    source_offset: int
    key: bytes | None
    value: bytes | None
    failed_at: int

    def to_record(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "reason": self.reason,
            "detail": self.detail,
            "sourceTopic": self.source_topic,
            "sourcePartition": self.source_partition,
            "sourceOffset": self.source_offset,
            "key": self.key,
            "value": self.value,
            "failedAt": self.failed_at,
        }

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> DeadLetter:
        return cls(
            r["stage"], r["reason"], r["detail"], r["sourceTopic"], r["sourcePartition"],
            r["sourceOffset"], r["key"], r["value"], r["failedAt"],
        )

    def encode(self) -> bytes:
        return encode("DeadLetter", self.to_record())

    @classmethod
    def decode(cls, value: bytes | None) -> DeadLetter:
        return cls.from_record(decode(value, "DeadLetter"))


class _ReasonCounter(Protocol):
    def labels(self, reason: str) -> Any: ...


class DeadLetters:
    """The one way a stage dead-letters a record: build it, log it, count it, encode it.

    :meth:`letter` returns ``(topic, key, value)``; the stage writes that with its own producer
    (the router through Faust, the worker through its acknowledged sink, the log sink through
    its batch producer), so that each keeps its own delivery guarantee.
    """

    def __init__(
        self,
        stage: str,
        topic: str,
        counter: _ReasonCounter,
        logger: logging.Logger,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.stage = stage
        self.topic = topic
        self._counter = counter
        self._log = logger
        self._clock = clock

    def letter(
        self, source: Source, reason: str, detail: str, *, level: int = logging.WARNING
    ) -> tuple[str, bytes | None, bytes]:
        """Dead-letter ``source`` for ``reason``; return the record to write to the DLQ."""
        self._log.log(
            level, "%s: dead-lettering the record at %s[%d]@%d: %s (%s)",
            self.stage, source.topic, source.partition, source.offset, reason, detail[:200],
        )
        self._counter.labels(reason).inc()
        letter = DeadLetter(
            stage=self.stage,
            reason=reason,
            detail=detail[:MESSAGE_CHARS],
            source_topic=source.topic,
            source_partition=source.partition,
            source_offset=source.offset,
            key=source.key,
            value=source.value,
            failed_at=int(self._clock() * 1000),
        )
        return self.topic, source.key, letter.encode()
