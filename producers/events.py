"""The six domain events (docs/architecture.md §1) as typed, validated values.

Build events with the constructor functions (:func:`contact_created`, :func:`sale_new`, ...).
Every :class:`Event` is validated when it is created, so nothing invalid can reach a topic:
the :class:`InvalidEvent` raised names each bad field by its path in the published payload
(``contact.email``, ``pricePlan.currency``, ``contact.fields[2].slug``).

Timestamps are epoch milliseconds (``int``); a timezone-aware :class:`~datetime.datetime` is
accepted wherever a timestamp is and stored as milliseconds. Naive datetimes are rejected.
"""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Any, ClassVar, Literal, TypeAlias
from urllib.parse import urlsplit

from hookline.topics import CONTACT_EVENTS, SALE_EVENTS
from hookline.webhooks import EVENT_TYPES

__all__ = [
    "Cancellation",
    "CancellationReason",
    "Contact",
    "ContactCreated",
    "ContactField",
    "ContactOptIn",
    "ContactTagAdded",
    "ContactTagRemoved",
    "Customer",
    "Event",
    "EventType",
    "Funnel",
    "FunnelStep",
    "InvalidEvent",
    "Order",
    "Payload",
    "PricePlan",
    "PricePlanType",
    "SaleCanceled",
    "SaleNew",
    "Tag",
    "Timestamp",
    "contact_created",
    "contact_opt_in",
    "contact_tag_added",
    "contact_tag_removed",
    "now_millis",
    "sale_canceled",
    "sale_new",
    "to_millis",
]

#: Epoch milliseconds, or a timezone-aware datetime (converted to milliseconds on construction).
Timestamp: TypeAlias = int | datetime

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class EventType(StrEnum):
    """The ``X-Webhook-Event`` vocabulary."""

    CONTACT_CREATED = "CONTACT_CREATED"
    CONTACT_TAG_ADDED = "CONTACT_TAG_ADDED"
    CONTACT_TAG_REMOVED = "CONTACT_TAG_REMOVED"
    CONTACT_OPT_IN = "CONTACT_OPT_IN"
    SALE_NEW = "SALE_NEW"
    SALE_CANCELED = "SALE_CANCELED"

    @property
    def topic(self) -> str:
        """Topic name (without prefix) that carries this type."""
        return SALE_EVENTS if self.name.startswith("SALE_") else CONTACT_EVENTS


# The members are spelled out so that a type checker knows them; the kernel's tuple is the source.
if tuple(t.value for t in EventType) != EVENT_TYPES:
    raise RuntimeError(
        f"producers.events.EventType lists {[t.value for t in EventType]}, "
        f"but hookline.webhooks.EVENT_TYPES is {list(EVENT_TYPES)}: make them the same, in the same order"
    )


