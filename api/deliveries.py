"""Delivery logs of a webhook, and the sends its owner asks for: redeliver and send test.

:class:`DeliveryLogService` is what the HTTP routes and the web page call; it raises
:class:`~api.errors.ApiError` (404 ``not_found`` for another account's webhook or
message, exactly as for one that does not exist). Reads go to the log store (which the log sink
fills from the results topic) in a worker thread; sends produce a DeliveryTask to
``webhook-deliveries`` and return once the broker has acknowledged it, so the delivery workers
attempt it like any other task.

Attempt numbers: a redelivery (trigger ``manual``) is numbered one above the highest attempt
stored for the message when it is requested, so its attempts read 1, 2, 3, then 4 for the manual
one. An automatic retry still pending at that moment may carry the same number; the attempt id
tells them apart. A test send is a new message whose only attempt is number 1. Neither is ever
retried (see :class:`hookline.policy.GiveUp`). Redelivering a test message sends it as a test
again (trigger ``test``), so a sample never reaches a receiver unmarked.

A test send carries a sample payload of the chosen type, built like the router builds a real one
but from :class:`producers.samples.SampleGenerator`; no event goes to the domain topics. The
delivery worker adds ``X-Webhook-Test: true`` to the request of a ``test`` task.

Personal data (docs/data-retention.md): :meth:`DeliveryLogService.erase_contact` erases a contact's
deliveries of the caller's account; an erased message, and an attempt whose body the body retention
removed, say so in what a client sees (``erased``, ``bodyExpired``).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol, TypeVar

import orjson
from pydantic import BaseModel, Field

from api.errors import ApiError, InvalidRequest, Unavailable
from api.representation import EventName, rfc3339
from api.validation import DEFAULT_LIMIT, MAX_LIMIT  # the page sizes of /api/webhooks
from api.writer import Written
from hookline.logstore import (
    STATUSES,
    AttemptRecord,
    Erasure,
    FailedMessage,
    LastDelivery,
    LogStore,
    MessageDetail,
    MessagePage,
    MessageSummary,
    StoreUnavailable,
    UnknownCursor,
    contact_id_problem,
)
from hookline.logstore.base import from_ms, to_ms
from hookline.metrics import ApiMetrics
from hookline.payloads import build_payload
from hookline.records import DeliveryTask, Outcome, Trigger
from hookline.webhooks import EVENT_TYPES, Webhook

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "STATUSES",
    "AttemptOut",
    "DeliveryDetailOut",
    "DeliveryList",
    "DeliveryLogService",
    "DeliveryOut",
    "ErasureOut",
    "RecoverAccepted",
    "RecoverRequest",
    "Recovered",
    "SendAccepted",
    "SendTestRequest",
    "Sent",
    "TaskSender",
    "WebhookLookup",
    "body_text",
    "parse_recover",
    "present_attempt",
    "present_delivery",
    "present_detail",
    "present_erasure",
    "present_recovered",
    "present_sent",
    "sample_payload",
]

log = logging.getLogger("hookline.api")

_RECOVER_CHUNK = 500  # recover sends awaited together
MAX_ID_LENGTH = 128  # longer than any message id we make; a longer one names nothing

T = TypeVar("T")


class WebhookLookup(Protocol):
    """The part of :class:`api.service.WebhookService` this service uses."""

    def get(self, account: str, webhook_id: str) -> Webhook: ...


class TaskSender(Protocol):
    """The part of :class:`api.tasks.TaskWriter` this service uses."""

    async def send(self, task: DeliveryTask) -> Written: ...


@dataclass(frozen=True, slots=True)
class Sent:
    """A send the broker has acknowledged; a delivery worker will attempt it."""

    message_id: str
    webhook_id: str
    event_type: str
    trigger: Literal["manual", "test"]
    attempt: int  # the number its attempt will carry


@dataclass(frozen=True, slots=True)
class Recovered:
    """What one recover call sent: ``count`` tasks, acknowledged by the broker, oldest first."""

    webhook_id: str
    since_ms: int
    count: int
    has_more: bool  # more failed messages since then than one call sends (HOOKLINE_RECOVER_MAX)
    pending: int  # left out: an earlier recover sent them and their new attempt is not logged yet
    unsendable: int  # left out: the log holds no complete body for them


#: How long a recovered message counts as pending (its new attempt not logged yet) at most.
RECOVER_PENDING_MS = 24 * 3600 * 1000


def sample_payload(event_type: str, account_id: str) -> tuple[bytes, int]:
    """A realistic JSON body of ``event_type`` and the time its sample event happened (epoch ms)."""
    from producers.samples import SampleGenerator

    event = SampleGenerator(accounts=[account_id], kinds=[event_type]).next_event()
    record = event.to_avro()
    return build_payload(record), int(record["occurredAt"])


class DeliveryLogService:
    """List and read a webhook's deliveries; redeliver one; send a test event.

    Give an open ``store``, or ``open_store``: a function called on first use (and again after a
    failure), so the API starts without a database and answers 503 while none is reachable.
    """

    def __init__(
        self,
        webhooks: WebhookLookup,
        tasks: TaskSender,
        metrics: ApiMetrics,
        *,
        store: LogStore | None = None,
        open_store: Callable[[], LogStore] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._webhooks = webhooks
        self._tasks = tasks
        self._metrics = metrics
        self._clock = clock
        if (store is None) == (open_store is None):
            raise TypeError("give either store or open_store")
        self._store = store
        self._opener = open_store
        self._open_lock = threading.Lock()
        # Recover: one call at a time per webhook, and what earlier calls sent (message id -> when),
        # so a repeated call does not send a message again before its new attempt is logged.
        self._recover_locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._recovered: dict[tuple[str, str], dict[str, int]] = {}

    # -- reads ------------------------------------------------------------------------------------
    async def list_deliveries(
        self,
        account: str,
        webhook_id: str,
        status: str | None = None,
        event: str | None = None,
        limit: int = DEFAULT_LIMIT,
        starting_after: str | None = None,
    ) -> MessagePage:
        """One page of the webhook's messages, newest first; ``starting_after`` is a message id."""
        self._webhooks.get(account, webhook_id)
        if status is not None and status not in STATUSES:
            raise InvalidRequest("invalid_status", f"status must be one of {', '.join(STATUSES)}")
        if event is not None and event not in EVENT_TYPES:
            raise InvalidRequest("invalid_event_type", f"event must be one of {', '.join(EVENT_TYPES)}")
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidRequest(
                "invalid_limit", f"limit must be an integer from 1 to {MAX_LIMIT}", status=400
            )
        if starting_after is not None and not 0 < len(starting_after) <= MAX_ID_LENGTH:
            raise _bad_cursor()
        try:
            return await self._read(
                lambda s: s.list_messages(
                    account,
                    webhook_id,
                    status=status,
                    event_type=event,
                    limit=limit,
                    starting_after=starting_after,
                )
            )
        except UnknownCursor:
            raise _bad_cursor() from None

    async def get_delivery(self, account: str, webhook_id: str, message_id: str) -> MessageDetail:
        """The message with every attempt, oldest first; 404 when this webhook has no such message."""
        self._webhooks.get(account, webhook_id)
        detail = None
        if 0 < len(message_id) <= MAX_ID_LENGTH:
            detail = await self._read(lambda s: s.get_message(account, webhook_id, message_id))
        if detail is None:
            raise ApiError("not_found", "no delivery with this message id for this webhook", status=404)
        return detail

    async def last_deliveries(self, account: str) -> dict[str, LastDelivery]:
        """Webhook id -> its latest attempt, for every webhook of ``account`` that has one."""
        return await self._read(lambda s: s.last_status_by_webhook(account))

    # -- erasure ----------------------------------------------------------------------------------
    async def erase_contact(self, account: str, contact_id: str) -> Erasure:
        """Erase every stored delivery of ``account`` that concerns the contact; 0 rows for an unknown one.

        Only ``account``'s rows are touched, whichever contact id is given. Nothing of the contact
        (its id included) goes to the log line or the metric.
        """
        problem = contact_id_problem(contact_id)
        if problem is not None:
            raise InvalidRequest("invalid_contact_id", problem, status=400)
        # A write, run like the reads: in a worker thread, 503 while the store cannot be reached.
        erasure = await self._read(lambda s: s.erase_contact(account, contact_id, requested_by="api"))
        self._metrics.contact_erasures.inc()
        log.info(
            "contact erasure %d for account %s: %d messages, %d attempts erased",
            erasure.erasure_id,
            account,
            erasure.messages,
            erasure.attempts,
        )
        return erasure

    # -- sends ------------------------------------------------------------------------------------
    async def redeliver(self, account: str, webhook_id: str, message_id: str) -> Sent:
        """Send the message again, as it was, with its message id: one ``manual`` (or ``test``) attempt."""
        detail = await self.get_delivery(account, webhook_id, message_id)
        hook = self._webhooks.get(account, webhook_id)  # the current config, after the await
        if not hook.active:
            raise ApiError(
                "webhook_inactive", "the webhook is inactive; activate it to redeliver", status=409
            )
        body = next((a.request_body for a in detail.attempts if a.request_body), None)
        if body is None:
            raise ApiError(
                "payload_unavailable", "the log holds no request body for this message", status=409
            )
        if not _is_json(body):  # the log keeps a prefix of very large bodies: never send half of one
            raise ApiError(
                "payload_incomplete",
                "the log holds only part of this message's body; it cannot be resent",
                status=409,
            )
        msg = detail.message
        attempt = max((a.attempt for a in detail.attempts), default=msg.last_attempt) + 1
        trigger: Literal["manual", "test"] = "test" if msg.trigger == "test" else "manual"
        task = self._task(
            hook,
            message_id=msg.message_id,
            event_id=msg.event_id,
            event_type=msg.event_type,
            occurred_at_ms=to_ms(msg.event_occurred_at),
            payload=body,
            attempt=attempt,
            trigger=trigger,
        )
        await self._send(task, trigger)
        log.info(
            "redelivery of message %s to webhook %s requested by account %s (attempt %d, %s)",
            msg.message_id,
            webhook_id,
            account,
            attempt,
            trigger,
        )
        return Sent(msg.message_id, webhook_id, msg.event_type, trigger, attempt)

    async def send_test(self, account: str, webhook_id: str, event_type: str | None = None) -> Sent:
        """Send a sample event of ``event_type`` (default: the first subscribed) marked as a test."""
        hook = self._webhooks.get(account, webhook_id)
        if event_type is None:
            event_type = hook.subscriptions[0].event if hook.subscriptions else EVENT_TYPES[0]
        if event_type not in EVENT_TYPES:
            raise InvalidRequest("invalid_event_type", f"eventType must be one of {', '.join(EVENT_TYPES)}")
        payload, occurred_at = sample_payload(event_type, account)
        task = self._task(
            hook,
            message_id=None,  # derived from the event id, as the router derives it
            event_id=f"test-{uuid.uuid4()}",
            event_type=event_type,
            occurred_at_ms=occurred_at,
            payload=payload,
            attempt=1,
            trigger="test",
        )
        await self._send(task, "test")
        log.info(
            "test %s sent to webhook %s by account %s (message %s)",
            event_type,
            webhook_id,
            account,
            task.message_id,
        )
        return Sent(task.message_id, webhook_id, event_type, "test", 1)

    async def recover(self, account: str, webhook_id: str, since_ms: int, *, limit: int) -> Recovered:
        """Send again, once each and oldest first (order of first attempt), every message of the
        webhook that failed for good and was first attempted at ``since_ms`` or later: at most
        ``limit``, each with its message id, its logged body and trigger ``recover``.

        Calls for one webhook run one after the other in this instance; a message an earlier call
        sent is left out until its new attempt is logged (or a day has passed), so a repeated call
        never sends it twice.
        """
        hook = self._webhooks.get(account, webhook_id)
        if not hook.active:
            raise ApiError("webhook_inactive", "the webhook is inactive; activate it to recover", status=409)
        key = (account, webhook_id)
        lock = self._recover_locks.setdefault(key, asyncio.Lock())
        async with lock:
            now_ms = int(self._clock() * 1000)
            sent = {m: t for m, t in self._recovered.get(key, {}).items() if now_ms - t < RECOVER_PENDING_MS}
            since = from_ms(since_ms)
            wanted = limit + 1 + len(sent)
            found = await self._read(lambda s: s.failed_since(account, webhook_id, since, limit=wanted))

            def waiting(f: FailedMessage) -> bool:  # sent by an earlier call, new attempt not logged yet
                return to_ms(f.message.last_attempt_at) < sent.get(f.message.message_id, 0)

            pending = [f for f in found if waiting(f)]
            todo = [f for f in found if not waiting(f)]
            has_more = len(todo) > limit
            todo = todo[:limit]
            sendable = [f for f in todo if f.body and _is_json(f.body)]
            hook = self._webhooks.get(account, webhook_id)  # the current config, after the read
            tasks = [self._recover_task(hook, f) for f in sendable]
            try:
                if tasks:
                    await self._send(tasks[0], "recover")  # starts the producer: the rest keep order
                for i in range(1, len(tasks), _RECOVER_CHUNK):
                    # Each send produces before it first waits, so one partition gets them in this order.
                    await asyncio.gather(*(self._send(t, "recover") for t in tasks[i : i + _RECOVER_CHUNK]))
            finally:
                stamp = int(self._clock() * 1000)
                sent.update((t.message_id, stamp) for t in tasks)
                self._recovered[key] = sent
        log.info(
            "recover of webhook %s requested by account %s: %d sent, %d pending, %d unsendable%s",
            webhook_id,
            account,
            len(tasks),
            len(pending),
            len(todo) - len(sendable),
            " (more remain)" if has_more else "",
        )
        return Recovered(webhook_id, since_ms, len(tasks), has_more, len(pending), len(todo) - len(sendable))

    def _recover_task(self, hook: Webhook, failed: FailedMessage) -> DeliveryTask:
        msg = failed.message
        return self._task(
            hook,
            message_id=msg.message_id,
            event_id=msg.event_id,
            event_type=msg.event_type,
            occurred_at_ms=to_ms(msg.event_occurred_at),
            payload=failed.body,
            attempt=failed.last_attempt + 1,
            trigger="recover",
        )

    def close(self) -> None:
        """Close the store if this service opened it."""
        with self._open_lock:
            if self._opener is not None and self._store is not None:
                self._store.close()
                self._store = None

    # -- internals --------------------------------------------------------------------------------
    def _task(
        self,
        hook: Webhook,
        *,
        message_id: str | None,
        event_id: str,
        event_type: str,
        occurred_at_ms: int,
        payload: bytes,
        attempt: int,
        trigger: Trigger,
    ) -> DeliveryTask:
        return DeliveryTask.for_webhook(
            hook,
            event_id=event_id,
            event_type=event_type,
            occurred_at=occurred_at_ms,
            payload=payload,
            now_ms=int(self._clock() * 1000),
            trigger=trigger,
            attempt=attempt,
            message_id=message_id,
        )

    async def _send(self, task: DeliveryTask, trigger: str) -> None:
        try:
            await self._tasks.send(task)
        except Exception:
            self._metrics.sends.labels(trigger, "failed").inc()
            raise
        self._metrics.sends.labels(trigger, "ok").inc()

    def _opened(self) -> LogStore:
        with self._open_lock:
            if self._store is None:
                assert self._opener is not None
                self._store = self._opener()
            return self._store

    async def _read(self, query: Callable[[LogStore], T]) -> T:
        def run() -> T:
            return query(self._opened())

        try:
            return await asyncio.to_thread(run)
        except StoreUnavailable as exc:
            self._metrics.log_store_errors.inc()
            log.warning("delivery log store unavailable: %s", exc)
            raise Unavailable("the delivery log is not reachable right now; retry shortly") from None


