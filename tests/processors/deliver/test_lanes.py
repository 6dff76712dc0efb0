"""Ordered delivery without a broker (issue 12, point 2): whose lane a task is in, a lane's state, and
what a parked message leaves in the log."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

from hookline.health import HealthPolicy, Observation, Streak, observe
from hookline.metrics import DeliveryMetrics
from hookline.payloads import build_payload
from hookline.records import DeliveryTask, Exchange
from hookline.sealing import Sealer, generate_key
from hookline.settings import Secret
from hookline.webhooks import Subscription, Webhook
from processors.deliver.handler import DeliveryTopics, Record, SignerCache, TaskHandler
from processors.deliver.lanes import Lane, Lanes, contact_of, lane_key
from processors.deliver.limits import ConcurrencyLimits
from schemas.codec import decode


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


# --- a parked message in the log (a handler with fakes, no broker) ---------------------------------


class _Sink:
    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None, bytes | None]] = []

    async def send(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        self.records.append((topic, key, value))

    def results(self) -> list[dict[str, Any]]:
        return [decode(v, "DeliveryResult") for t, _k, v in self.records if t == "results" and v]


class _Failing:
    """A receiver that answers 500 to everything."""

    def __init__(self) -> None:
        self.sent = 0

    async def send(self, url: str, body: bytes, headers: Any, *, attempt_id: str) -> Exchange:
        self.sent += 1
        return Exchange(attempt_id, int(time.time() * 1000), url, {}, 0.01, status=500)


class _Configs:
    def __init__(self, hook: Webhook) -> None:
        self.hook = hook

    def get(self, webhook_id: str) -> Webhook | None:
        return self.hook

    async def catch_up_async(self, written_before_ms: float, timeout: float = 5.0) -> bool:
        return True


class _View:
    """A lane view that shows nothing but what the worker wrote itself (held in :class:`Lanes`)."""

    def lane(self, key: bytes) -> Lane | None:
        return None

    async def catch_up_async(self, written_before_ms: float, timeout: float = 5.0) -> bool:
        return True


def test_a_parked_message_leaves_one_deferred_result_that_health_ignores() -> None:
    """Issue 12: a message parked behind its lane's failing head shows in the log as ``deferred``
    (``ordering_held``, naming the message it waits for) once, not at every return to its tier;
    the health processor counts neither it as a failed message nor as a failed attempt."""
    sealer = Sealer.from_secret(Secret(generate_key()))
    hook = Webhook(
        id="wh", account_id="a", name="n", url="http://127.0.0.1:1/x",
        secret=sealer.seal("wh", "s3cret-value"), subscriptions=(Subscription("CONTACT_TAG_ADDED"),),
        active=True, created_at=0, updated_at=0, version=1, ordering="contact",
    )  # fmt: skip
    sink, sender = _Sink(), _Failing()
    metrics = DeliveryMetrics(CollectorRegistry())
    topics = DeliveryTopics(results="results", dlq="dlq", config="config", retry={0.5: "r0.5"})
    lanes = Lanes(_View(), sink, lanes_topic="lanes", deliveries_topic="tasks", metrics=metrics)  # type: ignore[arg-type]
    handler = TaskHandler(
        configs=_Configs(hook), signers=SignerCache(sealer), sender=sender, sink=sink,
        limits=ConcurrencyLimits(4, 2), metrics=metrics, topics=topics, schedule=(0.5,) * 3,
        jitter=0.0, backlog=8, lanes=lanes,
    )  # fmt: skip
    body = orjson.dumps({"contact": {"id": 42, "email": "a@example.com"}})
    first = DeliveryTask(
        message_id="msg_1", event_id="e1", webhook_id="wh", account_id="a", event_type="CONTACT_TAG_ADDED",
        event_occurred_at=1, routed_at=1, config_version=1, payload=body,
    )  # fmt: skip
    second = dataclasses.replace(first, message_id="msg_2", event_id="e2")
    now = int(time.time() * 1000)

    async def scenario() -> None:
        await handler.process(Record("tasks", 0, 10, b"wh", first.encode(), now, now))  # fails: blocks
        await handler.process(Record("tasks", 0, 11, b"wh", second.encode(), now, now))  # parked
        parked = [v for t, _k, v in sink.records if t == "r0.5" and v and b"msg_2" in v]
        await handler.process(Record("r0.5", 0, 5, b"wh", parked[0], now, now))  # back again: still held

    asyncio.run(scenario())
    assert sender.sent == 1  # only the head was sent
    failed, held = sink.results()
    assert (failed["messageId"], failed["outcome"], failed["errorClass"]) == ("msg_1", "failed", "http_5xx")
    assert (held["messageId"], held["outcome"], held["errorClass"]) == ("msg_2", "deferred", "ordering_held")
    assert held["attempt"] == 1 and held["final"] is False and held["nextRetryAt"] is not None
    assert "msg_1" in held["errorMessage"] and held["responseStatus"] is None
    tiers = [decode(v, "DeliveryTask") for t, _k, v in sink.records if t == "r0.5" and v]
    assert [(t["messageId"], t["attempt"]) for t in tiers] == [("msg_1", 2), ("msg_2", 1), ("msg_2", 1)]
    # The health processor: the held result is neither a failed message nor a failed attempt.
    observed = [
        Observation(i, r["outcome"], r["attempt"], r["trigger"], r["attemptedAt"], r["errorClass"])
        for i, r in enumerate(sink.results(), start=1)
    ]
    streak = Streak()
    for obs in observed:
        streak = observe(streak, obs, HealthPolicy(100, 5 * 86_400_000)).streak or streak
    assert (streak.failed_messages, streak.failed_attempts) == (1, 1)
