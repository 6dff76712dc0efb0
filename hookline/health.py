"""Endpoint health, pure: a webhook's failure streak, its thresholds and the operator events they raise.

The health processor (docs/architecture.md §6, *Endpoint health*) keeps one :class:`Streak` per
webhook in a Faust table and feeds it every result record with :func:`observe`; everything with I/O
(the table, the topics, the config write) stays in the processor.

- A *failed message* is an automatic task whose first attempt failed (or was deferred by the
  circuit breaker); its retries add *failed attempts*, not messages. A task its webhook's rate
  limit put back (``deferred``, error class ``rate_limited``) is neither, nor is an ordered task
  held behind an earlier message of its contact (``deferred``, ``ordering_held``). A delivered attempt of any
  trigger ends the streak. Skipped results (deleted, inactive, unsubscribed) change nothing.
- Thresholds are 50, 70, 90 and 100 % of ``disable_after_failures``; a streak older than
  ``disable_after`` with at least :data:`MIN_FAILURES_FOR_AGE` failed messages counts as 100 %.
  Each threshold is announced once per streak (``alerted`` remembers the highest one); 100 %
  disables the webhook.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any, Literal

import orjson

from hookline.timestamps import rfc3339
from hookline.webhooks import Webhook
from schemas.codec import decode, encode

__all__ = [
    "MIN_FAILURES_FOR_AGE",
    "THRESHOLDS",
    "HealthPolicy",
    "Observation",
    "Step",
    "Streak",
    "WebhookEvent",
    "WebhookEventType",
    "disabled_reason",
    "observe",
]

THRESHOLDS: tuple[int, ...] = (50, 70, 90, 100)
#: Failed messages a streak needs before its age alone may disable the webhook.
MIN_FAILURES_FOR_AGE = 3
#: A success on a webhook without a streak rewrites ``last_success_at`` only when it is older than this.
SUCCESS_REFRESH_MS = 60_000

WebhookEventType = Literal["webhook.failing", "webhook.disabled", "webhook.recovered"]
_FAILURES = frozenset({"failed", "dead_lettered", "deferred"})
#: Error classes of ``deferred`` results that the webhook's own settings caused (its rate limit, its
#: ordering per contact), not its endpoint.
_HELD_BY_THE_WEBHOOK = frozenset({"rate_limited", "ordering_held"})


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    disable_after_failures: int  # 0 = never by count
    disable_after_ms: int

    def reached(self, failed_messages: int, age_ms: int) -> tuple[int, ...]:
        """The thresholds (percent) a streak of ``failed_messages`` lasting ``age_ms`` has reached."""
        n = self.disable_after_failures
        pcts = [p for p in THRESHOLDS if n > 0 and failed_messages * 100 >= p * n]
        if failed_messages >= MIN_FAILURES_FOR_AGE and age_ms >= self.disable_after_ms and 100 not in pcts:
            pcts.append(100)
        return tuple(pcts)


@dataclass(frozen=True, slots=True)
class Streak:
    """One webhook's health, as the table stores it (compact JSON: internal state, not a contract)."""

    failed_messages: int = 0
    failed_attempts: int = 0
    first_failure_at: int | None = None
    last_error: str | None = None
    last_success_at: int | None = None
    alerted: int = 0  # the highest threshold announced in this streak; 100 = disabled
    disabled_version: int | None = None  # the config version the processor disabled (or found off)
    offset: int = -1  # the last result offset applied: a replay after a restart changes nothing

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            [
                1,
                self.failed_messages,
                self.failed_attempts,
                self.first_failure_at,
                self.last_error,
                self.last_success_at,
                self.alerted,
                self.disabled_version,
                self.offset,
            ]
        )

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> Streak:
        if not raw:
            return cls()
        v = orjson.loads(raw)
        return cls(v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8])


