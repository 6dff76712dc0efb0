"""hookline.payloads.build_payload: the exact JSON bytes a receiver gets for each of the six events.

Events are made with the producers' constructors and read back through the Avro codec, as the
router reads them, so the bodies here are the bodies of real deliveries.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from hookline.payloads import build_payload
from producers.events import (
    Cancellation,
    Contact,
    ContactField,
    Customer,
    Event,
    EventType,
    Funnel,
    FunnelStep,
    Order,
    PricePlan,
    Tag,
    contact_created,
    contact_opt_in,
    contact_tag_added,
    contact_tag_removed,
    sale_canceled,
    sale_new,
)
from schemas.codec import decode, encode

T0 = 1_717_243_200_000  # 2024-06-01T12:00:00.000Z
ACCOUNT = "acct-42"
EVENT_ID = "9b2f3c1e-0d4a-4c55-9a61-2f1c0b7e8d90"


def routed(event: Event) -> dict[str, Any]:
    """The event as the router sees it: encoded by the publisher, decoded from the topic."""
    return decode(encode("Event", event.to_avro()), "Event")


def body(event: Event) -> bytes:
    return build_payload(routed(event))


def compact(doc: Any) -> bytes:
    """``doc`` as compact JSON, UTF-8 unescaped: the serialization receivers get."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


CONTACT = Contact(
    id=1001,
    email="Zoe.Lefevre@example.com",
    registered_at=T0 + 7,
    locale="fr-FR",
    source_url="https://yogaflow.example.com/guide?utm=été",
    needs_confirmation=True,
    fields=[
        ContactField("Prénom", "first_name", "Zoë"),
        ContactField("Téléphone", "phone_number", None),
    ],
    tags=[Tag(7, "Client fidèle"), Tag(9_007_199_254_740_993, 'VIP "gold"')],
)
CONTACT_DOC = {
    "id": 1001,
    "email": "Zoe.Lefevre@example.com",
    "registeredAt": "2024-06-01T12:00:00.007Z",
    "locale": "fr-FR",
    "sourceURL": "https://yogaflow.example.com/guide?utm=été",
    "unsubscribed": False,
    "bounced": False,
    "needsConfirmation": True,
    "fields": [
        {"fieldName": "Prénom", "slug": "first_name", "value": "Zoë"},
        {"fieldName": "Téléphone", "slug": "phone_number", "value": None},
    ],
    "tags": [{"id": 7, "name": "Client fidèle"}, {"id": 9_007_199_254_740_993, "name": 'VIP "gold"'}],
}
CUSTOMER = Customer(
    id=501,
    email="buyer@example.com",
    payment_processor="stripe",
    source_url="https://yogaflow.example.com/checkout",
    fields={"first_name": "João", "city": "São Paulo"},
)
CUSTOMER_DOC = {
    "id": 501,
    "email": "buyer@example.com",
    "paymentProcessor": "stripe",
    "sourceUrl": "https://yogaflow.example.com/checkout",
    "fields": {"first_name": "João", "city": "São Paulo"},
}
ORDER = Order(id=9001, total_price=47.5, created_at=T0 + 999)
ORDER_DOC = {"id": 9001, "totalPrice": 47.5, "createdAt": "2024-06-01T12:00:00.999Z"}
PLAN = PricePlan(
    id=31, name="Abonnement Or — mensuel", currency="EUR", type="subscription", amount=29.0,
    inner_name="gold-m",
)
PLAN_DOC = {
    "id": 31,
    "name": "Abonnement Or — mensuel",
    "innerName": "gold-m",
    "currency": "EUR",
    "type": "subscription",
    "amount": 29.0,
}
TAG = Tag(12, "Acheteur")
STEP = FunnelStep(id=55, name="Page d'inscription", funnel=Funnel(54, "Guide gratuit"))

