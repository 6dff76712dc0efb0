"""One delivery task, from its consumed bytes to its acknowledged result record.

:meth:`TaskHandler.process` decodes the task, looks up the webhook's *current* config, skips
or signs and sends one attempt (within the webhook's share of concurrency), asks
:func:`hookline.policy.decide` what follows, and writes every resulting record — the result,
plus the next attempt, the dead letter or the disabled config — returning only when all of them
are acknowledged. The worker stores the task's offset after that.

A webhook holds at most ``backlog`` tasks in a worker (a quarter of its buffer, see
:func:`webhook_backlog`), and fewer when its receiver is slow: once its queue would take longer
to drain than the first retry tier waits (and than 5 s), further tasks go back, unattempted and
without a result record, to that tier (``hookline_delivery_deferred_total``). A burst to a fast
receiver is held and sent at once; a hanging receiver's backlog never fills the worker.

Errors by stage: an input that cannot be read is dead-lettered (``reason`` from the codec);
a secret that cannot be opened dead-letters the task (``secret_unavailable``); everything the
receiver or the network does is an attempt outcome. Nothing is dropped without a record, a log
line and a metric.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from hookline import __version__
from hookline.metrics import DeliveryMetrics, status_class
from hookline.policy import (
    DeadLetter,
    Delivered,
    Disable,
    GiveUp,
    Retry,
    classify,
    decide,
    parse_retry_after,
    tier_for,
)
from hookline.sealing import Sealer, SealingError
from hookline.signing import SecretError, Signer
from hookline.webhooks import Webhook
from processors.deliver.exchange import (
    Exchange,
    dead_letter_record,
    disabled_config,
    public_url,
    result_record,
    retry_task,
    skipped_result,
)
from processors.deliver.limits import ConcurrencyLimits
from processors.deliver.sender import Sender
from processors.deliver.sink import RecordSink
from schemas.codec import CodecError, decode, encode

__all__ = [
    "Abandoned",
    "DeliveryTopics",
    "Record",
    "SignerCache",
    "TaskHandler",
    "skip_reason",
    "status_class",
    "webhook_backlog",
]

log = logging.getLogger("hookline.deliver")

USER_AGENT = f"hookline/{__version__}"
DISABLED_410 = "410 Gone"
#: A webhook's queue that would take longer than this (or than the first tier) to drain is too slow.
DEFER_AFTER = 5.0


class Abandoned(Exception):
    """The worker is stopping and this task had not started its attempt: leave it for the next owner."""


@dataclass(slots=True)
class Record:
    """A consumed task record; the decoded task is kept once read."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    received: float  # time.monotonic() when the worker got it
    timestamp_ms: int = 0  # the record's Kafka timestamp (when it was produced)
    task: dict[str, Any] | None = None
    error: CodecError | None = None
    decoded: bool = False


@dataclass(frozen=True, slots=True)
class DeliveryTopics:
    """Full topic names (prefix applied) the handler writes to."""

    results: str
    dlq: str
    config: str
    retry: Mapping[float, str]  # tier delay -> topic


class Configs(Protocol):
    def get(self, webhook_id: str) -> Webhook | None: ...


class Barrier(Protocol):
    async def after(self, since: float) -> None: ...


class SignerCache:
    """Open a webhook's secrets once per config version; sign with the previous one until it expires."""

    def __init__(self, sealer: Sealer, *, size: int = 10_000) -> None:
        self._sealer = sealer
        self._size = size
        self._cache: dict[tuple[str, int, bool], Signer] = {}

    def get(self, webhook: Webhook, now_ms: int) -> Signer:
        prev = webhook.previous_secret
        expires = webhook.previous_secret_expires_at
        with_previous = prev is not None and (expires is None or now_ms < expires)
        key = (webhook.id, webhook.version, with_previous)
        signer = self._cache.get(key)
        if signer is None:
            secrets = [self._sealer.open(webhook.id, webhook.secret)]
            if with_previous and prev is not None:
                secrets.append(self._sealer.open(webhook.id, prev))
            signer = Signer(secrets)
            if len(self._cache) >= self._size:
                self._cache.clear()
            self._cache[key] = signer
        return signer


def skip_reason(webhook: Webhook | None, task: Mapping[str, Any]) -> str | None:
    """Why ``task`` must not be sent to ``webhook`` now, or None to send it.

    Automatic deliveries need an active webhook still subscribed to the event. A test or
    manual send is the owner's explicit request, so only a deleted webhook stops it.
    """
    if webhook is None:
        return "webhook deleted"
    if task["trigger"] != "automatic":
        return None
    if not webhook.active:
        return "webhook inactive" + (f" ({webhook.disabled_reason})" if webhook.disabled_reason else "")
    event = task["eventType"]
    subs = [s for s in webhook.subscriptions if s.event == event]
    if not subs:
        return f"not subscribed to {event}"
    if not any(s.enabled for s in subs):
        return f"subscription to {event} disabled"
    return None


