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
    Classification,
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
from hookline.records import DeadLetters, DeliveryResult, DeliveryTask, Exchange, Outcome, Source
from hookline.sealing import Sealer, SealingError
from hookline.signing import SecretError, Signer
from hookline.webhooks import Webhook
from processors.deliver.breaker import Admit, Breakers, Defer, Verdict
from processors.deliver.exchange import public_url
from processors.deliver.lanes import RELEASE, Lanes, LaneSink, contact_of
from processors.deliver.limits import ConcurrencyLimits
from processors.deliver.ratelimit import Later, Queue, RateLimits
from processors.deliver.sender import Sender
from processors.deliver.sink import RecordSink
from schemas.codec import CodecError, encode

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
#: An attempt the circuit breaker held back: failed without a request, so it follows the retry schedule.
_HELD_BACK = Classification(delivered=False)
_SEND = Admit()
#: A webhook's queue that would take longer than this (or than the first tier) to drain is too slow.
DEFER_AFTER = 5.0
#: Routed message ids remembered to drop a crashed router's second routing: ~30 s at 500 tasks/s, ~2 MiB.
TAKEN_IDS = 16_384
#: The error class of a result whose task its webhook's rate limit put back (no request was made).
RATE_LIMITED = "rate_limited"
#: The error class of a result whose ordered task waits behind an earlier message of its contact.
ORDERING_HELD = "ordering_held"
#: Seconds a task may wait in memory for its webhook's rate limit; a later turn waits in a retry tier.
RATE_WAIT_MAX = 30.0


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
    received_ms: int  # epoch milliseconds when the worker read it
    timestamp_ms: int = 0  # the record's Kafka timestamp (when it was produced)
    task: DeliveryTask | None = None
    error: CodecError | None = None
    decoded: bool = False
    revoked: bool = False  # its partition went to another worker while it waited (it gives up then)

    @property
    def source(self) -> Source:
        return Source(self.topic, self.partition, self.offset, self.key, self.value)


@dataclass(frozen=True, slots=True)
class DeliveryTopics:
    """Full topic names (prefix applied) the handler writes to."""

    results: str
    dlq: str
    config: str
    retry: Mapping[float, str]  # tier delay -> topic


class Configs(Protocol):
    """The config view, as the handler uses it."""

    def get(self, webhook_id: str) -> Webhook | None: ...

    async def catch_up_async(self, written_before_ms: float, timeout: float = ...) -> bool: ...


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


def skip_reason(webhook: Webhook | None, task: DeliveryTask) -> str | None:
    """Why ``task`` must not be sent to ``webhook`` now, or None to send it.

    Automatic deliveries need an active webhook still subscribed to the event. A test or
    manual send is the owner's explicit request, so only a deleted webhook stops it.
    """
    if webhook is None:
        return "webhook deleted"
    if task.trigger != "automatic":
        return None
    if not webhook.active:
        return "webhook inactive" + (f" ({webhook.disabled_reason})" if webhook.disabled_reason else "")
    event = task.event_type
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


def disabled_config(webhook: Webhook, *, reason: str, now_ms: int) -> Webhook:
    """``webhook`` switched off by the platform: inactive, with ``reason``, one version later."""
    return webhook.switched_off(reason=reason, now_ms=now_ms)