# One event of each type, and the document its body must be (keys in this order).
CASES: dict[EventType, tuple[Callable[[], Event], dict[str, Any]]] = {
    EventType.CONTACT_CREATED: (
        lambda: contact_created(ACCOUNT, CONTACT, event_id=EVENT_ID, occurred_at=T0),
        {"contact": CONTACT_DOC},
    ),
    EventType.CONTACT_TAG_ADDED: (
        lambda: contact_tag_added(ACCOUNT, CONTACT, TAG, event_id=EVENT_ID, occurred_at=T0),
        {"contact": CONTACT_DOC, "tag": {"id": 12, "name": "Acheteur"}},
    ),
    EventType.CONTACT_TAG_REMOVED: (
        lambda: contact_tag_removed(ACCOUNT, CONTACT, TAG, event_id=EVENT_ID, occurred_at=T0),
        {"contact": CONTACT_DOC, "tag": {"id": 12, "name": "Acheteur"}},
    ),
    EventType.CONTACT_OPT_IN: (
        lambda: contact_opt_in(ACCOUNT, CONTACT, STEP, event_id=EVENT_ID, occurred_at=T0),
        {
            "contact": CONTACT_DOC,
            "funnelStep": {
                "id": 55,
                "name": "Page d'inscription",
                "type": "optin",
                "funnel": {"id": 54, "name": "Guide gratuit"},
            },
        },
    ),
    EventType.SALE_NEW: (
        lambda: sale_new(ACCOUNT, CUSTOMER, ORDER, PLAN, event_id=EVENT_ID, occurred_at=T0),
        {"customer": CUSTOMER_DOC, "order": ORDER_DOC, "pricePlan": PLAN_DOC},
    ),
    EventType.SALE_CANCELED: (
        lambda: sale_canceled(
            ACCOUNT, CUSTOMER, ORDER, PLAN, Cancellation("refunded", T0 + 86_400_000, 9000),
            event_id=EVENT_ID, occurred_at=T0,
        ),
        {
            "customer": CUSTOMER_DOC,
            "order": ORDER_DOC,
            "pricePlan": PLAN_DOC,
            "cancellation": {
                "reason": "refunded",
                "canceledAt": "2024-06-02T12:00:00.000Z",
                "originalOrderId": 9000,
            },
        },
    ),
}


def test_every_event_type_has_a_case() -> None:
    assert set(CASES) == set(EventType)


@pytest.mark.parametrize("kind", list(EventType))
def test_the_body_is_the_documented_shape_as_compact_utf8_json(kind: EventType) -> None:
    make, doc = CASES[kind]
    out = body(make())
    assert out == compact(doc)
    # Key order is part of the bytes: the same as the document above, at every level.
    assert list(json.loads(out)) == list(doc)


@pytest.mark.parametrize("kind", list(EventType))
def test_the_body_is_stable(kind: EventType) -> None:
    make = CASES[kind][0]
    event = make()
    first = body(event)
    assert body(event) == first
    assert body(make()) == first
    # Built from the publisher's record or from the decoded one: the same bytes.
    assert build_payload(event.to_avro()) == first


@pytest.mark.parametrize("kind", list(EventType))
def test_the_body_carries_only_the_payload(kind: EventType) -> None:
    out = body(CASES[kind][0]())
    for envelope in (EVENT_ID.encode(), ACCOUNT.encode(), b'"eventId"', b'"accountId"', b'"occurredAt"'):
        assert envelope not in out
    assert kind.value.encode() not in out


def test_sale_new_bytes() -> None:
    make = CASES[EventType.SALE_NEW][0]
    assert body(make()) == (
        '{"customer":{"id":501,"email":"buyer@example.com","paymentProcessor":"stripe",'
        '"sourceUrl":"https://yogaflow.example.com/checkout",'
        '"fields":{"first_name":"João","city":"São Paulo"}},'
        '"order":{"id":9001,"totalPrice":47.5,"createdAt":"2024-06-01T12:00:00.999Z"},'
        '"pricePlan":{"id":31,"name":"Abonnement Or — mensuel","innerName":"gold-m","currency":"EUR",'
        '"type":"subscription","amount":29.0}}'
    ).encode()


def test_non_ascii_is_raw_utf8_and_quotes_are_escaped() -> None:
    out = body(CASES[EventType.CONTACT_TAG_ADDED][0]())
    assert "Zoë".encode() in out and "Client fidèle".encode() in out
    assert b"\\u" not in out  # no \uXXXX escapes
    assert b'"name":"VIP \\"gold\\""' in out
    assert b"9007199254740993" in out  # 64-bit ids stay exact, never floats