def _is_json(body: bytes) -> bool:
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return True


def _bad_cursor() -> InvalidRequest:
    return InvalidRequest(
        "invalid_cursor", "startingAfter must be the message id of a delivery of this webhook", status=400
    )


# -- the JSON a client sees ----------------------------------------------------------------------


def _time(value: Any) -> str | None:
    return None if value is None else rfc3339(to_ms(value))


def body_text(raw: bytes, *, truncated: bool = False) -> tuple[str, Literal["utf-8", "base64"]]:
    """``raw`` as text when it is UTF-8 (a truncated excerpt may end inside a character), else base64."""
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        if truncated and exc.reason == "unexpected end of data" and exc.start >= len(raw) - 3:
            return raw[: exc.start].decode("utf-8"), "utf-8"
        return base64.b64encode(raw).decode("ascii"), "base64"


def present_delivery(m: MessageSummary) -> dict[str, Any]:
    """One message as the list shows it."""
    return {
        "messageId": m.message_id,
        "eventType": m.event_type,
        "eventId": m.event_id,
        "eventOccurredAt": _time(m.event_occurred_at),
        "status": m.status,
        "lastOutcome": m.last_outcome,
        "attempts": m.attempt_count,
        "lastAttempt": m.last_attempt,
        "lastResponseStatus": m.last_response_status,
        "lastErrorClass": m.last_error_class,
        "firstAttemptAt": _time(m.first_attempt_at),
        "lastAttemptAt": _time(m.last_attempt_at),
        "trigger": m.trigger,
        "nextRetryAt": _time(m.next_retry_at),
        "url": m.url,
        "erased": m.erased_at is not None,
        "erasedAt": _time(m.erased_at),
    }