class InvalidEvent(ValueError):
    """An event, or a part of it, breaks a rule; ``problems`` lists every ``(field path, reason)``."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        self.problems: tuple[tuple[str, str], ...] = tuple(problems)
        super().__init__("; ".join(f"{path}: {reason}" for path, reason in self.problems))

    @property
    def field(self) -> str:
        """Path of the first bad field."""
        return self.problems[0][0] if self.problems else ""

    @property
    def reason(self) -> str:
        return self.problems[0][1] if self.problems else ""


def now_millis() -> int:
    return time.time_ns() // 1_000_000


def to_millis(value: Timestamp) -> int:
    """Epoch milliseconds of ``value`` (an int is returned as is; a naive datetime is refused)."""
    ms = _millis(value)
    if not isinstance(ms, int):
        raise InvalidEvent([("timestamp", "datetime must be timezone-aware")])
    return ms


def _millis(value: Any) -> Any:
    """Aware datetime -> epoch ms (floored); anything else is returned unchanged for validation to judge."""
    if isinstance(value, datetime) and value.utcoffset() is not None:
        return (value - _EPOCH) // timedelta(milliseconds=1)
    return value


# --------------------------------------------------------------------------- parts


@dataclass(frozen=True)
class Tag:
    id: int
    name: str

    def to_avro(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name}

    @classmethod
    def from_avro(cls, r: Mapping[str, Any]) -> Tag:
        return cls(id=r["id"], name=r["name"])


@dataclass(frozen=True)
class ContactField:
    field_name: str  # label shown to the account owner, e.g. "First name"
    slug: str  # stable machine name, e.g. "first_name"
    value: str | None = None

    def to_avro(self) -> dict[str, Any]:
        return {"fieldName": self.field_name, "slug": self.slug, "value": self.value}

    @classmethod
    def from_avro(cls, r: Mapping[str, Any]) -> ContactField:
        return cls(field_name=r["fieldName"], slug=r["slug"], value=r.get("value"))


@dataclass(frozen=True)
class Contact:
    id: int
    email: str
    registered_at: Timestamp
    locale: str | None = None
    source_url: str | None = None
    unsubscribed: bool = False
    bounced: bool = False
    needs_confirmation: bool = False
    fields: Sequence[ContactField] = ()
    tags: Sequence[Tag] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "registered_at", _millis(self.registered_at))
        object.__setattr__(self, "fields", tuple(self.fields))
        object.__setattr__(self, "tags", tuple(self.tags))

    def field_value(self, slug: str) -> str | None:
        return next((f.value for f in self.fields if f.slug == slug), None)

    def to_avro(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "email": self.email,
            "registeredAt": self.registered_at,
            "locale": self.locale,
            "sourceURL": self.source_url,
            "unsubscribed": self.unsubscribed,
            "bounced": self.bounced,
            "needsConfirmation": self.needs_confirmation,
            "fields": [f.to_avro() for f in self.fields],
            "tags": [t.to_avro() for t in self.tags],
        }

    @classmethod
    def from_avro(cls, r: Mapping[str, Any]) -> Contact:
        return cls(
            id=r["id"],
            email=r["email"],
            registered_at=r["registeredAt"],
            locale=r.get("locale"),
            source_url=r.get("sourceURL"),
            unsubscribed=r.get("unsubscribed", False),
            bounced=r.get("bounced", False),
            needs_confirmation=r.get("needsConfirmation", False),
            fields=[ContactField.from_avro(f) for f in r.get("fields", ())],
            tags=[Tag.from_avro(t) for t in r.get("tags", ())],
        )


@dataclass(frozen=True)
class Funnel:
    id: int
    name: str

    def to_avro(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name}


@dataclass(frozen=True)
class FunnelStep:
    id: int
    name: str
    funnel: Funnel
    type: str = "optin"

    def to_avro(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "type": self.type, "funnel": self.funnel.to_avro()}

    @classmethod
    def from_avro(cls, r: Mapping[str, Any]) -> FunnelStep:
        f = r["funnel"]
        return cls(id=r["id"], name=r["name"], type=r.get("type", "optin"), funnel=Funnel(f["id"], f["name"]))


@dataclass(frozen=True)
class Customer:
    id: int
    email: str
    payment_processor: str  # e.g. "stripe", "paypal"
    source_url: str | None = None
    fields: Mapping[str, str] = field(default_factory=dict)  # slug -> value

    def __post_init__(self) -> None:
        # A read-only copy: the event must not change after it was validated.
        object.__setattr__(self, "fields", MappingProxyType(dict(self.fields)))

    def to_avro(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "email": self.email,
            "paymentProcessor": self.payment_processor,
            "sourceUrl": self.source_url,
            "fields": dict(self.fields),
        }

    @classmethod
    def from_avro(cls, r: Mapping[str, Any]) -> Customer:
        return cls(
            id=r["id"],
            email=r["email"],
            payment_processor=r["paymentProcessor"],
            source_url=r.get("sourceUrl"),
            fields=r.get("fields", {}),
        )


@dataclass(frozen=True)
class Order:
    id: int
    total_price: float
    created_at: Timestamp

    def __post_init__(self) -> None:
        object.__setattr__(self, "created_at", _millis(self.created_at))

    def to_avro(self) -> dict[str, Any]:
        return {"id": self.id, "totalPrice": float(self.total_price), "createdAt": self.created_at}

    @classmethod
    def from_avro(cls, r: Mapping[str, Any]) -> Order:
        return cls(id=r["id"], total_price=r["totalPrice"], created_at=r["createdAt"])


PricePlanType: TypeAlias = Literal["one_shot", "subscription"]
CancellationReason: TypeAlias = Literal["subscription_canceled", "refunded"]


@dataclass(frozen=True)
class PricePlan:
    id: int
    name: str
    currency: str  # ISO 4217, upper case: "EUR", "USD"
    type: PricePlanType
    amount: float
    inner_name: str | None = None  # internal label, not shown to buyers

    def to_avro(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "innerName": self.inner_name,
            "currency": self.currency,
            "type": self.type,
            "amount": float(self.amount),
        }

    @classmethod
    def from_avro(cls, r: Mapping[str, Any]) -> PricePlan:
        return cls(
            id=r["id"],
            name=r["name"],
            inner_name=r.get("innerName"),
            currency=r["currency"],
            type=r["type"],
            amount=r["amount"],
        )


@dataclass(frozen=True)
class Cancellation:
    reason: CancellationReason
    canceled_at: Timestamp
    original_order_id: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "canceled_at", _millis(self.canceled_at))

    def to_avro(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "canceledAt": self.canceled_at,
            "originalOrderId": self.original_order_id,
        }

    @classmethod
    def from_avro(cls, r: Mapping[str, Any]) -> Cancellation:
        return cls(
            reason=r["reason"], canceled_at=r["canceledAt"], original_order_id=r.get("originalOrderId")
        )


# --------------------------------------------------------------------------- payloads
# One class per branch of Event.payload; the class names are the Avro record names.


@dataclass(frozen=True)
class ContactCreated:
    TYPE: ClassVar[EventType] = EventType.CONTACT_CREATED
    contact: Contact

    def to_avro(self) -> dict[str, Any]:
        return {"contact": self.contact.to_avro()}


@dataclass(frozen=True)
class ContactTagAdded:
    TYPE: ClassVar[EventType] = EventType.CONTACT_TAG_ADDED
    contact: Contact
    tag: Tag

    def to_avro(self) -> dict[str, Any]:
        return {"contact": self.contact.to_avro(), "tag": self.tag.to_avro()}


@dataclass(frozen=True)
class ContactTagRemoved:
    TYPE: ClassVar[EventType] = EventType.CONTACT_TAG_REMOVED
    contact: Contact
    tag: Tag

    def to_avro(self) -> dict[str, Any]:
        return {"contact": self.contact.to_avro(), "tag": self.tag.to_avro()}


@dataclass(frozen=True)
class ContactOptIn:
    TYPE: ClassVar[EventType] = EventType.CONTACT_OPT_IN
    contact: Contact
    funnel_step: FunnelStep

    def to_avro(self) -> dict[str, Any]:
        return {"contact": self.contact.to_avro(), "funnelStep": self.funnel_step.to_avro()}


@dataclass(frozen=True)
class SaleNew:
    TYPE: ClassVar[EventType] = EventType.SALE_NEW
    customer: Customer
    order: Order
    price_plan: PricePlan

    def to_avro(self) -> dict[str, Any]:
        return {
            "customer": self.customer.to_avro(),
            "order": self.order.to_avro(),
            "pricePlan": self.price_plan.to_avro(),
        }


@dataclass(frozen=True)
class SaleCanceled:
    TYPE: ClassVar[EventType] = EventType.SALE_CANCELED
    customer: Customer
    order: Order
    price_plan: PricePlan
    cancellation: Cancellation

    def to_avro(self) -> dict[str, Any]:
        return {
            "customer": self.customer.to_avro(),
            "order": self.order.to_avro(),
            "pricePlan": self.price_plan.to_avro(),
            "cancellation": self.cancellation.to_avro(),
        }


Payload: TypeAlias = (
    ContactCreated | ContactTagAdded | ContactTagRemoved | ContactOptIn | SaleNew | SaleCanceled
)

_PAYLOADS = (ContactCreated, ContactTagAdded, ContactTagRemoved, ContactOptIn, SaleNew, SaleCanceled)


def _payload_from_avro(kind: EventType, r: Mapping[str, Any]) -> Payload:
    if kind is EventType.CONTACT_CREATED:
        return ContactCreated(Contact.from_avro(r["contact"]))
    if kind is EventType.CONTACT_TAG_ADDED:
        return ContactTagAdded(Contact.from_avro(r["contact"]), Tag.from_avro(r["tag"]))
    if kind is EventType.CONTACT_TAG_REMOVED:
        return ContactTagRemoved(Contact.from_avro(r["contact"]), Tag.from_avro(r["tag"]))
    if kind is EventType.CONTACT_OPT_IN:
        return ContactOptIn(Contact.from_avro(r["contact"]), FunnelStep.from_avro(r["funnelStep"]))
    sale = (
        Customer.from_avro(r["customer"]),
        Order.from_avro(r["order"]),
        PricePlan.from_avro(r["pricePlan"]),
    )
    if kind is EventType.SALE_NEW:
        return SaleNew(*sale)
    return SaleCanceled(*sale, cancellation=Cancellation.from_avro(r["cancellation"]))


# --------------------------------------------------------------------------- the event


@dataclass(frozen=True)
class Event:
    """One domain event, valid by construction; ``to_avro()`` gives the ``Event.avsc`` record."""

    account_id: str
    payload: Payload
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    occurred_at: Timestamp = field(default_factory=now_millis)
    source: str = "hookline"

    SCHEMA_VERSION: ClassVar[int] = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "occurred_at", _millis(self.occurred_at))
        problems = _Checker().event(self)
        if problems:
            raise InvalidEvent(problems)

    @property
    def type(self) -> EventType:
        return self.payload.TYPE

    @property
    def topic(self) -> str:
        """Topic name without prefix (``contact-events`` or ``sale-events``)."""
        return self.type.topic

    @property
    def key(self) -> bytes:
        """Kafka record key: the account id, so one account's events stay in order."""
        return self.account_id.encode("utf-8")

    def to_avro(self) -> dict[str, Any]:
        """The record for ``schemas/Event.avsc`` (the codec picks the payload branch from ``type``)."""
        return {
            "eventId": self.event_id,
            "accountId": self.account_id,
            "occurredAt": self.occurred_at,
            "source": self.source,
            "schemaVersion": self.SCHEMA_VERSION,
            "type": self.type.value,
            "payload": self.payload.to_avro(),
        }

    @classmethod
    def from_avro(cls, record: Mapping[str, Any]) -> Event:
        """Rebuild (and re-validate) an event from a decoded ``Event`` record."""
        try:
            kind = EventType(record["type"])
            return cls(
                account_id=record["accountId"],
                payload=_payload_from_avro(kind, record["payload"]),
                event_id=record["eventId"],
                occurred_at=record["occurredAt"],
                source=record["source"],
            )
        except InvalidEvent:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidEvent([("event", f"not a decodable Event record ({exc!r})")]) from exc