def test_contact_and_customer_spell_source_url_differently() -> None:
    # systeme.io's shapes: the contact's sourceURL, the customer's sourceUrl.
    contact = json.loads(body(CASES[EventType.CONTACT_CREATED][0]()))["contact"]
    customer = json.loads(body(CASES[EventType.SALE_NEW][0]()))["customer"]
    assert "sourceURL" in contact and "sourceUrl" not in contact
    assert "sourceUrl" in customer and "sourceURL" not in customer


def test_timestamps_are_rfc3339_utc_with_milliseconds() -> None:
    cases = {
        0: "1970-01-01T00:00:00.000Z",
        T0: "2024-06-01T12:00:00.000Z",
        T0 + 1: "2024-06-01T12:00:00.001Z",
        T0 + 59_999: "2024-06-01T12:00:59.999Z",  # never rounded up into the next second
        253_402_300_799_999: "9999-12-31T23:59:59.999Z",
    }
    for ms, text in cases.items():
        event = contact_created(ACCOUNT, Contact(1, "a@example.com", ms), event_id=EVENT_ID, occurred_at=T0)
        assert json.loads(body(event))["contact"]["registeredAt"] == text, ms


# A contact with only its required values, and its body: every optional value is there, as null.
BARE_CONTACT = Contact(id=1, email="a@example.com", registered_at=T0)
BARE_CONTACT_DOC = {
    "id": 1,
    "email": "a@example.com",
    "registeredAt": "2024-06-01T12:00:00.000Z",
    "locale": None,
    "sourceURL": None,
    "unsubscribed": False,
    "bounced": False,
    "needsConfirmation": False,
    "fields": [],
    "tags": [],
}


def test_optional_values_are_null_and_empty_lists_stay() -> None:
    created = contact_created(ACCOUNT, BARE_CONTACT, event_id=EVENT_ID, occurred_at=T0)
    assert body(created) == compact({"contact": BARE_CONTACT_DOC})
    sale = sale_canceled(
        ACCOUNT,
        Customer(id=1, email="c@example.com", payment_processor="paypal"),
        Order(id=2, total_price=0, created_at=T0),
        PricePlan(id=3, name="One shot", currency="USD", type="one_shot", amount=10),
        Cancellation("refunded", T0),
        event_id=EVENT_ID,
        occurred_at=T0,
    )
    out = body(sale)
    doc = json.loads(out)
    assert doc["customer"]["sourceUrl"] is None and doc["customer"]["fields"] == {}
    assert doc["pricePlan"]["innerName"] is None
    assert doc["cancellation"]["originalOrderId"] is None
    # Prices are Avro doubles: published as integers, they still go out as JSON floats.
    assert b'"totalPrice":0.0,' in out and b'"amount":10.0}' in out


def test_a_record_without_its_defaulted_fields_gets_the_schemas_defaults() -> None:
    # Only the required fields, as a record of an older writer schema would have them.
    event = {
        "type": "CONTACT_OPT_IN",
        "payload": {
            "contact": {"id": 1, "email": "a@example.com", "registeredAt": T0, "fields": [], "tags": []},
            "funnelStep": {"id": 2, "name": "Step", "funnel": {"id": 3, "name": "Funnel"}},
        },
    }
    assert build_payload(event) == compact({
        "contact": BARE_CONTACT_DOC,
        "funnelStep": {"id": 2, "name": "Step", "type": "optin", "funnel": {"id": 3, "name": "Funnel"}},
    })


def test_fields_outside_the_shape_are_left_out() -> None:
    event = routed(CASES[EventType.CONTACT_TAG_REMOVED][0]())
    event["payload"]["contact"]["internalScore"] = 99
    event["payload"]["tag"]["color"] = "red"
    assert build_payload(event) == compact(CASES[EventType.CONTACT_TAG_REMOVED][1])


def test_an_unknown_event_type_is_refused() -> None:
    event = routed(CASES[EventType.SALE_NEW][0]())
    event["type"] = "SALE_REFUNDED"
    with pytest.raises(ValueError, match="SALE_REFUNDED"):
        build_payload(event)