def webhook_backlog(per_webhook: int, max_buffered: int) -> int:
    """Tasks one webhook may hold in a worker at most: a quarter of the buffer (at least its share)."""
    return max(per_webhook, max_buffered // 4)


def new_attempt_id() -> str:
    return "att_" + uuid.uuid4().hex


class TaskHandler:
    """Process consumed task records; the worker calls :meth:`hold_until` and :meth:`process`."""

    def __init__(
        self,
        *,
        configs: Configs,
        barrier: Barrier,
        signers: SignerCache,
        sender: Sender,
        sink: RecordSink,
        limits: ConcurrencyLimits,
        metrics: DeliveryMetrics,
        topics: DeliveryTopics,
        schedule: tuple[float, ...],
        jitter: float,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
        backlog: int,
    ) -> None:
        self._configs = configs
        self._barrier = barrier
        self._signers = signers
        self._sender = sender
        self._sink = sink
        self._limits = limits
        self._metrics = metrics
        self._topics = topics
        self._schedule = schedule
        self._tiers = tuple(sorted(topics.retry))
        self._tier_of = {topic: delay for delay, topic in topics.retry.items()}
        # Tasks of one webhook held at once (queued for its share or in flight); past that, new ones
        # wait in the first retry tier instead, so a slow receiver's backlog never fills the worker.
        self._backlog = backlog
        self._jitter = jitter
        self._rng = rng or random.Random()
        self._clock = clock
        # Webhooks this worker disabled, until the view shows that version (or a newer one).
        self._disabled: dict[str, Webhook] = {}
        #: Set when the worker stops: tasks that have not begun their attempt are abandoned.
        self.stopping = False

    # -- the worker's port ----------------------------------------------------------------------
    def hold_until(self, rec: Record) -> int:
        """Epoch milliseconds until which ``rec`` waits at the head of its partition (0: go now).

        A retry tier holds a record for the tier's delay from when it was written, or until it is
        due if that comes first; so records leave a tier in the order they entered it, and a record
        due later than its tier's delay (jitter, ``Retry-After``) never holds up the ones behind it:
        :meth:`process` moves it on to the tier that fits what is left of its wait.
        """
        task = self._decode(rec)
        tier = self._tier_of.get(rec.topic)
        if task is None or tier is None:
            return 0  # new tasks go now; one due later is moved on to a tier by process()
        return min(int(task["dueAt"]), rec.timestamp_ms + int(tier * 1000))

    async def process(self, rec: Record) -> None:
        """Handle ``rec`` completely; raise only :class:`Abandoned` (or on shutdown of the sink)."""
        task = self._decode(rec)
        if task is None:
            err = rec.error
            why = err.reason if err is not None else "tombstone"
            await self._dead_letter_input(rec, why, str(err) if err else "a task record has no value")
            return
        wait = task["dueAt"] / 1000 - self._clock()
        if wait > 0.05:
            await self._move_on(task, wait)
            return
        if wait > 0:
            await asyncio.sleep(wait)  # a clock step: wait it out here rather than in another tier
        webhook = await self._current(task, rec.received)
        reason = skip_reason(webhook, task)
        if reason is not None or webhook is None:
            await self._skip(task, webhook, reason or "webhook deleted")
            return
        try:
            signer = self._signers.get(webhook, int(self._clock() * 1000))
        except (SealingError, SecretError) as exc:
            await self._secret_unavailable(rec, task, webhook, exc)
            return
        if self._should_defer(webhook.id):
            await self._defer(task)
            return
        async with self._limits.slot(webhook.id):
            if self.stopping:
                raise Abandoned(task["messageId"])
            self._metrics.in_flight.inc()
            try:
                # Signed here and handed straight over (no coroutine of our own around the send, no
                # local for the headers): nothing per attempt outlives its use while the request waits.
                attempt_id = new_attempt_id()
                exchange = await self._sender.send(
                    webhook.url, task["payload"], self._sign(task, signer, attempt_id), attempt_id=attempt_id
                )
            finally:
                self._metrics.in_flight.dec()
        await self._conclude(rec, task, webhook, exchange)

    # -- stages ---------------------------------------------------------------------------------
    def _decode(self, rec: Record) -> dict[str, Any] | None:
        if not rec.decoded:
            rec.decoded = True
            if rec.value is not None:
                try:
                    task = decode(rec.value, "DeliveryTask")
                    if task["attempt"] < 1:
                        raise CodecError("invalid_field", "DeliveryTask.attempt: below 1", field="attempt")
                    rec.task = task
                except CodecError as exc:
                    rec.error = exc
        return rec.task

    def _lookup(self, webhook_id: str) -> Webhook | None:
        current = self._configs.get(webhook_id)
        mine = self._disabled.get(webhook_id)
        if mine is not None:
            if current is not None and current.version < mine.version:
                return mine
            del self._disabled[webhook_id]
        return current

    async def _current(self, task: Mapping[str, Any], received: float) -> Webhook | None:
        webhook = self._lookup(task["webhookId"])
        if webhook is None or webhook.version < task["configVersion"]:
            # The view may not have applied the config this task was routed with yet.
            await self._barrier.after(received)
            webhook = self._lookup(task["webhookId"])
        return webhook

    def _sign(self, task: Mapping[str, Any], signer: Signer, attempt_id: str) -> list[tuple[str, str]]:
        return signer.headers(
            event_type=task["eventType"],
            msg_id=task["messageId"],
            attempt_id=attempt_id,
            event_time_ms=task["eventOccurredAt"],
            timestamp=int(self._clock()),
            body=task["payload"],
            user_agent=USER_AGENT,
            test=task["trigger"] == "test",
        )

    async def _conclude(
        self, rec: Record, task: dict[str, Any], webhook: Webhook, exchange: Exchange
    ) -> None:
        now = self._clock()
        now_ms = int(now * 1000)
        classification = classify(exchange.status, exchange.error_class)
        retry_after = None
        if classification.honour_retry_after:
            retry_after = parse_retry_after(exchange.header("retry-after"), now)
        decision = decide(
            classification,
            attempt=task["attempt"],
            rng=self._rng,
            schedule=self._schedule,
            jitter=self._jitter,
            retry_after=retry_after,
            tiers=self._tiers,
            retries=task["trigger"] == "automatic",
        )
        exchange = dataclasses.replace(exchange, error_class=classification.error_class)
        key = task["webhookId"].encode()
        outcome: str = classification.outcome
        next_retry_at: int | None = None
        writes: list[tuple[str, bytes | None, bytes | None]] = []
        if isinstance(decision, Retry):
            next_retry_at = now_ms + int(decision.delay * 1000)
            first = task.get("firstAttemptAt") or exchange.attempted_at_ms
            nxt = retry_task(
                task, attempt=decision.attempt, due_at_ms=next_retry_at, first_attempt_at_ms=first
            )
            writes.append((self._topics.retry[decision.tier], key, encode("DeliveryTask", nxt)))
        elif isinstance(decision, DeadLetter):
            outcome = "dead_lettered"
            last = f"{exchange.error_class} {exchange.status or ''}".strip()
            detail = f"{decision.attempts} attempts; last: {last}"
            dlq = dead_letter_record(
                reason=decision.reason, detail=detail, topic=rec.topic, partition=rec.partition,
                offset=rec.offset, key=rec.key, value=rec.value, now_ms=now_ms,
            )
            writes.append((self._topics.dlq, rec.key, encode("DeadLetter", dlq)))
        elif isinstance(decision, Disable):
            off = disabled_config(webhook, reason=DISABLED_410, now_ms=now_ms)
            self._disabled[webhook.id] = off
            writes.append((self._topics.config, key, encode("WebhookConfig", off.to_record())))
        result = result_record(
            task, exchange, outcome=outcome, final=decision.final, next_retry_at_ms=next_retry_at
        )
        writes.append((self._topics.results, key, encode("DeliveryResult", result)))
        await asyncio.gather(*(self._sink.send(topic, k, v) for topic, k, v in writes))
        self._observe(task, exchange, outcome, decision, now)

    def _observe(
        self, task: Mapping[str, Any], exchange: Exchange, outcome: str, decision: Any, now: float
    ) -> None:
        m = self._metrics
        m.deliveries.labels(outcome, status_class(exchange.status), exchange.error_class or "none").inc()
        m.attempt_seconds.observe(exchange.latency)
        if exchange.error_class == "blocked_address":
            m.blocked_addresses.inc()
        if isinstance(decision, Delivered):
            m.event_to_delivery_seconds.observe(max(0.0, now - task["eventOccurredAt"] / 1000))
            m.attempt_number.observe(task["attempt"])
        elif isinstance(decision, Retry):
            m.retries_scheduled.labels(f"{decision.tier:g}s").inc()
        elif isinstance(decision, DeadLetter):
            m.dead_lettered.labels(decision.reason).inc()
            m.attempt_number.observe(task["attempt"])
        elif isinstance(decision, Disable):
            m.webhooks_disabled.labels(decision.reason).inc()
        elif isinstance(decision, GiveUp):
            m.attempt_number.observe(task["attempt"])
        log.info(
            "attempt message=%s webhook=%s attempt=%d outcome=%s status=%s error=%s latency=%.3fs%s",
            task["messageId"], task["webhookId"], task["attempt"], outcome, exchange.status or "-",
            exchange.error_class or "-", exchange.latency,
            f" next_in={decision.delay:.2f}s" if isinstance(decision, Retry) else "",
        )

    async def _move_on(self, task: Mapping[str, Any], wait: float) -> None:
        """Pass a task that is not due yet to the tier that fits the rest of its wait."""
        tier = tier_for(wait, self._tiers)
        key = task["webhookId"].encode()
        await self._sink.send(self._topics.retry[tier], key, encode("DeliveryTask", task))
        log.debug("moved message=%s on to the %gs tier (%.1fs to wait)", task["messageId"], tier, wait)

    def _should_defer(self, webhook_id: str) -> bool:
        """True when the webhook holds its whole backlog, or its queue would take longer to drain
        than the first retry tier waits, and several seconds at least (a slow or hanging receiver,
        not a burst): then waiting in the tier costs the task nothing."""
        if self._limits.waiting(webhook_id) >= self._backlog:
            return True
        return self._limits.expected_wait(webhook_id) > max(self._tiers[0], DEFER_AFTER)

    async def _defer(self, task: Mapping[str, Any]) -> None:
        """Put ``task`` back, unattempted, into the first retry tier."""
        tier = self._tiers[0]
        later = dict(task)
        later["dueAt"] = int(self._clock() * 1000) + int(tier * 1000)
        key = task["webhookId"].encode()
        await self._sink.send(self._topics.retry[tier], key, encode("DeliveryTask", later))
        self._metrics.deferred.inc()
        log.debug("deferred message=%s webhook=%s: backlog full", task["messageId"], task["webhookId"])

    async def _skip(self, task: Mapping[str, Any], webhook: Webhook | None, reason: str) -> None:
        url = webhook.url if webhook is not None else ""
        now_ms = int(self._clock() * 1000)
        shown = public_url(url) if url else ""
        result = skipped_result(task, attempt_id=new_attempt_id(), now_ms=now_ms, url=shown, reason=reason)
        key = task["webhookId"].encode()
        await self._sink.send(self._topics.results, key, encode("DeliveryResult", result))
        self._metrics.deliveries.labels("skipped", "none", "none").inc()
        log.info(
            "attempt message=%s webhook=%s attempt=%d outcome=skipped reason=%r",
            task["messageId"], task["webhookId"], task["attempt"], reason,
        )

    async def _dead_letter_input(self, rec: Record, reason: str, detail: str) -> None:
        now_ms = int(self._clock() * 1000)
        dlq = dead_letter_record(
            reason=reason, detail=detail, topic=rec.topic, partition=rec.partition, offset=rec.offset,
            key=rec.key, value=rec.value, now_ms=now_ms,
        )
        await self._sink.send(self._topics.dlq, rec.key, encode("DeadLetter", dlq))
        self._metrics.dead_lettered.labels(reason).inc()
        log.warning(
            "dead-lettered an unreadable task at %s/%d:%d: %s (%s)",
            rec.topic, rec.partition, rec.offset, reason, detail[:200],
        )

    async def _secret_unavailable(
        self, rec: Record, task: dict[str, Any], webhook: Webhook, exc: Exception
    ) -> None:
        now_ms = int(self._clock() * 1000)
        message = f"the webhook's secret cannot be used: {type(exc).__name__}"
        exchange = Exchange(new_attempt_id(), now_ms, public_url(webhook.url), {}, 0.0, error_class="secret",
                            error_message=message)
        result = result_record(task, exchange, outcome="dead_lettered", final=True)
        dlq = dead_letter_record(
            reason="secret_unavailable", detail=str(exc), topic=rec.topic, partition=rec.partition,
            offset=rec.offset, key=rec.key, value=rec.value, now_ms=now_ms,
        )
        key = task["webhookId"].encode()
        await asyncio.gather(
            self._sink.send(self._topics.dlq, rec.key, encode("DeadLetter", dlq)),
            self._sink.send(self._topics.results, key, encode("DeliveryResult", result)),
        )
        self._metrics.dead_lettered.labels("secret_unavailable").inc()
        self._metrics.deliveries.labels("dead_lettered", "none", "secret").inc()
        log.error("webhook %s: %s (task %s dead-lettered)", webhook.id, message, task["messageId"])