def present_attempt(a: AttemptRecord) -> dict[str, Any]:
    request_body, request_encoding = body_text(a.request_body)
    excerpt, excerpt_encoding = body_text(a.response_excerpt, truncated=a.response_truncated)
    return {
        "attemptId": a.attempt_id,
        "attempt": a.attempt,
        "attemptedAt": _time(a.attempted_at),
        "trigger": a.trigger,
        "url": a.url,
        "requestHeaders": dict(a.request_headers),
        "requestBody": request_body,
        "requestBodyEncoding": request_encoding,
        "responseStatus": a.response_status,
        "responseHeaders": dict(a.response_headers),
        "responseBodyExcerpt": excerpt,
        "responseBodyExcerptEncoding": excerpt_encoding,
        "responseBodyTruncated": a.response_truncated,
        "latencySeconds": a.latency_seconds,
        "outcome": a.outcome,
        "errorClass": a.error_class,
        "errorMessage": a.error_message,
        "nextRetryAt": _time(a.next_retry_at),
        "final": a.final,
        "bodyExpired": a.body_expired,
        "erased": a.erased,
    }


def present_detail(d: MessageDetail) -> dict[str, Any]:
    """The message (as the list shows it) and every attempt, oldest first."""
    return {"message": present_delivery(d.message), "attempts": [present_attempt(a) for a in d.attempts]}