# --------------------------------------------------------------------------- constructors


def _event(
    account_id: str, payload: Payload, event_id: str | None, occurred_at: Timestamp | None, source: str
) -> Event:
    return Event(
        account_id=account_id,
        payload=payload,
        event_id=str(uuid.uuid4()) if event_id is None else event_id,
        occurred_at=now_millis() if occurred_at is None else occurred_at,
        source=source,
    )


def contact_created(
    account_id: str,
    contact: Contact,
    *,
    event_id: str | None = None,
    occurred_at: Timestamp | None = None,
    source: str = "crm",
) -> Event:
    """CONTACT_CREATED: ``contact`` was created in ``account_id``."""
    return _event(account_id, ContactCreated(contact), event_id, occurred_at, source)


def contact_tag_added(
    account_id: str,
    contact: Contact,
    tag: Tag,
    *,
    event_id: str | None = None,
    occurred_at: Timestamp | None = None,
    source: str = "crm",
) -> Event:
    """CONTACT_TAG_ADDED: ``tag`` was added to ``contact`` (given as it is after the change)."""
    return _event(account_id, ContactTagAdded(contact, tag), event_id, occurred_at, source)


def contact_tag_removed(
    account_id: str,
    contact: Contact,
    tag: Tag,
    *,
    event_id: str | None = None,
    occurred_at: Timestamp | None = None,
    source: str = "crm",
) -> Event:
    """CONTACT_TAG_REMOVED: ``tag`` was removed from ``contact`` (given as it is after the change)."""
    return _event(account_id, ContactTagRemoved(contact, tag), event_id, occurred_at, source)


