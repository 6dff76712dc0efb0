"""The sample generator: reproducible, consistent histories, the requested kinds and accounts."""

from __future__ import annotations

from collections import Counter

import pytest

from producers.events import Event, EventType, to_millis
from producers.samples import DEFAULT_WEIGHTS, SampleGenerator
from schemas.codec import decode, encode

T0 = 1_717_243_200_000


def check_history(events: list[Event]) -> dict[str, int]:
    """Assert the stream is consistent per account; return counts of what was checked."""
    open_sales: dict[tuple[str, int], str] = {}  # (account, order id) -> plan type
    tags: dict[tuple[str, int], set[int]] = {}  # (account, contact id) -> tag ids
    seen = Counter[str]()
    last_time: dict[str, int] = {}
    for e in events:
        assert to_millis(e.occurred_at) >= last_time.get(e.account_id, 0)
        last_time[e.account_id] = to_millis(e.occurred_at)
        p = e.to_avro()["payload"]
        if e.type is EventType.SALE_NEW:
            key = (e.account_id, p["order"]["id"])
            assert key not in open_sales
            open_sales[key] = p["pricePlan"]["type"]
        elif e.type is EventType.SALE_CANCELED:
            c = p["cancellation"]
            key = (e.account_id, c["originalOrderId"])
            assert c["originalOrderId"] == p["order"]["id"]
            if key in open_sales:  # otherwise a sale from before the stream
                plan_type = open_sales.pop(key)
                seen["cancels_of_streamed_sales"] += 1
                assert p["pricePlan"]["type"] == plan_type
            want = "subscription_canceled" if p["pricePlan"]["type"] == "subscription" else "refunded"
            assert c["reason"] == want
            assert c["canceledAt"] >= p["order"]["createdAt"]
        elif e.type in (EventType.CONTACT_TAG_ADDED, EventType.CONTACT_TAG_REMOVED):
            contact_tags = {t["id"] for t in p["contact"]["tags"]}
            key = (e.account_id, p["contact"]["id"])
            before = tags.get(key)
            if e.type is EventType.CONTACT_TAG_ADDED:
                assert p["tag"]["id"] in contact_tags
                if before is not None:
                    assert p["tag"]["id"] not in before and contact_tags == before | {p["tag"]["id"]}
            else:
                assert p["tag"]["id"] not in contact_tags
                if before is not None:
                    assert contact_tags == before - {p["tag"]["id"]}
            tags[key] = contact_tags
        if "contact" in p:
            key = (e.account_id, p["contact"]["id"])
            tags[key] = {t["id"] for t in p["contact"]["tags"]}
        seen[e.type.value] += 1
    return dict(seen)


def test_every_kind_has_a_default_weight() -> None:
    # A kind without a weight would silently never be generated.
    assert set(DEFAULT_WEIGHTS) == set(EventType)
    assert all(w > 0 for w in DEFAULT_WEIGHTS.values())


def test_same_seed_and_start_give_the_same_stream() -> None:
    a = SampleGenerator(seed=7, accounts=5, start=T0).take(300)
    b = SampleGenerator(seed=7, accounts=5, start=T0).take(300)
    c = SampleGenerator(seed=8, accounts=5, start=T0).take(300)
    assert a == b
    assert a != c
    assert len({e.event_id for e in a}) == 300


def test_live_streams_share_content_but_not_ids() -> None:
    a = SampleGenerator(seed=7, accounts=3).take(50)
    b = SampleGenerator(seed=7, accounts=3).take(50)
    assert [(e.account_id, e.type) for e in a] == [(e.account_id, e.type) for e in b]
    assert {e.event_id for e in a}.isdisjoint(e.event_id for e in b)


def test_all_kinds_over_random_accounts_form_a_consistent_history() -> None:
    events = SampleGenerator(seed=1, accounts=6, start=T0).take(3000)
    seen = check_history(events)
    assert {t.value for t in EventType} <= set(seen)
    assert seen["cancels_of_streamed_sales"] == seen["SALE_CANCELED"]
    assert len({e.account_id for e in events}) == 6
    assert all(e.account_id.startswith("acct-") for e in events)
    assert to_millis(SampleGenerator(seed=1, accounts=6, start=T0).take(1)[0].occurred_at) > T0
    for e in events[:500]:
        assert decode(encode("Event", e.to_avro()), "Event") == e.to_avro()


def test_named_accounts_and_chosen_kinds() -> None:
    events = SampleGenerator(seed=2, accounts=["shop-a", "shop-b"], kinds=["SALE_NEW", "SALE_CANCELED"]).take(
        400
    )
    assert {e.account_id for e in events} == {"shop-a", "shop-b"}
    assert {e.type for e in events} == {EventType.SALE_NEW, EventType.SALE_CANCELED}
    assert check_history(events)["cancels_of_streamed_sales"] > 0


@pytest.mark.parametrize("kind", list(EventType))
def test_a_single_kind_works_without_its_prerequisites(kind: EventType) -> None:
    events = SampleGenerator(seed=3, accounts=2, kinds=[kind]).take(100)
    assert {e.type for e in events} == {kind}
    check_history(events)


def test_sales_carry_realistic_plans() -> None:
    events = SampleGenerator(seed=4, accounts=20, kinds=[EventType.SALE_NEW]).take(400)
    plans = [e.to_avro()["payload"]["pricePlan"] for e in events]
    assert {p["type"] for p in plans} == {"one_shot", "subscription"}
    assert {p["currency"] for p in plans} == {"EUR", "USD"}
    orders = [e.to_avro()["payload"]["order"] for e in events]
    assert all(o["totalPrice"] > 0 for o in orders)
    assert len({o["id"] for o in orders}) == len(orders)


def test_contacts_have_fields_and_tags() -> None:
    events = SampleGenerator(seed=5, accounts=3, kinds=[EventType.CONTACT_CREATED]).take(200)
    contacts = [e.to_avro()["payload"]["contact"] for e in events]
    slugs = {f["slug"] for c in contacts for f in c["fields"]}
    assert {"first_name", "surname", "phone_number", "city"} <= slugs
    assert any(c["tags"] for c in contacts) and any(not c["tags"] for c in contacts)
    assert len({c["id"] for c in contacts}) == 200


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        SampleGenerator(accounts=0)
    with pytest.raises(ValueError):
        SampleGenerator(accounts=[])
    with pytest.raises(ValueError):
        SampleGenerator(kinds=[])
    with pytest.raises(ValueError):
        SampleGenerator(kinds=["NOT_A_KIND"])
