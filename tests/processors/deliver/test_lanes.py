"""The pure parts of ordered delivery (issue 12, point 2): whose lane a task is in, and a lane's state."""

from __future__ import annotations

import orjson

from hookline.payloads import build_payload
from hookline.records import DeliveryTask
from processors.deliver.lanes import Lane, contact_of, lane_key


def task(payload: bytes) -> DeliveryTask:
    return DeliveryTask.decode(
        DeliveryTask(
            message_id="msg_1", event_id="evt", webhook_id="wh", account_id="acct",
            event_type="SALE_NEW", event_occurred_at=1, routed_at=1, config_version=1, payload=payload,
        ).encode()
    )  # fmt: skip


def test_a_contact_event_is_in_its_contacts_lane_and_a_sale_in_its_buyers() -> None:
    contact = {"id": 42, "email": "a@example.com", "registeredAt": 0, "fields": [], "tags": []}
    tagged = build_payload(
        {"type": "CONTACT_TAG_ADDED", "payload": {"contact": contact, "tag": {"id": 1, "name": "vip"}}}
    )
    assert contact_of(task(tagged)) == "42"
    sale = orjson.dumps({"customer": {"id": 7, "email": "b@example.com"}, "order": {"id": 1}})
    assert contact_of(task(sale)) == "7"
    assert lane_key("wh", "7") == b"wh/7"


def test_a_task_without_a_contact_id_is_not_ordered() -> None:
    for body in (b"not json", b"[1, 2]", b"{}", orjson.dumps({"contact": {"email": "x"}})):
        assert contact_of(task(body)) is None


def test_a_lane_appends_behind_its_head_and_moves_on_when_the_head_finishes() -> None:
    lane = Lane().behind("m1", 10).behind("m2", 14)
    assert (lane.head, lane.holds("m2"), lane.holds("m3"), lane.version) == ("m1", True, False, 2)
    lane = lane.finished("m1", 10)
    assert (lane.head, lane.done, lane.version) == ("m2", 10, 3)
    assert Lane.decode(lane.encode()) == lane
    assert lane.finished("m2", 14) == Lane(14, (), 4)