def contact_opt_in(
    account_id: str,
    contact: Contact,
    funnel_step: FunnelStep,
    *,
    event_id: str | None = None,
    occurred_at: Timestamp | None = None,
    source: str = "funnels",
) -> Event:
    """CONTACT_OPT_IN: ``contact`` subscribed through the form of ``funnel_step``."""
    return _event(account_id, ContactOptIn(contact, funnel_step), event_id, occurred_at, source)


def sale_new(
    account_id: str,
    customer: Customer,
    order: Order,
    price_plan: PricePlan,
    *,
    event_id: str | None = None,
    occurred_at: Timestamp | None = None,
    source: str = "billing",
) -> Event:
    """SALE_NEW: ``customer`` bought ``price_plan`` (one-shot or subscription) with ``order``."""
    return _event(account_id, SaleNew(customer, order, price_plan), event_id, occurred_at, source)


def sale_canceled(
    account_id: str,
    customer: Customer,
    order: Order,
    price_plan: PricePlan,
    cancellation: Cancellation,
    *,
    event_id: str | None = None,
    occurred_at: Timestamp | None = None,
    source: str = "billing",
) -> Event:
    """SALE_CANCELED: a subscription was canceled or a one-time payment refunded."""
    return _event(
        account_id, SaleCanceled(customer, order, price_plan, cancellation), event_id, occurred_at, source
    )