def present_erasure(e: Erasure) -> dict[str, Any]:
    return {
        "erasureId": e.erasure_id,
        "erasedAt": _time(e.erased_at),
        "messages": e.messages,
        "attempts": e.attempts,
    }


def parse_recover(body: dict[str, Any]) -> int:
    """The ``since`` of a recover request body, as epoch milliseconds."""
    unknown = sorted(k for k in body if k != "since")
    if unknown:
        shown = unknown[0] if len(unknown[0]) <= 64 else unknown[0][:64] + "..."
        raise InvalidRequest("unknown_field", f"unknown field {shown!r}; allowed: since")
    value = body.get("since")
    if value is None:
        raise InvalidRequest("since_required", "give since: an RFC 3339 time, e.g. 2024-06-01T00:00:00Z")
    if not isinstance(value, str):
        raise InvalidRequest("invalid_type", "since must be a string")
    try:
        when = datetime.fromisoformat(value) if len(value) <= 64 else None
    except ValueError:
        when = None
    if when is None or when.tzinfo is None or "T" not in value.upper():
        raise InvalidRequest(
            "invalid_since", "since must be an RFC 3339 time with an offset, e.g. 2024-06-01T00:00:00Z"
        )
    return to_ms(when)


def present_recovered(r: Recovered) -> dict[str, Any]:
    return {
        "webhookId": r.webhook_id,
        "since": rfc3339(r.since_ms),
        "count": r.count,
        "hasMore": r.has_more,
        "pending": r.pending,
        "unsendable": r.unsendable,
    }