class TaskHandler:
    """Process consumed task records; the worker calls :meth:`hold_until` and :meth:`process`."""

    def __init__(
        self,
        *,
        configs: Configs,
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
        breakers: Breakers | None = None,
        rates: RateLimits | None = None,
        lanes: Lanes | None = None,
    ) -> None:
        self._configs = configs
        self._signers = signers
        self._sender = sender
        # Ordered webhooks: a lane head's first write into a tier blocks its lane durably first.
        self._sink = sink if lanes is None else LaneSink(sink, set(topics.retry.values()))
        self._lanes = lanes  # None: ordering is not enforced (handler tests with fakes)
        self._limits = limits
        self._metrics = metrics
        self._topics = topics
        self._dead_letters = DeadLetters("deliver", topics.dlq, metrics.dead_lettered, log, clock=clock)
        self._schedule = schedule
        self._tiers = tuple(sorted(topics.retry))
        self._tier_of = {topic: delay for delay, topic in topics.retry.items()}
        # Tasks of one webhook held at once (queued for its share or in flight); past that, new ones
        # wait in the first retry tier instead, so a slow receiver's backlog never fills the worker.
        self._backlog = backlog
        self._jitter = jitter
        self._rng = rng or random.Random()
        self._clock = clock
        self._breakers = breakers  # None: no circuit breaker
        self._rates = rates  # None: rate limits and Retry-After pauses are not enforced
        # Webhooks this worker disabled, until the view shows that version (or a newer one).
        self._disabled: dict[str, Webhook] = {}
        # Message ids of the routed tasks this worker took, newest last: a router that crashed routes
        # again what its last commit interval held, and those copies are dropped here
        # (docs/architecture.md §6). Only the router's own tasks: retries, replays and owners' sends
        # carry the same ids on purpose.
        self._taken: dict[str, None] = {}
        self._stopping = False

    @property
    def stopping(self) -> bool:
        """Set when the worker stops: tasks that have not begun their attempt are abandoned."""
        return self._stopping

    @stopping.setter
    def stopping(self, value: bool) -> None:
        self._stopping = value
        if value and self._rates is not None:
            self._rates.release_all()  # tasks waiting for a token give up now, not at their turn

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
        return min(task.due_at, rec.timestamp_ms + int(tier * 1000))

    async def process(self, rec: Record) -> None:
        """Handle ``rec`` completely; raise only :class:`Abandoned` (or on shutdown of the sink)."""
        if self._lanes is not None and rec.value is not None and rec.value.startswith(RELEASE):
            await self._lanes.release(rec.value, rec.received_ms)  # a lane head finished elsewhere
            return
        task = self._decode(rec)
        if task is None:
            err = rec.error
            why = err.reason if err is not None else "tombstone"
            await self._dead_letter_input(rec, why, str(err) if err else "a task record has no value")
            return
        routed = task.trigger == "automatic" and rec.topic not in self._tier_of
        if routed:
            if task.message_id in self._taken:
                self._metrics.duplicates_dropped.inc()
                log.debug(
                    "dropped a second routing of message %s (the router routed it again)", task.message_id
                )
                return
            self._take(task.message_id)
        try:
            wait = task.due_at / 1000 - self._clock()
            if wait > 0.05:
                await self._move_on(task, wait)
                return
            if wait > 0:
                await asyncio.sleep(wait)  # a clock step: wait it out here rather than in another tier
            webhook = await self._current(task, rec.received_ms)
            lanes = self._lanes
            if lanes is not None and webhook is not None and webhook.ordering == "contact":
                contact = contact_of(task) if task.trigger == "automatic" else None
                if contact is not None:  # no contact id (or an owner's send): not ordered
                    hook = webhook
                    await lanes.run(
                        topic=rec.topic,
                        offset=rec.offset,
                        written_ms=rec.timestamp_ms,
                        received_ms=rec.received_ms,
                        task=task,
                        contact=contact,
                        attempt=lambda: self._attempt(rec, task, hook),
                        park=lambda reason: self._park(task, hook, reason),
                        check=lambda: self._still_mine(rec, task),
                    )
                    return
            await self._attempt(rec, task, webhook)
        except BaseException:
            # Not handled here (abandoned on shutdown or revoke): whoever reads it next must take it.
            if routed:
                self._taken.pop(task.message_id, None)
            raise

    def _take(self, message_id: str) -> None:
        self._taken[message_id] = None
        if len(self._taken) > TAKEN_IDS:
            del self._taken[next(iter(self._taken))]  # the oldest

    async def _attempt(self, rec: Record, task: DeliveryTask, webhook: Webhook | None) -> None:
        """Skip, dead-letter, defer or send ``task`` (its turn has come: due, and its lane's head)."""
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
        verdict = self._admit(webhook.id, task)
        if isinstance(verdict, Defer):
            await self._breaker_defer(rec, task, webhook, verdict.reason)
            return
        exchange: Exchange | None = None
        while exchange is None:
            if self._rates is not None and not await self._take_turn(rec, task, webhook, probe=verdict.probe):
                return
            async with self._limits.slot(webhook.id):
                if self.stopping:
                    if verdict.probe and self._breakers is not None:
                        self._breakers.release(webhook.id)
                    raise Abandoned(task.message_id)
                if self._rates is not None and self._rates.paused(webhook.id):
                    continue  # a Retry-After came while it waited for a slot: wait for the pause's end
                if self._rates is not None:
                    # The start itself keeps the limit (ratelimit.py, RateLimits.start); nothing is
                    # awaited from here to the sender's attempt time.
                    while (gap := self._rates.start(webhook.id)) > 0:
                        await asyncio.sleep(gap)
                        if self.stopping or rec.revoked:
                            if verdict.probe and self._breakers is not None:
                                self._breakers.release(webhook.id)
                            raise Abandoned(task.message_id)
                self._metrics.in_flight.inc()
                try:
                    # Signed here and handed straight over (no coroutine of our own around the send, no
                    # local for the headers): nothing per attempt outlives its use while the request waits.
                    attempt_id = new_attempt_id()
                    exchange = await self._sender.send(
                        webhook.url, task.payload, self._sign(task, signer, attempt_id), attempt_id=attempt_id
                    )
                finally:
                    self._metrics.in_flight.dec()
        await self._conclude(rec, task, webhook, exchange, probe=verdict.probe)

    # -- stages ---------------------------------------------------------------------------------
    def _decode(self, rec: Record) -> DeliveryTask | None:
        if not rec.decoded:
            rec.decoded = True
            if rec.value is not None:
                try:
                    rec.task = DeliveryTask.decode(rec.value)
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

    async def _current(self, task: DeliveryTask, received_ms: int) -> Webhook | None:
        webhook = self._lookup(task.webhook_id)
        if webhook is None or webhook.version < task.config_version:
            # The view may not have applied the config this task was routed with yet.
            await self._configs.catch_up_async(received_ms)
            webhook = self._lookup(task.webhook_id)
        return webhook

    def _sign(self, task: DeliveryTask, signer: Signer, attempt_id: str) -> list[tuple[str, str]]:
        return signer.headers(
            event_type=task.event_type,
            msg_id=task.message_id,
            attempt_id=attempt_id,
            event_time_ms=task.event_occurred_at,
            timestamp=int(self._clock()),
            body=task.payload,
            user_agent=USER_AGENT,
            test=task.trigger == "test",
        )

    async def _conclude(
        self, rec: Record, task: DeliveryTask, webhook: Webhook, exchange: Exchange, *, probe: bool = False
    ) -> None:
        now = self._clock()
        now_ms = int(now * 1000)
        classification = classify(exchange.status, exchange.error_class)
        if self._breakers is not None:
            self._count_for_breaker(webhook.id, classification, probe)
        retry_after = None
        if classification.honour_retry_after:
            retry_after = parse_retry_after(exchange.header("retry-after"), now)
            if retry_after and self._rates is not None:  # the webhook waits that long, not only this task
                self._rates.pause(webhook.id, webhook.rate_limit, retry_after)
        decision = decide(
            classification,
            attempt=task.attempt,
            rng=self._rng,
            schedule=self._schedule,
            jitter=self._jitter,
            retry_after=retry_after,
            tiers=self._tiers,
            retries=task.trigger == "automatic",
        )
        exchange = dataclasses.replace(exchange, error_class=classification.error_class)
        key = task.key
        outcome: Outcome = classification.outcome
        next_retry_at: int | None = None
        writes: list[tuple[str, bytes | None, bytes | None]] = []
        if isinstance(decision, Retry):
            next_retry_at = now_ms + int(decision.delay * 1000)
            nxt = task.retry(
                attempt=decision.attempt, due_at=next_retry_at, first_attempt_at=exchange.attempted_at_ms
            )
            writes.append((self._topics.retry[decision.tier], key, nxt.encode()))
        elif isinstance(decision, DeadLetter):
            outcome = "dead_lettered"
            last = f"{exchange.error_class} {exchange.status or ''}".strip()
            detail = f"{decision.attempts} attempts; last: {last}"
            writes.append(self._dead_letters.letter(rec.source, decision.reason, detail, level=logging.INFO))
        elif isinstance(decision, Disable):
            off = disabled_config(webhook, reason=DISABLED_410, now_ms=now_ms)
            self._disabled[webhook.id] = off
            writes.append((self._topics.config, key, encode("WebhookConfig", off.to_record())))
        result = DeliveryResult.of(
            task, exchange, outcome=outcome, final=decision.final, next_retry_at=next_retry_at
        )
        writes.append((self._topics.results, key, result.encode()))
        await asyncio.gather(*(self._sink.send(topic, k, v) for topic, k, v in writes))
        self._observe(task, exchange, outcome, decision, now)

    def _observe(
        self, task: DeliveryTask, exchange: Exchange, outcome: str, decision: Any, now: float
    ) -> None:
        m = self._metrics
        m.deliveries.labels(outcome, status_class(exchange.status), exchange.error_class or "none").inc()
        m.attempt_seconds.observe(exchange.latency)
        if exchange.error_class == "blocked_address":
            m.blocked_addresses.inc()
        if isinstance(decision, Delivered):
            m.event_to_delivery_seconds.observe(max(0.0, now - task.event_occurred_at / 1000))
            m.attempt_number.observe(task.attempt)
        elif isinstance(decision, Retry):
            m.retries_scheduled.labels(f"{decision.tier:g}s").inc()
        elif isinstance(decision, (DeadLetter, GiveUp)):  # a dead letter was counted when it was written
            m.attempt_number.observe(task.attempt)
        elif isinstance(decision, Disable):
            m.webhooks_disabled.labels(decision.reason).inc()
        log.info(
            "attempt message=%s webhook=%s attempt=%d outcome=%s status=%s error=%s latency=%.3fs%s",
            task.message_id,
            task.webhook_id,
            task.attempt,
            outcome,
            exchange.status or "-",
            exchange.error_class or "-",
            exchange.latency,
            f" next_in={decision.delay:.2f}s" if isinstance(decision, Retry) else "",
        )

    async def _move_on(self, task: DeliveryTask, wait: float) -> None:
        """Pass a task that is not due yet to the tier that fits the rest of its wait."""
        tier = tier_for(wait, self._tiers)
        await self._sink.send(self._topics.retry[tier], task.key, task.encode())
        log.debug("moved message=%s on to the %gs tier (%.1fs to wait)", task.message_id, tier, wait)

    def _still_mine(self, rec: Record, task: DeliveryTask) -> None:
        """Raise :class:`Abandoned` when ``rec``'s partition was revoked or the worker stops."""
        if rec.revoked or self.stopping:
            raise Abandoned(task.message_id)

    async def _park(self, task: DeliveryTask, webhook: Webhook, reason: str | None) -> None:
        """Put an ordered task that is not its lane's turn back, unattempted and with the same
        attempt, into the first tier; it comes back then and checks its lane again.

        The first time (``reason`` given) with a ``deferred`` result (``ordering_held``, the message
        it waits for), so the log shows why it is held; the health processor ignores it, as it does
        ``rate_limited``. Going back again (``reason`` None) writes nothing more.
        """
        wait = self._tiers[0]
        due = int(self._clock() * 1000) + int(wait * 1000)
        later = (self._topics.retry[wait], task.key, task.later(due).encode())
        if reason is None:
            await self._sink.send(*later)
            return
        await self._held_back(
            task,
            webhook,
            reason,
            [later],
            outcome="deferred",
            final=False,
            next_retry_at=due,
            error_class=ORDERING_HELD,
        )

    def _should_defer(self, webhook_id: str) -> bool:
        """True when the webhook holds its whole backlog, or its queue would take longer to drain
        than the first retry tier waits, and several seconds at least (a slow or hanging receiver,
        not a burst): then waiting in the tier costs the task nothing."""
        if self._limits.waiting(webhook_id) >= self._backlog:
            return True
        return self._limits.expected_wait(webhook_id) > max(self._tiers[0], DEFER_AFTER)

    async def _defer(self, task: DeliveryTask, held: tuple[Webhook, Later] | None = None) -> None:
        """Put ``task`` back, unattempted and with the same attempt number, into a retry tier.

        Its webhook's backlog is full: the first tier, silently. Its webhook's rate limit ``held``
        it: the tier that fits its turn (never sooner than the first tier), with a ``deferred``
        result saying why — not a failure, and it never uses up an attempt.
        """
        wait = self._tiers[0] if held is None else max(self._tiers[0], held[1].due_in)
        due = int(self._clock() * 1000) + int(wait * 1000)
        later = (self._topics.retry[tier_for(wait, self._tiers)], task.key, task.later(due).encode())
        if held is None:
            await self._sink.send(*later)
            self._metrics.deferred.labels("backlog").inc()
            log.debug("deferred message=%s webhook=%s: backlog full", task.message_id, task.webhook_id)
            return
        webhook, verdict = held
        await self._held_back(
            task,
            webhook,
            verdict.reason,
            [later],
            outcome="deferred",
            final=False,
            next_retry_at=due,
            error_class=RATE_LIMITED,
        )
        self._metrics.deferred.labels("rate_limit").inc()
        self._metrics.rate_limited.labels("deferred").inc()

    # -- the rate limit (processors/deliver/ratelimit.py, docs/architecture.md §6) ------------------
    async def _take_turn(self, rec: Record, task: DeliveryTask, webhook: Webhook, *, probe: bool) -> bool:
        """Wait for the webhook's rate limit (in memory), or put the task back for later: False.

        A task whose partition was revoked while it waited gives up (:class:`Abandoned`): its new
        owner sends it, at its own pace, and this worker must not add its own on top.
        """
        rates = self._rates
        assert rates is not None
        busy = rates.waiting(webhook.id) + self._limits.waiting(webhook.id)
        verdict = rates.admit(webhook.id, webhook.rate_limit, busy)
        if isinstance(verdict, Later):
            if probe and self._breakers is not None:
                self._breakers.release(webhook.id)
            await self._defer(task, (webhook, verdict))
            return False
        if isinstance(verdict, Queue):
            self._metrics.rate_limited.labels("memory").inc()
            await rates.acquire(webhook.id)
            if self.stopping or rec.revoked:
                if probe and self._breakers is not None:
                    self._breakers.release(webhook.id)
                raise Abandoned(task.message_id)
        return True

    # -- the circuit breaker (processors/deliver/breaker.py, docs/architecture.md §6) -------------
    def _admit(self, webhook_id: str, task: DeliveryTask) -> Verdict:
        """Admit or defer ``task``: only automatic tasks wait for a breaker, never an owner's send."""
        if self._breakers is None or task.trigger != "automatic":
            return _SEND
        return self._breakers.admit(webhook_id)

    def _count_for_breaker(self, webhook_id: str, c: Classification, probe: bool) -> None:
        assert self._breakers is not None
        moved = self._breakers.record(
            webhook_id, delivered=c.delivered, error_class=c.error_class, probe=probe
        )
        if moved is not None:
            self._metrics.breaker_transitions.labels(moved).inc()
            log.warning("webhook %s: circuit breaker %s", webhook_id, moved)

    async def _breaker_defer(self, rec: Record, task: DeliveryTask, webhook: Webhook, reason: str) -> None:
        """Move ``task`` on to its next attempt without a request, as if that attempt had failed:
        a ``deferred`` result, and the next attempt in its tier (or the DLQ after the last one)."""
        now_ms = int(self._clock() * 1000)
        decision = decide(
            _HELD_BACK,
            attempt=task.attempt,
            rng=self._rng,
            schedule=self._schedule,
            jitter=self._jitter,
            tiers=self._tiers,
        )
        writes: list[tuple[str, bytes | None, bytes | None]] = []
        if isinstance(decision, Retry):
            outcome: Outcome = "deferred"
            due = now_ms + int(decision.delay * 1000)
            next_retry_at: int | None = due
            nxt = task.retry(attempt=decision.attempt, due_at=due, first_attempt_at=now_ms)
            writes.append((self._topics.retry[decision.tier], task.key, nxt.encode()))
        else:  # the last attempt: the task ends in the DLQ as if it had been sent and failed
            outcome, next_retry_at = "dead_lettered", None
            detail = f"{task.attempt} attempts; last: deferred by the circuit breaker"
            dead = self._dead_letters.letter(rec.source, "retries_exhausted", detail, level=logging.INFO)
            writes.append(dead)
        await self._held_back(
            task, webhook, reason, writes, outcome=outcome, final=decision.final, next_retry_at=next_retry_at
        )
        self._metrics.deferred.labels("breaker").inc()

    async def _held_back(
        self,
        task: DeliveryTask,
        webhook: Webhook,
        reason: str,
        writes: list[tuple[str, bytes | None, bytes | None]],
        *,
        outcome: Outcome,
        final: bool,
        next_retry_at: int | None,
        error_class: str | None = None,
    ) -> None:
        """Write ``writes`` and the result of an attempt held back without a request (``reason``)."""
        now_ms = int(self._clock() * 1000)
        exchange = Exchange(
            new_attempt_id(),
            now_ms,
            public_url(webhook.url),
            {},
            0.0,
            error_class=error_class,
            error_message=reason,
        )
        result = DeliveryResult.of(task, exchange, outcome=outcome, final=final, next_retry_at=next_retry_at)
        writes.append((self._topics.results, task.key, result.encode()))
        await asyncio.gather(*(self._sink.send(topic, k, v) for topic, k, v in writes))
        self._metrics.deliveries.labels(outcome, "none", error_class or "none").inc()
        log.info(
            "attempt message=%s webhook=%s attempt=%d outcome=%s reason=%r",
            task.message_id,
            task.webhook_id,
            task.attempt,
            outcome,
            reason,
        )

    async def _skip(self, task: DeliveryTask, webhook: Webhook | None, reason: str) -> None:
        url = webhook.url if webhook is not None else ""
        now_ms = int(self._clock() * 1000)
        shown = public_url(url) if url else ""
        result = DeliveryResult.skipped(
            task, attempt_id=new_attempt_id(), now_ms=now_ms, url=shown, reason=reason
        )
        await self._sink.send(self._topics.results, task.key, result.encode())
        self._metrics.deliveries.labels("skipped", "none", "none").inc()
        log.info(
            "attempt message=%s webhook=%s attempt=%d outcome=skipped reason=%r",
            task.message_id,
            task.webhook_id,
            task.attempt,
            reason,
        )

    async def _dead_letter_input(self, rec: Record, reason: str, detail: str) -> None:
        await self._sink.send(*self._dead_letters.letter(rec.source, reason, detail))

    async def _secret_unavailable(
        self, rec: Record, task: DeliveryTask, webhook: Webhook, exc: Exception
    ) -> None:
        now_ms = int(self._clock() * 1000)
        message = f"the webhook's secret cannot be used: {type(exc).__name__}"
        exchange = Exchange(
            new_attempt_id(),
            now_ms,
            public_url(webhook.url),
            {},
            0.0,
            error_class="secret",
            error_message=message,
        )
        result = DeliveryResult.of(task, exchange, outcome="dead_lettered", final=True)
        # The error line below names the webhook; the dead letter's own line stays at INFO.
        dead = self._dead_letters.letter(rec.source, "secret_unavailable", str(exc), level=logging.INFO)
        await asyncio.gather(
            self._sink.send(*dead),
            self._sink.send(self._topics.results, task.key, result.encode()),
        )
        self._metrics.deliveries.labels("dead_lettered", "none", "secret").inc()
        log.error("webhook %s: %s (task %s dead-lettered)", webhook.id, message, task.message_id)
