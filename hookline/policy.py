"""What an attempt's outcome means and what happens next: the retry schedule and the ack/retry/DLQ
decision (docs/architecture.md §6), as pure functions.

A worker turns the response (or the transport error) into a :class:`Classification` with
:func:`classify`, then asks :func:`decide` for the next step: :class:`Delivered`, :class:`Retry`
(to a delay tier), :class:`DeadLetter` (retries exhausted), :class:`Disable` (410 Gone) or
:class:`GiveUp` (a failed test or manual send, which is never retried).

Attempt 1 is the first, immediate attempt; after failed attempt ``n`` the task waits
``schedule[n - 1]`` ± jitter, so a task gets at most ``len(schedule) + 1`` attempts. Retry topics
are tiers of fixed delay: a task goes to the largest tier not longer than its delay and carries
its own due time, which the tier's consumer waits for.
"""

from __future__ import annotations

import email.utils
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import ClassVar, Literal, TypeAlias, get_args

from hookline.settings import DEFAULT_RETRY_SCHEDULE, Settings
from hookline.topics import retry_topic

__all__ = [
    "ERROR_CLASSES",
    "MAX_RETRY_AFTER",
    "Classification",
    "DeadLetter",
    "Decision",
    "Delivered",
    "Disable",
    "ErrorClass",
    "GiveUp",
    "Retry",
    "WorkerErrorClass",
    "classify",
    "decide",
    "next_delay",
    "parse_retry_after",
    "tier_for",
]

#: Why an attempt failed; the ``errorClass`` of its result record and a bounded metric label.
#: ``protocol``: the connection broke or the response was malformed after connecting;
#: ``http_other``: a status outside 2xx-5xx.
ErrorClass: TypeAlias = Literal[
    "timeout",
    "connect",
    "tls",
    "dns",
    "blocked_address",
    "protocol",
    "redirect",
    "http_4xx",
    "http_5xx",
    "http_other",
]
#: Failures the delivery worker records itself, with no response to classify: ``secret``, the
#: webhook's secret cannot be opened or used; ``invalid_task``, a task it cannot read;
#: ``other``, anything unexpected. And two reasons a ``deferred`` task was held back without a
#: request, neither a failure: ``rate_limited``, its webhook's rate limit; ``ordering_held``, an
#: earlier message of its contact is not finished yet (ordered webhooks).
WorkerErrorClass: TypeAlias = Literal["secret", "invalid_task", "other", "rate_limited", "ordering_held"]
#: Every error class: the ``errorClass`` values a result record can carry, and the metric labels.
ERROR_CLASSES: tuple[ErrorClass | WorkerErrorClass, ...] = (
    *get_args(ErrorClass),
    *get_args(WorkerErrorClass),
)

# Classes of attempts that got no response; the others follow from a status.
_TRANSPORT_CLASSES: dict[str, ErrorClass] = {
    c: c
    for c in get_args(ErrorClass)
    if c in ("timeout", "connect", "tls", "dns", "blocked_address", "protocol")
}

#: The longest wait a ``Retry-After`` header can impose, in seconds.
MAX_RETRY_AFTER = 24 * 3600.0

_DEFAULT_JITTER: float = Settings.retry_jitter  # the field's default, defined once in settings


@dataclass(frozen=True, slots=True)
class Classification:
    """What one attempt's outcome means."""

    delivered: bool
    error_class: ErrorClass | None = None
    status: int | None = None
    #: ``410 Gone``: the receiver asks for no more deliveries.
    disable: bool = False
    #: ``429``/``503``: a ``Retry-After`` header sets the shortest wait.
    honour_retry_after: bool = False

    @property
    def outcome(self) -> Literal["delivered", "failed"]:
        """The ``outcome`` of the attempt's result record."""
        return "delivered" if self.delivered else "failed"


def classify(status: int | None, error_class: str | None = None) -> Classification:
    """Classify an attempt by its response ``status``, or by ``error_class`` when there was none.

    A status decides on its own: a 2xx whose body could not be read is still delivered.
    Raise ``ValueError`` for an impossible status or an unknown or missing error class.
    """
    if status is not None:
        if not 100 <= status <= 999:
            raise ValueError(f"not an HTTP status: {status}")
        if 200 <= status <= 299:
            return Classification(delivered=True, status=status)
        cls: ErrorClass
        if 300 <= status <= 399:
            cls = "redirect"  # redirects are never followed
        elif 400 <= status <= 499:
            cls = "http_4xx"
        elif 500 <= status <= 599:
            cls = "http_5xx"
        else:
            cls = "http_other"
        return Classification(
            delivered=False,
            error_class=cls,
            status=status,
            disable=status == 410,
            honour_retry_after=status in (429, 503),
        )
    known = _TRANSPORT_CLASSES.get(error_class) if error_class is not None else None
    if known is None:
        expected = ", ".join(_TRANSPORT_CLASSES)
        raise ValueError(f"an attempt without a status needs an error class ({expected}): {error_class!r}")
    return Classification(delivered=False, error_class=known)