@dataclass(frozen=True, slots=True)
class Observation:
    """The fields of one result record the streak depends on."""

    offset: int
    outcome: str
    attempt: int
    trigger: str
    attempted_at: int
    error_class: str | None


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """One operator event on ``webhook-events``; ``event_id`` is the same for a repeat."""

    event_id: str
    type: WebhookEventType
    webhook_id: str
    account_id: str
    occurred_at: int
    threshold_percent: int = 0
    failed_messages: int = 0
    failed_attempts: int = 0
    streak_started_at: int | None = None
    last_error_class: str | None = None
    disabled_reason: str | None = None

    @classmethod
    def of(
        cls,
        kind: WebhookEventType,
        streak: Streak,
        *,
        webhook_id: str,
        account_id: str,
        now_ms: int,
        threshold: int = 0,
        disabled_reason: str | None = None,
    ) -> WebhookEvent:
        basis = f"{webhook_id}\x00{streak.first_failure_at}\x00{kind}\x00{threshold}".encode()
        return cls(
            event_id="whe_" + hashlib.sha256(basis).hexdigest()[:32],
            type=kind,
            webhook_id=webhook_id,
            account_id=account_id,
            occurred_at=now_ms,
            threshold_percent=threshold,
            failed_messages=streak.failed_messages,
            failed_attempts=streak.failed_attempts,
            streak_started_at=streak.first_failure_at,
            last_error_class=streak.last_error,
            disabled_reason=disabled_reason,
        )

    @property
    def key(self) -> bytes:
        return self.webhook_id.encode()

    def to_record(self) -> dict[str, Any]:
        return {
            "eventId": self.event_id,
            "type": self.type.replace(".", "_"),
            "webhookId": self.webhook_id,
            "accountId": self.account_id,
            "occurredAt": self.occurred_at,
            "thresholdPercent": self.threshold_percent,
            "failedMessages": self.failed_messages,
            "failedAttempts": self.failed_attempts,
            "streakStartedAt": self.streak_started_at,
            "lastErrorClass": self.last_error_class,
            "disabledReason": self.disabled_reason,
        }

    @classmethod
    def from_record(cls, r: dict[str, Any]) -> WebhookEvent:
        kind: WebhookEventType = r["type"].replace("_", ".")
        return cls(
            event_id=r["eventId"],
            type=kind,
            webhook_id=r["webhookId"],
            account_id=r["accountId"],
            occurred_at=r["occurredAt"],
            threshold_percent=r["thresholdPercent"],
            failed_messages=r["failedMessages"],
            failed_attempts=r["failedAttempts"],
            streak_started_at=r["streakStartedAt"],
            last_error_class=r["lastErrorClass"],
            disabled_reason=r["disabledReason"],
        )

    def encode(self) -> bytes:
        return encode("WebhookEvent", self.to_record())

    @classmethod
    def decode(cls, value: bytes | None) -> WebhookEvent:
        return cls.from_record(decode(value, "WebhookEvent"))


@dataclass(frozen=True, slots=True)
class Step:
    """What one result changes: the new streak (None: nothing to write) and the thresholds crossed."""

    streak: Streak | None
    crossed: tuple[int, ...] = ()
    recovered: bool = False


def disabled_reason(streak: Streak) -> str:
    """``failing since <time>: <last error class>``, the reason a disabled webhook's config shows."""
    since = rfc3339(streak.first_failure_at) if streak.first_failure_at is not None else "?"
    return f"failing since {since}: {streak.last_error or 'unknown'}"


def re_enabled(state: Streak, hook: Webhook | None, attempted_at: int) -> bool:
    """Whether a result attempted at ``attempted_at`` belongs after the owner switched ``hook`` back on.

    The webhook must be on again at a later config version than the one this processor disabled, and
    the attempt must not predate that change: a result of the disabled days is read a moment late
    (the results consumer waits for bytes, the config view does not) and still belongs to the old
    streak.
    """
    if state.alerted < 100 or state.disabled_version is None or hook is None:
        return False
    return hook.active and hook.version > state.disabled_version and attempted_at >= hook.updated_at


def observe(state: Streak, obs: Observation, policy: HealthPolicy, *, reenabled: bool = False) -> Step:
    """Apply one result record to ``state``; ``reenabled``: the owner switched it back on since."""
    if obs.offset <= state.offset:
        return Step(None)  # already applied before a restart
    was_alerted = state.alerted > 0
    if reenabled:
        state = Streak(last_success_at=state.last_success_at, offset=state.offset)
    if obs.outcome == "delivered":
        if state.failed_messages == 0 and state.failed_attempts == 0 and not reenabled:
            last = state.last_success_at
            if last is not None and obs.attempted_at - last < SUCCESS_REFRESH_MS:
                return Step(None)
        return Step(
            Streak(last_success_at=max(obs.attempted_at, state.last_success_at or 0), offset=obs.offset),
            recovered=was_alerted,
        )
    if obs.outcome not in _FAILURES or obs.error_class in _HELD_BY_THE_WEBHOOK:
        # Skipped, or held back by the webhook's own rate limit or ordering: says nothing about the
        # endpoint, and does not end the old streak either (a skip of the disabled days may be read
        # after the owner switched it back on: resetting here would lose the recovery announcement).
        return Step(None)
    first_message = obs.trigger == "automatic" and obs.attempt == 1
    nxt = replace(
        state,
        failed_messages=state.failed_messages + (1 if first_message else 0),
        failed_attempts=state.failed_attempts + (0 if obs.outcome == "deferred" else 1),
        first_failure_at=state.first_failure_at if state.first_failure_at is not None else obs.attempted_at,
        last_error=obs.error_class or state.last_error or obs.outcome,
        offset=obs.offset,
    )
    assert nxt.first_failure_at is not None
    reached = policy.reached(nxt.failed_messages, obs.attempted_at - nxt.first_failure_at)
    crossed = tuple(p for p in reached if p > state.alerted)
    if crossed:
        nxt = replace(nxt, alerted=crossed[-1])
    return Step(nxt, crossed)
