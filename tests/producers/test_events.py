"""The six event constructors: shape, defaults, Avro round trip, and every validation rule."""

# The validation table reads best with one case per line.
# ruff: noqa: E501

from __future__ import annotations

import dataclasses
import math
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

import producers
from hookline.webhooks import EVENT_TYPES
from producers.events import (
    Cancellation,
    Contact,
    ContactField,
    Customer,
    Event,
    EventType,
    Funnel,
    FunnelStep,
    InvalidEvent,
    Order,
    PricePlan,
    SaleNew,
    Tag,
    contact_created,
    contact_opt_in,
    contact_tag_added,
    contact_tag_removed,
    sale_canceled,
    sale_new,
    to_millis,
)
from schemas.codec import decode, encode

T0 = 1_717_243_200_000  # 2024-06-01T12:00:00Z
ACCOUNT = "acct-42"


def contact(**changes: Any) -> Contact:
    base = Contact(
        id=1001,
        email="camille.martin@example.com",
        registered_at=T0,
        locale="fr-FR",
        source_url="https://yogaflow.example.com/free-guide",
        needs_confirmation=True,
        fields=[
            ContactField("First name", "first_name", "Camille"),
            ContactField("Surname", "surname", "Martin"),
            ContactField("Phone number", "phone_number", None),
        ],
        tags=[Tag(7, "Lead")],
    )
    return dataclasses.replace(base, **changes)


def customer(**changes: Any) -> Customer:
    base = Customer(
        id=501,
        email="buyer@example.com",
        payment_processor="stripe",
        source_url="https://yogaflow.example.com/checkout",
        fields={"first_name": "Ana", "country": "BR"},
    )
    return dataclasses.replace(base, **changes)


def order(**changes: Any) -> Order:
    return dataclasses.replace(Order(id=9001, total_price=47.0, created_at=T0), **changes)


def plan(**changes: Any) -> PricePlan:
    base = PricePlan(id=31, name="Gold membership", currency="EUR", type="subscription", amount=29.0)
    return dataclasses.replace(base, **changes)


def step(**changes: Any) -> FunnelStep:
    return dataclasses.replace(
        FunnelStep(id=55, name="Opt-in page", funnel=Funnel(54, "Free guide")), **changes
    )


def cancel(**changes: Any) -> Cancellation:
    base = Cancellation(reason="subscription_canceled", canceled_at=T0 + 1000, original_order_id=9001)
    return dataclasses.replace(base, **changes)


# One valid event of each kind, built by its constructor.
BUILDERS: dict[EventType, Callable[..., Event]] = {
    EventType.CONTACT_CREATED: lambda **kw: contact_created(ACCOUNT, contact(), **kw),
    EventType.CONTACT_TAG_ADDED: lambda **kw: contact_tag_added(ACCOUNT, contact(), Tag(7, "Lead"), **kw),
    EventType.CONTACT_TAG_REMOVED: lambda **kw: contact_tag_removed(
        ACCOUNT, contact(tags=[]), Tag(7, "Lead"), **kw
    ),
    EventType.CONTACT_OPT_IN: lambda **kw: contact_opt_in(ACCOUNT, contact(), step(), **kw),
    EventType.SALE_NEW: lambda **kw: sale_new(ACCOUNT, customer(), order(), plan(), **kw),
    EventType.SALE_CANCELED: lambda **kw: sale_canceled(ACCOUNT, customer(), order(), plan(), cancel(), **kw),
}


def test_event_types_are_the_kernels_six() -> None:
    assert tuple(t.value for t in EventType) == EVENT_TYPES
    assert set(BUILDERS) == set(EventType)


@pytest.mark.parametrize("kind", list(EventType))
def test_constructor_builds_a_valid_event_of_its_kind(kind: EventType) -> None:
    before = time.time_ns() // 1_000_000
    event = BUILDERS[kind]()
    after = time.time_ns() // 1_000_000

    assert event.type is kind
    assert event.account_id == ACCOUNT and event.key == ACCOUNT.encode()
    assert event.topic == ("sale-events" if kind.name.startswith("SALE") else "contact-events")
    assert uuid.UUID(event.event_id).version == 4
    assert isinstance(event.occurred_at, int) and before <= event.occurred_at <= after
    assert event.source in ("crm", "funnels", "billing")

    record = event.to_avro()
    assert record["type"] == kind.value and record["accountId"] == ACCOUNT
    assert record["schemaVersion"] == 1
    assert decode(encode("Event", record), "Event") == record
    assert Event.from_avro(record) == event