# --------------------------------------------------------------------------- validation

# Pragmatic address check: one "@", an ASCII local part of atext/dots, a dotted DNS host name.
_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z][A-Za-z0-9-]{0,61}[A-Za-z0-9]"
)
_CURRENCY = re.compile(r"[A-Z]{3}")
_LOCALE = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*")
_SLUG = re.compile(r"[a-z0-9][a-z0-9_-]*")
_MAX_TS = 253_402_300_800_000  # 10000-01-01T00:00:00Z
_MAX_LONG = 2**63 - 1
_MAX_TEXT = 1000
_MAX_ID_TEXT = 255
_PRICE_PLAN_TYPES = ("one_shot", "subscription")
_CANCEL_REASONS = ("subscription_canceled", "refunded")


class _Checker:
    """Collects ``(path, reason)`` for every rule an event breaks."""

    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []

    def fail(self, path: str, reason: str) -> None:
        self.problems.append((path, reason))

    # --- primitives; each returns whether the value passed so callers can skip dependent rules

    def text(self, path: str, v: Any, *, optional: bool = False, max_len: int = _MAX_TEXT) -> bool:
        if v is None:
            if optional:
                return True
            self.fail(path, "is required")
            return False
        if not isinstance(v, str):
            self.fail(path, f"must be a string, not {type(v).__name__}")
            return False
        if not v.strip():
            self.fail(path, "must not be empty")
            return False
        if len(v) > max_len:
            self.fail(path, f"must be at most {max_len} characters")
            return False
        if any(ord(c) < 32 or ord(c) == 127 for c in v):
            self.fail(path, "must not contain control characters")
            return False
        return True

    def ident(self, path: str, v: Any, *, optional: bool = False) -> None:
        if v is None and optional:
            return
        if not isinstance(v, int) or isinstance(v, bool):
            self.fail(path, f"must be an integer id, not {type(v).__name__}")
        elif v <= 0:
            self.fail(path, "must be a positive id")
        elif v > _MAX_LONG:
            self.fail(path, "does not fit in a 64-bit id")

    def flag(self, path: str, v: Any) -> None:
        if not isinstance(v, bool):
            self.fail(path, f"must be a boolean, not {type(v).__name__}")

    def timestamp(self, path: str, v: Any) -> None:
        if isinstance(v, datetime):
            self.fail(path, "datetime must be timezone-aware")
        elif not isinstance(v, int) or isinstance(v, bool):
            self.fail(path, "must be epoch milliseconds (int) or an aware datetime")
        elif not 0 <= v < _MAX_TS:
            self.fail(path, "must be between 1970 and 9999")

    def money(self, path: str, v: Any) -> None:
        if not isinstance(v, int | float) or isinstance(v, bool):
            self.fail(path, f"must be a number, not {type(v).__name__}")
        elif not math.isfinite(v):
            self.fail(path, "must be a finite number")
        elif v < 0:
            self.fail(path, "must not be negative")

    def email(self, path: str, v: Any) -> None:
        if self.text(path, v, max_len=254) and (_EMAIL.fullmatch(v) is None or len(v.partition("@")[0]) > 64):
            self.fail(path, "not an e-mail address")

    def url(self, path: str, v: Any) -> None:
        if v is None or not self.text(path, v, max_len=2048):
            return
        try:
            parts = urlsplit(v)
            ok = (
                parts.scheme in ("http", "https") and bool(parts.hostname) and not any(c.isspace() for c in v)
            )
        except ValueError:
            ok = False
        if not ok:
            self.fail(path, "not an http(s) URL")

    def one_of(self, path: str, v: Any, allowed: Iterable[str]) -> None:
        allowed = tuple(allowed)
        if v not in allowed:
            self.fail(path, f"must be one of {', '.join(allowed)}, not {v!r}")

    def typed(self, path: str, v: Any, cls: type[Any]) -> bool:
        if not isinstance(v, cls):
            self.fail(path, f"must be a {cls.__name__}, not {type(v).__name__}")
            return False
        return True

    # --- parts

    def tag(self, p: str, t: Any) -> None:
        if self.typed(p, t, Tag):
            self.ident(f"{p}.id", t.id)
            self.text(f"{p}.name", t.name)

    def contact(self, p: str, c: Any) -> None:
        if not self.typed(p, c, Contact):
            return
        self.ident(f"{p}.id", c.id)
        self.email(f"{p}.email", c.email)
        self.timestamp(f"{p}.registeredAt", c.registered_at)
        locale_ok = c.locale is None or self.text(f"{p}.locale", c.locale, max_len=35)
        if locale_ok and c.locale is not None and _LOCALE.fullmatch(c.locale) is None:
            self.fail(f"{p}.locale", "not a language tag such as 'en' or 'fr-FR'")
        self.url(f"{p}.sourceURL", c.source_url)
        self.flag(f"{p}.unsubscribed", c.unsubscribed)
        self.flag(f"{p}.bounced", c.bounced)
        self.flag(f"{p}.needsConfirmation", c.needs_confirmation)
        slugs: set[str] = set()
        for i, f in enumerate(c.fields):
            fp = f"{p}.fields[{i}]"
            if not self.typed(fp, f, ContactField):
                continue
            self.text(f"{fp}.fieldName", f.field_name)
            if self.text(f"{fp}.slug", f.slug, max_len=100):
                if _SLUG.fullmatch(f.slug) is None:
                    self.fail(f"{fp}.slug", "must be lower-case letters, digits, '_' or '-'")
                elif f.slug in slugs:
                    self.fail(f"{fp}.slug", f"duplicate slug {f.slug!r}")
                slugs.add(f.slug)
            self.text(f"{fp}.value", f.value, optional=True, max_len=10_000)
        tag_ids: set[int] = set()
        for i, t in enumerate(c.tags):
            self.tag(f"{p}.tags[{i}]", t)
            if isinstance(t, Tag):
                if t.id in tag_ids:
                    self.fail(f"{p}.tags[{i}].id", f"duplicate tag id {t.id}")
                tag_ids.add(t.id)

    def funnel_step(self, p: str, s: Any) -> None:
        if not self.typed(p, s, FunnelStep):
            return
        self.ident(f"{p}.id", s.id)
        self.text(f"{p}.name", s.name)
        self.text(f"{p}.type", s.type, max_len=50)
        if self.typed(f"{p}.funnel", s.funnel, Funnel):
            self.ident(f"{p}.funnel.id", s.funnel.id)
            self.text(f"{p}.funnel.name", s.funnel.name)

    def customer(self, p: str, c: Any) -> None:
        if not self.typed(p, c, Customer):
            return
        self.ident(f"{p}.id", c.id)
        self.email(f"{p}.email", c.email)
        self.text(f"{p}.paymentProcessor", c.payment_processor, max_len=100)
        self.url(f"{p}.sourceUrl", c.source_url)
        for k, v in c.fields.items():
            if self.text(f"{p}.fields[{k!r}]", k, max_len=100) and _SLUG.fullmatch(k) is None:
                self.fail(f"{p}.fields[{k!r}]", "key must be lower-case letters, digits, '_' or '-'")
            if not isinstance(v, str):
                self.fail(f"{p}.fields[{k!r}]", f"must be a string, not {type(v).__name__}")

    def order(self, p: str, o: Any) -> None:
        if self.typed(p, o, Order):
            self.ident(f"{p}.id", o.id)
            self.money(f"{p}.totalPrice", o.total_price)
            self.timestamp(f"{p}.createdAt", o.created_at)

    def price_plan(self, p: str, pp: Any) -> None:
        if not self.typed(p, pp, PricePlan):
            return
        self.ident(f"{p}.id", pp.id)
        self.text(f"{p}.name", pp.name)
        self.text(f"{p}.innerName", pp.inner_name, optional=True)
        if not isinstance(pp.currency, str) or _CURRENCY.fullmatch(pp.currency) is None:
            self.fail(f"{p}.currency", "must be a 3-letter ISO code (upper case, e.g. EUR)")
        self.one_of(f"{p}.type", pp.type, _PRICE_PLAN_TYPES)
        self.money(f"{p}.amount", pp.amount)

    def cancellation(self, p: str, c: Any, plan: Any) -> None:
        if not self.typed(p, c, Cancellation):
            return
        self.one_of(f"{p}.reason", c.reason, _CANCEL_REASONS)
        if c.reason == "subscription_canceled" and getattr(plan, "type", None) == "one_shot":
            self.fail(f"{p}.reason", "subscription_canceled needs a subscription price plan")
        self.timestamp(f"{p}.canceledAt", c.canceled_at)
        self.ident(f"{p}.originalOrderId", c.original_order_id, optional=True)

    # --- the event

    def event(self, e: Event) -> list[tuple[str, str]]:
        self.text("accountId", e.account_id, max_len=_MAX_ID_TEXT)
        self.text("eventId", e.event_id, max_len=_MAX_ID_TEXT)
        self.timestamp("occurredAt", e.occurred_at)
        self.text("source", e.source, max_len=100)
        pl = e.payload
        if not isinstance(pl, _PAYLOADS):
            self.fail("payload", f"must be one of the six event payloads, not {type(pl).__name__}")
            return self.problems
        if isinstance(pl, ContactCreated | ContactTagAdded | ContactTagRemoved | ContactOptIn):
            self.contact("contact", pl.contact)
        if isinstance(pl, ContactTagAdded | ContactTagRemoved):
            self.tag("tag", pl.tag)
        if isinstance(pl, ContactOptIn):
            self.funnel_step("funnelStep", pl.funnel_step)
        if isinstance(pl, SaleNew | SaleCanceled):
            self.customer("customer", pl.customer)
            self.order("order", pl.order)
            self.price_plan("pricePlan", pl.price_plan)
        if isinstance(pl, SaleCanceled):
            self.cancellation("cancellation", pl.cancellation, pl.price_plan)
        return self.problems