def present_sent(s: Sent) -> dict[str, Any]:
    return {"messageId": s.message_id, "eventType": s.event_type, "trigger": s.trigger, "attempt": s.attempt}


# -- OpenAPI documentation models ---------------------------------------------------------------

Status = Literal["delivered", "retrying", "failed", "skipped"]
Encoding = Literal["utf-8", "base64"]


class DeliveryOut(BaseModel):
    messageId: str = Field(
        description="Stable across retries and redeliveries (X-Webhook-Message-Id, webhook-id)."
    )
    eventType: EventName
    eventId: str
    eventOccurredAt: str
    status: Status = Field(
        description="From the latest attempt: delivered (2xx), retrying (failed, another automatic attempt"
        " is scheduled), failed (failed for good, including dead-lettered), skipped (no request was made)."
    )
    lastOutcome: Outcome
    attempts: int = Field(description="How many attempts are logged.")
    lastAttempt: int = Field(description="Number of the latest attempt.")
    lastResponseStatus: int | None
    lastErrorClass: str | None
    firstAttemptAt: str
    lastAttemptAt: str
    trigger: Trigger = Field(description="Of the first attempt: automatic, test, manual, recover or replay.")
    nextRetryAt: str | None = Field(description="When the next automatic attempt is due, if one is.")
    url: str = Field(description="The URL of the latest attempt, without credentials or query.")
    erased: bool = Field(
        description="The contact's data was erased: every attempt's bodies, headers and error text are gone."
    )
    erasedAt: str | None = Field(description="When it was erased.")