_DELTA_SECONDS = re.compile(r"\s*(\d+(?:\.\d+)?)\s*")


def parse_retry_after(value: str | None, now: float, *, cap: float = MAX_RETRY_AFTER) -> float | None:
    """Return the wait a ``Retry-After`` value asks for, in seconds, at most ``cap``.

    ``value`` is delta-seconds or an HTTP-date (read against ``now``, Unix seconds); a date in
    the past asks for no wait (0.0). Return None when there is no usable value.
    """
    if value is None:
        return None
    match = _DELTA_SECONDS.fullmatch(value)
    if match:
        return min(float(match.group(1)), cap)
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" and asctime dates carry no zone; HTTP-dates are GMT
        when = when.replace(tzinfo=UTC)
    return min(max(when.timestamp() - now, 0.0), cap)


def next_delay(
    attempt: int,
    schedule: Sequence[float],
    jitter: float,
    rng: random.Random,
    retry_after: float | None = None,
) -> float | None:
    """Return how long to wait after failed attempt ``attempt`` (1 = the first), or None when exhausted.

    The wait is ``schedule[attempt - 1]`` times a uniform factor in ``[1 - jitter, 1 + jitter]``,
    and at least ``retry_after`` when given.
    """
    if attempt < 1:
        raise ValueError(f"attempts count from 1, got {attempt}")
    if not 0 <= jitter < 1:
        raise ValueError(f"jitter must be in [0, 1), got {jitter}")
    if attempt > len(schedule):
        return None
    delay = float(schedule[attempt - 1])
    if jitter:
        delay *= rng.uniform(1 - jitter, 1 + jitter)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def tier_for(delay: float, tiers: Sequence[float]) -> float:
    """Return the retry tier for ``delay``: the largest tier not longer than it, else the smallest."""
    if not tiers:
        raise ValueError("no retry tiers")
    fitting = [t for t in tiers if t <= delay]
    return max(fitting) if fitting else min(tiers)


@dataclass(frozen=True, slots=True)
class Delivered:
    """The receiver accepted the message: store the offset, nothing follows."""

    final: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class Retry:
    """Produce the task for attempt ``attempt``, due in ``delay`` seconds, to the ``tier`` topic."""

    delay: float
    tier: float
    attempt: int
    final: ClassVar[bool] = False

    @property
    def topic(self) -> str:
        """The tier's topic name, before the configured prefix."""
        return retry_topic(self.tier)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Retries are exhausted: produce the task to the DLQ with ``reason``."""

    reason: str
    attempts: int
    final: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class Disable:
    """The receiver answered ``410 Gone``: disable the webhook; nothing follows for this task."""

    reason: str
    final: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class GiveUp:
    """A one-shot send (test or manual) failed: record it; it is neither retried nor dead-lettered."""

    reason: str
    final: ClassVar[bool] = True


Decision: TypeAlias = Delivered | Retry | DeadLetter | Disable | GiveUp


def decide(
    classification: Classification,
    *,
    attempt: int,
    rng: random.Random,
    schedule: Sequence[float] = DEFAULT_RETRY_SCHEDULE,
    jitter: float = _DEFAULT_JITTER,
    retry_after: float | None = None,
    tiers: Sequence[float] | None = None,
    retries: bool = True,
) -> Decision:
    """Decide what follows attempt ``attempt`` of a task: the one place that acks, retries or dead-letters.

    ``retry_after`` (seconds, from :func:`parse_retry_after`) counts only for 429 and 503.
    ``tiers`` are the retry topics' delays (default: the schedule's, as :mod:`hookline.topics`
    creates them). ``retries=False`` makes this a one-shot send (``test`` and ``manual`` triggers).
    """
    if attempt < 1:
        raise ValueError(f"attempts count from 1, got {attempt}")
    if classification.delivered:
        return Delivered()
    if classification.disable:
        return Disable(reason="http_410")
    if not retries:
        return GiveUp(reason="single_attempt")
    wait = retry_after if classification.honour_retry_after else None
    delay = next_delay(attempt, schedule, jitter, rng, wait)
    if delay is None:
        return DeadLetter(reason="retries_exhausted", attempts=attempt)
    return Retry(delay=delay, tier=tier_for(delay, schedule if tiers is None else tiers), attempt=attempt + 1)
