"""The router against the real broker: the join, fan-out, config changes, poison records, restarts."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hookline.local.ports import free_port
from hookline.settings import Settings
from hookline.signing import message_id
from schemas.codec import decode, encode
from tests.support import (
    ConfigWriter,
    EventWriter,
    Role,
    TopicReader,
    event_record,
    make_webhook,
    role_env,
    wait_until,
)

pytestmark = pytest.mark.kafka

StartRouter = Callable[[], tuple[Role, int]]


@pytest.fixture
def start_router(settings: Settings, tmp_path: Path) -> Iterator[StartRouter]:
    roles: list[Role] = []

    def start() -> tuple[Role, int]:
        port = free_port()
        role = Role(
            ["router"],
            role_env(settings, HOOKLINE_ROUTER_METRICS_PORT=str(port)),
            tmp_path / f"router-{len(roles)}.log",
        )
        roles.append(role.start())
        role.wait_ready(port, timeout=90)
        return role, port

    yield start
    for r in roles:
        r.stop()


def tasks(reader: TopicReader) -> list[dict]:
    return reader.decoded("DeliveryTask")


def test_routes_only_to_active_subscribed_webhooks_of_the_account(
    settings: Settings, start_router: StartRouter
):
    cfg = ConfigWriter(settings)
    cfg.put(make_webhook("A", "hook-ok", events=("CONTACT_CREATED",)))
    cfg.put(make_webhook("A", "hook-inactive", events=("CONTACT_CREATED",), active=False))
    cfg.put(
        make_webhook("A", "hook-disabled-sub", events=("CONTACT_CREATED",), disabled=("CONTACT_CREATED",))
    )
    cfg.put(make_webhook("A", "hook-sales", events=("SALE_NEW",)))
    cfg.put(make_webhook("B", "hook-other-account"))
    cfg.flush()
    start_router()
    reader = TopicReader(settings, "webhook-deliveries")
    ev = EventWriter(settings)
    e1 = event_record("A", "CONTACT_CREATED", "evt-1")
    ev.put(e1)
    ev.flush()
    reader.wait_for(1, timeout=60)
    reader.poll(1.0)  # anything wrongly routed would arrive by now
    got = tasks(reader)
    assert [t["webhookId"] for t in got] == ["hook-ok"]
    t = got[0]
    assert t["messageId"] == message_id("evt-1", "hook-ok")
    assert t["eventType"] == "CONTACT_CREATED" and t["accountId"] == "A" and t["configVersion"] == 1
    assert t["eventOccurredAt"] == e1["occurredAt"]
    import orjson

    body = orjson.loads(t["payload"])
    assert body["contact"]["email"] == "ada@example.com"
    assert body["contact"]["registeredAt"].endswith("Z")

    # An event nobody subscribes to produces nothing.
    ev.put(event_record("A", "CONTACT_TAG_REMOVED", "evt-2"))
    ev.put(event_record("C", "SALE_NEW", "evt-3"))
    # A's records keep their order: once this one is routed, evt-2 was processed with config v1.
    ev.put(event_record("A", "CONTACT_CREATED", "evt-2-follow"))
    ev.flush()
    wait_until(
        lambda: reader.poll(0.2) is not None and any(t["eventId"] == "evt-2-follow" for t in tasks(reader)),
        60,
        "follow-up routed",
    )
    # Then a config change takes effect for the next event, and a delete stops routing.
    cfg.put(make_webhook("A", "hook-ok", events=("CONTACT_TAG_REMOVED",), version=2))
    cfg.flush()
    # The router sees the change when its view has applied it; probe with a marker event after.
    wait_until(lambda: _route_once(ev, reader, "A", "CONTACT_TAG_REMOVED", "hook-ok"), 60, "PATCH applied")
    cfg.delete("hook-ok")
    cfg.flush()
    wait_until(lambda: _no_route(ev, reader, "A", "CONTACT_TAG_REMOVED"), 60, "DELETE applied")
    ids = {t["eventId"] for t in tasks(reader)}
    assert "evt-2" not in ids and "evt-3" not in ids


def _route_once(ev: EventWriter, reader: TopicReader, account: str, etype: str, hook: str) -> bool:
    eid = f"probe-{uuid.uuid4().hex[:8]}"
    ev.put(event_record(account, etype, eid))
    ev.flush()
    reader.poll(0.5)
    return any(t["eventId"] == eid and t["webhookId"] == hook for t in tasks(reader))


def _no_route(ev: EventWriter, reader: TopicReader, account: str, etype: str) -> bool:
    eid = f"probe-{uuid.uuid4().hex[:8]}"
    ev.put(event_record(account, etype, eid))
    # A marker for another account that is routed proves the probe has been processed.
    marker = f"marker-{uuid.uuid4().hex[:8]}"
    ev.put(event_record("B", etype, marker))
    ev.flush()
    wait_until(
        lambda: reader.poll(0.2) is not None and any(t["eventId"] == marker for t in tasks(reader)),
        60,
        "marker routed",
    )
    return not any(t["eventId"] == eid for t in tasks(reader))


def test_fan_out_to_fifty_webhooks(settings: Settings, start_router: StartRouter):
    cfg = ConfigWriter(settings)
    for i in range(50):
        cfg.put(make_webhook("A", f"fan-{i:02d}", events=("SALE_NEW",)))
    cfg.flush()
    start_router()
    reader = TopicReader(settings, "webhook-deliveries")
    ev = EventWriter(settings)
    ev.put(event_record("A", "SALE_NEW", "sale-1"))
    ev.flush()
    reader.wait_for(50, timeout=60)
    reader.poll(1.0)
    got = tasks(reader)
    assert len(got) == 50
    assert {t["webhookId"] for t in got} == {f"fan-{i:02d}" for i in range(50)}
    assert len({t["messageId"] for t in got}) == 50
    assert len({t["payload"] for t in got}) == 1  # built once, same bytes for all


def test_poison_records_go_to_dlq_once_and_router_keeps_running(
    settings: Settings, start_router: StartRouter
):
    cfg = ConfigWriter(settings)
    cfg.put(make_webhook("A", "hook-1"))
    cfg.flush()
    _role, port = start_router()
    reader = TopicReader(settings, "webhook-deliveries")
    dlq = TopicReader(settings, "webhook-dlq")
    ev = EventWriter(settings)
    valid = encode("Event", event_record("A", "SALE_NEW", "good-0"))
    unknown_fp = b"\xc3\x01" + b"\x11" * 8 + valid[10:]
    ev.put(event_record("A", "SALE_NEW", "good-1"))
    ev.raw("sale-events", b"A", b"\x00garbage-bytes\xff")
    ev.put(event_record("A", "SALE_NEW", "good-2"))
    ev.raw("sale-events", b"A", unknown_fp)
    ev.raw("sale-events", b"A", None)  # tombstone on an event topic
    ev.raw("sale-events", b"A", valid + b"trailing")
    ev.put(event_record("A", "SALE_NEW", "good-3"))
    ev.flush()
    reader.wait_for(3, timeout=60)
    dlq.wait_for(4, timeout=60)
    reader.poll(1.0)
    dlq.poll(0.5)
    assert sorted(t["eventId"] for t in tasks(reader)) == ["good-1", "good-2", "good-3"]
    letters = dlq.decoded("DeadLetter")
    assert len(letters) == 4
    assert sorted(d["reason"] for d in letters) == sorted(
        ["bad_magic", "unknown_fingerprint", "tombstone", "trailing_bytes"]
    )
    assert all(d["stage"] == "router" and d["sourceTopic"] == settings.topic("sale-events") for d in letters)
    assert {d["value"] for d in letters if d["value"]} >= {b"\x00garbage-bytes\xff", unknown_fp}
    status, metrics = Role([], {}, Path("/dev/null")).get(port, "/metrics")
    assert status == 200
    assert b'hookline_router_dead_lettered_total{reason="tombstone"} 1.0' in metrics
    assert b"hookline_config_webhooks 1.0" in metrics
    wait_until(
        lambda: (
            b'hookline_consumer_lag_records{role="router"} 0.0'
            in Role([], {}, Path("/dev/null")).get(port, "/metrics")[1]
        ),
        15,
        "the router to report zero consumer lag",
    )
    # Still running: the next event is routed.
    ev.put(event_record("A", "SALE_NEW", "good-4"))
    ev.flush()
    wait_until(lambda: reader.poll(0.2) is not None and len(reader.records) >= 4, 60, "routing after poison")


def test_restart_with_a_thousand_configs_routes_first_event_with_full_set(
    settings: Settings, start_router: StartRouter
):
    cfg = ConfigWriter(settings)
    for i in range(1000):
        cfg.put(make_webhook(f"acct-{i % 10}", f"h-{i:04d}", events=("CONTACT_OPT_IN",)))
    cfg.flush()
    role, _ = start_router()
    role.stop()
    # More configs arrive while it is down, including deletes.
    for i in range(0, 1000, 100):
        cfg.delete(f"h-{i:04d}")
    cfg.flush()
    start_router()
    reader = TopicReader(settings, "webhook-deliveries")
    ev = EventWriter(settings)
    ev.put(event_record("acct-3", "CONTACT_OPT_IN", "first-after-restart"))
    ev.flush()
    expected = {f"h-{i:04d}" for i in range(1000) if i % 10 == 3 and i % 100 != 0}
    reader.wait_for(len(expected), timeout=60)
    reader.poll(1.0)
    assert {t["webhookId"] for t in tasks(reader)} == expected
    assert len(tasks(reader)) == len(expected)


@pytest.mark.slow
def test_two_routers_5000_events_while_configs_change(settings: Settings, start_router: StartRouter):
    cfg = ConfigWriter(settings)
    stable = {acct: [f"{acct}-stable-{j}" for j in range(2)] for acct in ("A", "B", "C", "D")}
    for acct, hooks in stable.items():
        for h in hooks:
            cfg.put(make_webhook(acct, h, events=("CONTACT_CREATED", "SALE_NEW")))
    cfg.flush()
    start_router()
    start_router()
    ev = EventWriter(settings)
    reader = TopicReader(settings, "webhook-deliveries")
    events = []
    for i in range(5000):
        acct = "ABCD"[i % 4]
        etype = "CONTACT_CREATED" if i % 2 else "SALE_NEW"
        events.append((f"e-{i:05d}", acct))
        ev.put(event_record(acct, etype, f"e-{i:05d}"))
        if i % 50 == 0:  # churn: webhooks created, changed and deleted while events flow
            n = i // 50
            cfg.put(make_webhook("ABCD"[n % 4], f"churn-{n}", events=("SALE_NEW",)))
            if n >= 2:
                cfg.put(
                    make_webhook(
                        "ABCD"[(n - 2) % 4], f"churn-{n - 2}", events=("CONTACT_CREATED",), version=2
                    )
                )
            if n >= 4:
                cfg.delete(f"churn-{n - 4}")
    ev.flush()
    cfg.flush()
    expected = {(eid, h) for eid, acct in events for h in stable[acct]}

    def have_all() -> bool:
        reader.poll(0.3)
        seen = {(t["eventId"], t["webhookId"]) for t in tasks(reader)}
        return expected <= seen

    wait_until(have_all, 90, "every expected (event, webhook) task")
    reader.poll(1.0)
    got = tasks(reader)
    counts = Counter((t["eventId"], t["webhookId"]) for t in got)
    dupes = {k: c for k, c in counts.items() if c > 1}
    assert not dupes, f"{len(dupes)} duplicated tasks in a clean run"
    account_of = dict(events)
    for t in got:
        assert t["accountId"] == account_of[t["eventId"]]
        assert t["webhookId"] in stable[t["accountId"]] or t["webhookId"].startswith("churn-")
    assert all(
        decode(m.value(), "DeliveryTask")["messageId"]
        == message_id(decode(m.value(), "DeliveryTask")["eventId"], m.key().decode())
        for m in reader.records[:100]
    )