class DeliveryList(BaseModel):
    items: list[DeliveryOut]
    hasMore: bool = Field(description="Pass the last item's messageId as startingAfter for the next page.")


class AttemptOut(BaseModel):
    attemptId: str = Field(description="X-Webhook-Delivery-Attempt-Id of the request.")
    attempt: int = Field(
        description="1 for the first attempt; a redelivery is one above the highest attempt logged when"
        " it was requested."
    )
    attemptedAt: str
    trigger: Trigger
    url: str
    requestHeaders: dict[str, str] = Field(description="As sent; signature values are redacted.")
    requestBody: str
    requestBodyEncoding: Encoding = Field(
        description="utf-8: requestBody is the body; base64: it is encoded."
    )
    responseStatus: int | None
    responseHeaders: dict[str, str]
    responseBodyExcerpt: str = Field(description="The first 16 KiB of the response body at most.")
    responseBodyExcerptEncoding: Encoding
    responseBodyTruncated: bool
    latencySeconds: float
    outcome: Outcome
    errorClass: str | None = Field(description="timeout, connect, tls, dns, blocked_address, http_4xx, ...")
    errorMessage: str | None
    nextRetryAt: str | None
    final: bool = Field(description="No further automatic attempt follows this one.")
    bodyExpired: bool = Field(
        description="The request body and response excerpt were removed after"
        " HOOKLINE_LOG_BODY_RETENTION_DAYS; status, latency and error stay."
    )
    erased: bool = Field(
        description="Removed by a contact erasure: bodies, headers and error text are empty."
    )


class DeliveryDetailOut(BaseModel):
    message: DeliveryOut
    attempts: list[AttemptOut] = Field(description="Every logged attempt, oldest first.")


class SendTestRequest(BaseModel):
    eventType: EventName | None = Field(
        default=None, description="The sample event to send; default: the webhook's first subscribed event."
    )


class SendAccepted(BaseModel):
    messageId: str
    eventType: EventName
    trigger: Literal["manual", "test"]
    attempt: int = Field(description="The number the attempt will carry.")


class RecoverRequest(BaseModel):
    since: str = Field(description="RFC 3339 time with an offset: messages first attempted then or later.")


class RecoverAccepted(BaseModel):
    webhookId: str
    since: str
    count: int = Field(description="Messages sent again now, oldest first (order of first attempt).")
    hasMore: bool = Field(
        description="More failed messages remain than one call sends (HOOKLINE_RECOVER_MAX): call again."
    )
    pending: int = Field(
        description="Left out: an earlier recover sent them and their new attempt is not logged yet."
    )
    unsendable: int = Field(description="Left out: the log holds no complete body for them.")


class ErasureOut(BaseModel):
    erasureId: int = Field(description="The erasure's record in the log store (which holds no contact data).")
    erasedAt: str
    messages: int = Field(
        description="Messages of this account that concerned the contact (0 for an unknown one)."
    )
    attempts: int = Field(description="Attempts whose bodies, headers and error text were erased.")