def test_explicit_id_time_and_source_are_kept() -> None:
    when = datetime(2024, 6, 1, 14, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    event = contact_created(ACCOUNT, contact(), event_id="evt-1", occurred_at=when, source="import")
    assert (event.event_id, event.occurred_at, event.source) == ("evt-1", T0 + 123, "import")


def test_payload_records_match_the_contract() -> None:
    canceled = BUILDERS[EventType.SALE_CANCELED]().to_avro()["payload"]
    assert canceled == {
        "customer": {
            "id": 501,
            "email": "buyer@example.com",
            "paymentProcessor": "stripe",
            "sourceUrl": "https://yogaflow.example.com/checkout",
            "fields": {"first_name": "Ana", "country": "BR"},
        },
        "order": {"id": 9001, "totalPrice": 47.0, "createdAt": T0},
        "pricePlan": {
            "id": 31,
            "name": "Gold membership",
            "innerName": None,
            "currency": "EUR",
            "type": "subscription",
            "amount": 29.0,
        },
        "cancellation": {"reason": "subscription_canceled", "canceledAt": T0 + 1000, "originalOrderId": 9001},
    }
    opt_in = BUILDERS[EventType.CONTACT_OPT_IN]().to_avro()["payload"]
    assert opt_in["funnelStep"] == {
        "id": 55,
        "name": "Opt-in page",
        "type": "optin",
        "funnel": {"id": 54, "name": "Free guide"},
    }
    assert opt_in["contact"] == {
        "id": 1001,
        "email": "camille.martin@example.com",
        "registeredAt": T0,
        "locale": "fr-FR",
        "sourceURL": "https://yogaflow.example.com/free-guide",
        "unsubscribed": False,
        "bounced": False,
        "needsConfirmation": True,
        "fields": [
            {"fieldName": "First name", "slug": "first_name", "value": "Camille"},
            {"fieldName": "Surname", "slug": "surname", "value": "Martin"},
            {"fieldName": "Phone number", "slug": "phone_number", "value": None},
        ],
        "tags": [{"id": 7, "name": "Lead"}],
    }


def test_tag_added_and_removed_stay_distinct_on_the_wire() -> None:
    # Both payload records have the same fields; the branch must follow the type.
    for kind in (EventType.CONTACT_TAG_ADDED, EventType.CONTACT_TAG_REMOVED):
        back = Event.from_avro(decode(encode("Event", BUILDERS[kind]().to_avro()), "Event"))
        assert back.type is kind


def test_aware_datetimes_become_milliseconds() -> None:
    c = contact(registered_at=datetime(2024, 6, 1, 12, 0, 0, 999_999, tzinfo=UTC))
    assert c.registered_at == T0 + 999
    assert Order(1, 1.0, datetime(1970, 1, 1, tzinfo=UTC)).created_at == 0
    assert to_millis(T0) == T0
    with pytest.raises(InvalidEvent):
        to_millis(datetime(2024, 1, 1))


def test_events_are_immutable_snapshots() -> None:
    fields = {"first_name": "Ana"}
    tags = [Tag(1, "Lead")]
    c = contact(tags=tags)
    cu = customer(fields=fields)
    event = sale_new(ACCOUNT, cu, order(), plan())
    fields["first_name"] = "changed"
    tags.append(Tag(2, "VIP"))
    assert event.to_avro()["payload"]["customer"]["fields"] == {"first_name": "Ana"}
    assert c.tags == (Tag(1, "Lead"),)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.account_id = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        cu.fields["x"] = "y"  # type: ignore[index]


def test_a_subscription_can_be_refunded_too() -> None:
    event = sale_canceled(
        ACCOUNT, customer(), order(), plan(), cancel(reason="refunded", original_order_id=None)
    )
    assert event.to_avro()["payload"]["cancellation"]["originalOrderId"] is None


# Short builders for the table: each changes one part of an otherwise valid event.
def env(account: Any = ACCOUNT, **kw: Any) -> Event:
    return contact_created(account, contact(), **kw)


def con(**kw: Any) -> Event:
    return contact_created(ACCOUNT, contact(**kw))


def con_field(f: Any) -> Event:
    return contact_created(ACCOUNT, contact(fields=[f]))


def tag_added(tag: Any) -> Event:
    return contact_tag_added(ACCOUNT, contact(), tag)


def opt_in(**kw: Any) -> Event:
    return contact_opt_in(ACCOUNT, contact(), step(**kw))


def sale(**kw: Any) -> Event:
    parts: dict[str, dict[str, Any]] = {"customer": {}, "order": {}, "plan": {}}
    for key, value in kw.items():
        part, _, attr = key.partition("__")
        parts[part][attr] = value
    return sale_new(ACCOUNT, customer(**parts["customer"]), order(**parts["order"]), plan(**parts["plan"]))


def canceled(plan_type: str = "subscription", **kw: Any) -> Event:
    return sale_canceled(ACCOUNT, customer(), order(), plan(type=plan_type), cancel(**kw))


NAIVE = datetime(2024, 1, 1)

# (case id, builder, its arguments, field path, words in the reason)
INVALID: list[tuple[str, Callable[..., Event], dict[str, Any], str, str]] = [
    # envelope
    ("empty account", env, {"account": ""}, "accountId", "must not be empty"),
    ("blank account", env, {"account": "   "}, "accountId", "must not be empty"),
    ("account not str", env, {"account": 42}, "accountId", "must be a string"),
    ("account control char", env, {"account": "a\nb"}, "accountId", "control characters"),
    ("account too long", env, {"account": "a" * 256}, "accountId", "at most 255"),
    ("empty event id", env, {"event_id": ""}, "eventId", "must not be empty"),
    ("empty source", env, {"source": ""}, "source", "must not be empty"),
    ("negative time", env, {"occurred_at": -1}, "occurredAt", "between 1970"),
    ("time as float seconds", env, {"occurred_at": 1.7e9}, "occurredAt", "epoch milliseconds"),
    ("naive time", env, {"occurred_at": NAIVE}, "occurredAt", "timezone-aware"),
    ("year 10000", env, {"occurred_at": 253_402_300_800_000}, "occurredAt", "between 1970"),
    ("foreign payload", Event, {"account_id": ACCOUNT, "payload": object()}, "payload", "one of the six"),
    ("contact not a Contact", contact_created, {"account_id": ACCOUNT, "contact": {}}, "contact", "be a Contact"),
    # contact
    ("contact id 0", con, {"id": 0}, "contact.id", "positive id"),
    ("contact id negative", con, {"id": -3}, "contact.id", "positive id"),
    ("contact id bool", con, {"id": True}, "contact.id", "integer id"),
    ("contact id str", con, {"id": "12"}, "contact.id", "integer id"),
    ("contact id > long", con, {"id": 2**63}, "contact.id", "64-bit"),
    ("email without @", con, {"email": "camille"}, "contact.email", "not an e-mail address"),
    ("email without dot", con, {"email": "a@localhost"}, "contact.email", "not an e-mail address"),
    ("email with space", con, {"email": "a b@example.com"}, "contact.email", "not an e-mail address"),
    ("email two @", con, {"email": "a@b@example.com"}, "contact.email", "not an e-mail address"),
    ("email local > 64", con, {"email": "a" * 65 + "@example.com"}, "contact.email", "not an e-mail address"),
    ("email empty", con, {"email": ""}, "contact.email", "must not be empty"),
    ("email None", con, {"email": None}, "contact.email", "is required"),
    ("registeredAt naive", con, {"registered_at": NAIVE}, "contact.registeredAt", "timezone-aware"),
    ("registeredAt str", con, {"registered_at": "2024-01-01"}, "contact.registeredAt", "epoch milliseconds"),
    ("locale", con, {"locale": "english!"}, "contact.locale", "language tag"),
    ("locale empty", con, {"locale": ""}, "contact.locale", "must not be empty"),
    ("sourceURL ftp", con, {"source_url": "ftp://x.example.com/"}, "contact.sourceURL", "http(s) URL"),
    ("sourceURL no host", con, {"source_url": "https://"}, "contact.sourceURL", "http(s) URL"),
    ("sourceURL space", con, {"source_url": "https://a.example.com/x y"}, "contact.sourceURL", "http(s) URL"),
    ("unsubscribed int", con, {"unsubscribed": 1}, "contact.unsubscribed", "boolean"),
    ("bounced None", con, {"bounced": None}, "contact.bounced", "boolean"),
    ("needsConfirmation str", con, {"needs_confirmation": "yes"}, "contact.needsConfirmation", "boolean"),
    ("contact tag id 0", con, {"tags": [Tag(0, "Lead")]}, "contact.tags[0].id", "positive id"),
    ("contact tag name empty", con, {"tags": [Tag(3, "")]}, "contact.tags[0].name", "must not be empty"),
    ("contact tag duplicate", con, {"tags": [Tag(3, "a"), Tag(3, "b")]}, "contact.tags[1].id", "duplicate"),
    # contact fields
    ("field name empty", con_field, {"f": ContactField("", "city", "x")}, "contact.fields[0].fieldName", "not be empty"),
    ("field slug empty", con_field, {"f": ContactField("City", "", "x")}, "contact.fields[0].slug", "not be empty"),
    ("field slug upper", con_field, {"f": ContactField("City", "City", "x")}, "contact.fields[0].slug", "lower-case"),
    ("field value int", con_field, {"f": ContactField("Age", "age", 42)}, "contact.fields[0].value", "be a string"),  # type: ignore[arg-type]
    ("field a tuple", con_field, {"f": ("City", "city", "x")}, "contact.fields[0]", "must be a ContactField"),
    # tag
    ("tag id negative", tag_added, {"tag": Tag(-1, "Lead")}, "tag.id", "positive id"),
    ("tag name empty", tag_added, {"tag": Tag(1, "")}, "tag.name", "must not be empty"),
    ("tag not a Tag", tag_added, {"tag": "Lead"}, "tag", "must be a Tag"),
    # funnel step
    ("step id 0", opt_in, {"id": 0}, "funnelStep.id", "positive id"),
    ("step name empty", opt_in, {"name": ""}, "funnelStep.name", "must not be empty"),
    ("step type empty", opt_in, {"type": ""}, "funnelStep.type", "must not be empty"),
    ("funnel id 0", opt_in, {"funnel": Funnel(0, "F")}, "funnelStep.funnel.id", "positive id"),
    ("funnel name empty", opt_in, {"funnel": Funnel(1, "")}, "funnelStep.funnel.name", "must not be empty"),
    ("funnel not a Funnel", opt_in, {"funnel": "F"}, "funnelStep.funnel", "must be a Funnel"),
    # customer
    ("customer id 0", sale, {"customer__id": 0}, "customer.id", "positive id"),
    ("customer email", sale, {"customer__email": "a.example.com"}, "customer.email", "not an e-mail address"),
    ("processor empty", sale, {"customer__payment_processor": ""}, "customer.paymentProcessor", "not be empty"),
    ("customer sourceUrl", sale, {"customer__source_url": "javascript:x"}, "customer.sourceUrl", "http(s) URL"),
    ("customer field value", sale, {"customer__fields": {"age": 4}}, "customer.fields['age']", "be a string"),
    ("customer field key", sale, {"customer__fields": {"A": "A"}}, "customer.fields['A']", "lower-case"),
    # order
    ("order id 0", sale, {"order__id": 0}, "order.id", "positive id"),
    ("order total negative", sale, {"order__total_price": -0.01}, "order.totalPrice", "must not be negative"),
    ("order total NaN", sale, {"order__total_price": math.nan}, "order.totalPrice", "finite"),
    ("order total inf", sale, {"order__total_price": math.inf}, "order.totalPrice", "finite"),
    ("order total str", sale, {"order__total_price": "47"}, "order.totalPrice", "must be a number"),
    ("order createdAt naive", sale, {"order__created_at": NAIVE}, "order.createdAt", "timezone-aware"),
    # price plan
    ("currency lower case", sale, {"plan__currency": "eur"}, "pricePlan.currency", "3-letter ISO code"),
    ("currency 4 letters", sale, {"plan__currency": "EURO"}, "pricePlan.currency", "3-letter ISO code"),
    ("currency symbol", sale, {"plan__currency": "€"}, "pricePlan.currency", "3-letter ISO code"),
    ("plan type", sale, {"plan__type": "monthly"}, "pricePlan.type", "one_shot, subscription"),
    ("plan amount negative", sale, {"plan__amount": -29}, "pricePlan.amount", "must not be negative"),
    ("plan amount bool", sale, {"plan__amount": True}, "pricePlan.amount", "must be a number"),
    ("plan id 0", sale, {"plan__id": 0}, "pricePlan.id", "positive id"),
    ("plan name empty", sale, {"plan__name": ""}, "pricePlan.name", "must not be empty"),
    ("plan innerName empty", sale, {"plan__inner_name": ""}, "pricePlan.innerName", "must not be empty"),
    # cancellation
    ("cancel reason", canceled, {"reason": "chargeback"}, "cancellation.reason", "one of subscription_canceled"),
    ("cancel a one-shot", canceled, {"plan_type": "one_shot"}, "cancellation.reason", "needs a subscription"),
    ("canceledAt negative", canceled, {"canceled_at": -5}, "cancellation.canceledAt", "between 1970"),
    ("original order 0", canceled, {"original_order_id": 0}, "cancellation.originalOrderId", "positive id"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("build", "args", "path", "words"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_every_rule_names_the_bad_field(
    build: Callable[..., Event], args: dict[str, Any], path: str, words: str
) -> None:
    with pytest.raises(InvalidEvent) as info:
        build(**args)
    assert info.value.problems == ((path, info.value.reason),), info.value.problems
    assert info.value.field == path
    assert words in info.value.reason
    assert str(info.value).startswith(f"{path}: ")


def test_duplicate_slugs_and_missing_cancellation_are_caught() -> None:
    with pytest.raises(InvalidEvent) as info:
        con(fields=[ContactField("City", "city", "a"), ContactField("Town", "city", "b")])
    assert info.value.field == "contact.fields[1].slug" and "duplicate" in info.value.reason
    with pytest.raises(InvalidEvent) as info:
        sale_canceled(ACCOUNT, customer(), order(), plan(), None)  # type: ignore[arg-type]
    assert info.value.problems == (("cancellation", "must be a Cancellation, not NoneType"),)


def test_all_problems_are_reported_at_once() -> None:
    with pytest.raises(InvalidEvent) as info:
        sale_new("", customer(email="x"), order(total_price=-1), plan(currency="eu"))
    assert [p for p, _ in info.value.problems] == [
        "accountId",
        "customer.email",
        "order.totalPrice",
        "pricePlan.currency",
    ]
    assert "pricePlan.currency: must be a 3-letter ISO code" in str(info.value)


def test_invalid_event_is_a_value_error() -> None:
    assert issubclass(InvalidEvent, ValueError)


def test_from_avro_rejects_what_is_not_an_event() -> None:
    with pytest.raises(InvalidEvent) as info:
        Event.from_avro({"type": "NOPE"})
    assert info.value.field == "event"
    bad = BUILDERS[EventType.SALE_NEW]().to_avro()
    bad["payload"]["pricePlan"]["currency"] = "eur"
    with pytest.raises(InvalidEvent) as info:
        Event.from_avro(bad)
    assert info.value.field == "pricePlan.currency"


def test_payload_type_follows_the_payload_class() -> None:
    event = Event(ACCOUNT, SaleNew(customer(), order(), plan()))
    assert event.type is EventType.SALE_NEW and event.topic == "sale-events"
    assert [t.topic for t in EventType] == ["contact-events"] * 4 + ["sale-events"] * 2


def test_package_exports_are_sorted_and_resolve() -> None:
    assert producers.__all__ == sorted(producers.__all__)
    for name in producers.__all__:
        assert getattr(producers, name) is not None
    wanted = {"EventPublisher", "PublishError", "InvalidEvent", "contact_created", "contact_tag_added"}
    wanted |= {"contact_tag_removed", "contact_opt_in", "sale_new", "sale_canceled"}
    assert wanted <= set(producers.__all__)
    with pytest.raises(AttributeError):
        producers.NoSuchName  # noqa: B018
