"""The log store's port: what the log sink writes and the API and web page read.

A *message* is one event sent to one webhook (its id is stable across retries and redeliveries);
an *attempt* is one DeliveryResult record. Every read is scoped by account id AND webhook id, so
another account's (or webhook's) rows are never returned, whatever id a caller passes.

Listing order and cursors: messages are listed newest first by the position at which the store
first saw them (a monotonic sequence assigned when a message's first attempt is stored). That
position never changes — a new attempt updates a message's status and counts but does not move it
— so paging with ``starting_after`` (the last message id of the previous page) neither skips nor
repeats a message that existed when paging began, even while attempts are being inserted. Messages
first stored after paging began have higher positions and show up only on a fresh first page.
With a ``status`` filter, a message whose status changes while paging may enter or leave the
result; it still appears at most once.

Personal data (docs/data-retention.md): every attempt row records the contact its body is about
(``contact.id``, or a sale's ``customer.id``). ``erase_contact`` blanks the bodies, headers and error
texts of every attempt of that contact's messages and marks the messages erased (attempts logged
later for an erased message are blanked as they are stored); ``expire_bodies_older_than`` blanks
the request bodies, response headers and response excerpts of old attempts while their metadata
(status, latency, error, hookline's own request headers) stays.

Message status is derived from its latest attempt (latest ``attempted_at``, then highest attempt
number): ``delivered`` (2xx), ``retrying`` (failed, another automatic attempt follows), ``failed``
(failed for good or dead-lettered), ``skipped`` (no request was made). A ``deferred`` attempt (the
circuit breaker held the request back; another attempt follows) leaves the message ``retrying``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from hookline.records import DeliveryResult

__all__ = [
    "MAX_CONTACT_ID",
    "MAX_PAGE",
    "STATUSES",
    "AttemptRecord",
    "Erasure",
    "FailedMessage",
    "LastDelivery",
    "LogStore",
    "LogStoreError",
    "MessageDetail",
    "MessagePage",
    "MessageSummary",
    "Purged",
    "StoreRejected",
    "StoreUnavailable",
    "UnknownCursor",
    "contact_id_problem",
    "from_ms",
    "message_status",
    "to_ms",
]

#: Message statuses, the values of ``status`` filters.
STATUSES = ("delivered", "retrying", "failed", "skipped")
#: The most messages one page may hold.
MAX_PAGE = 1000

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# Exceptions:
#   LogStoreError
#   ├── StoreUnavailable   the database cannot be reached or is busy; retry later
#   ├── StoreRejected      the database refused a record's data; retrying will not help
#   └── UnknownCursor      ``starting_after`` names no message of this webhook (also a LookupError)


class LogStoreError(Exception):
    """Base of the log store's errors."""


class StoreUnavailable(LogStoreError):
    """The database cannot be reached (or stays locked); the operation may succeed later."""


class StoreRejected(LogStoreError):
    """The database refused the data of a record; the same input will fail again."""


class UnknownCursor(LogStoreError, LookupError):
    """``starting_after`` is not a message of this account's webhook (or it was purged)."""


#: The longest contact id an erasure accepts (systeme.io's ids are numbers; ours are strings).
MAX_CONTACT_ID = 128


def contact_id_problem(value: str) -> str | None:
    """Why ``value`` cannot be a contact id to erase, or None when it can."""
    if not value or value != value.strip():
        return (
            "a contact id is the payload's contact.id (or a sale's customer.id): not empty, no spaces around"
        )
    if len(value) > MAX_CONTACT_ID:
        return f"a contact id has at most {MAX_CONTACT_ID} characters"
    if not value.isprintable():
        return "a contact id has no control characters"
    if "@" in value:
        return "give the contact's id (the payload's contact.id), not an e-mail address"
    return None


def message_status(outcome: str, final: bool) -> str:
    """The status of a message whose latest attempt has ``outcome`` and ``final``."""
    if outcome == "delivered":
        return "delivered"
    if outcome == "skipped":
        return "skipped"
    if outcome in ("failed", "deferred") and not final:
        return "retrying"
    return "failed"


def from_ms(ms: int) -> datetime:
    """A UTC datetime from epoch milliseconds (exact)."""
    return _EPOCH + timedelta(milliseconds=ms)


def to_ms(when: datetime) -> int:
    """Epoch milliseconds of an aware datetime (exact to the millisecond)."""
    if when.tzinfo is None:
        raise ValueError("naive datetime: give a timezone (UTC)")
    return (when - _EPOCH) // timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class MessageSummary:
    """One message as a list shows it: its latest status and a summary of its attempts."""

    account_id: str
    webhook_id: str
    message_id: str
    event_id: str
    event_type: str
    event_occurred_at: datetime
    trigger: str  # of the first attempt: automatic, test or manual
    status: str  # one of STATUSES
    last_outcome: str  # delivered, failed, skipped, dead_lettered
    attempt_count: int
    last_attempt: int  # attempt number of the latest attempt
    last_response_status: int | None
    last_error_class: str | None
    first_attempt_at: datetime
    last_attempt_at: datetime
    next_retry_at: datetime | None  # of the latest attempt, when another one is scheduled
    url: str  # of the latest attempt (credentials and query stripped by the worker)
    erased_at: datetime | None = None  # when its contact's data was erased (bodies and headers are gone)


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One attempt with everything that was sent and received."""

    attempt_id: str
    attempt: int
    attempted_at: datetime
    url: str
    request_headers: dict[str, str]  # signatures redacted by the worker
    request_body: bytes
    response_status: int | None
    response_headers: dict[str, str]
    response_excerpt: bytes
    response_truncated: bool
    latency_seconds: float
    outcome: str
    error_class: str | None
    error_message: str | None
    next_retry_at: datetime | None
    final: bool
    trigger: str
    body_expired: bool = False  # request body, response headers and excerpt removed by the body retention
    erased: bool = False  # bodies, headers and error text removed by a contact erasure


@dataclass(frozen=True, slots=True)
class MessageDetail:
    """A message and every attempt of it, oldest first."""

    message: MessageSummary
    attempts: list[AttemptRecord]


@dataclass(frozen=True, slots=True)
class MessagePage:
    """One page of a message list; pass ``items[-1].message_id`` as ``starting_after`` for the next."""

    items: list[MessageSummary]
    has_more: bool


@dataclass(frozen=True, slots=True)
class LastDelivery:
    """A webhook's most recent attempt, for the webhook list of the web page."""

    webhook_id: str
    message_id: str
    attempt_id: str
    attempted_at: datetime
    status: str  # the message's status after that attempt
    outcome: str
    response_status: int | None


@dataclass(frozen=True, slots=True)
class FailedMessage:
    """A message that failed for good, with what sending it again needs: its body and last attempt number."""

    message: MessageSummary
    body: bytes  # of its earliest attempt that logged one; empty when none did
    last_attempt: int  # the highest attempt number logged


@dataclass(frozen=True, slots=True)
class Erasure:
    """What one contact erasure did; holds no personal data (not the contact id either)."""

    erasure_id: int
    account_id: str
    erased_at: datetime
    requested_by: str  # "operator" (hookline erase) or "api" (the account owner)
    messages: int
    attempts: int


@dataclass(frozen=True, slots=True)
class Purged:
    """What one retention purge deleted."""

    messages: int = 0
    attempts: int = 0
    complete: bool = True  # False when ``max_messages`` stopped it before every old message was gone


class LogStore(Protocol):
    """Delivery log storage; implementations are thread-safe."""

    def insert_attempts(self, results: Sequence[DeliveryResult]) -> int:
        """Store attempts' results in one transaction.

        Idempotent on (message id, attempt id): a record stored before is ignored. Return how many
        attempts were new. Raise StoreUnavailable or StoreRejected; nothing is stored then.
        """
        ...

    def list_messages(
        self,
        account_id: str,
        webhook_id: str,
        *,
        status: str | None = None,
        event_type: str | None = None,
        limit: int = 50,
        starting_after: str | None = None,
    ) -> MessagePage:
        """One page of the webhook's messages, newest first (see the module doc for the order)."""
        ...

    def get_message(self, account_id: str, webhook_id: str, message_id: str) -> MessageDetail | None:
        """The message with every attempt, or None when this webhook of this account has no such message."""
        ...

    def last_status_by_webhook(self, account_id: str) -> dict[str, LastDelivery]:
        """Webhook id -> its latest attempt, for every webhook of the account that has one."""
        ...

    def failed_since(
        self, account_id: str, webhook_id: str, since: datetime, *, limit: int
    ) -> list[FailedMessage]:
        """Up to ``limit`` messages of the webhook whose status is ``failed`` and whose first attempt
        is at ``since`` or later, in order of first attempt (then of first storing); test sends are
        left out. What ``recover`` sends again."""
        ...

    def purge_older_than(self, cutoff: datetime, *, max_messages: int | None = None) -> Purged:
        """Delete every message whose latest attempt is older than ``cutoff``, with its attempts."""
        ...

    def expire_bodies_older_than(self, cutoff: datetime, *, max_attempts: int | None = None) -> Purged:
        """Blank the request body, response headers and response excerpt of every attempt made
        before ``cutoff``.

        The attempts (status, latency, error, request headers) stay; ``Purged.attempts`` counts
        those blanked now.
        """
        ...

    def erase_contact(self, account_id: str, contact_id: str, *, requested_by: str) -> Erasure:
        """Erase every stored delivery of the account that concerns the contact, and record the erasure.

        Each attempt of every message whose body named the contact loses its request body, response
        excerpt, request and response headers and error message, and the message is marked erased.
        Another account's rows are never touched. An unknown contact erases nothing (0 rows).
        """
        ...

    def erasures(self, account_id: str | None = None, *, limit: int = 100) -> list[Erasure]:
        """The latest erasures, newest first (of one account, or of every account)."""
        ...

    def ping(self) -> bool:
        """True when the database answers now."""
        ...

    def close(self) -> None:
        """Release every connection."""
        ...
