"""The delivery worker end to end: real broker, the router, real receivers, crashes and shutdowns.

Receiver behaviours one by one (retries, 429/503, 410, DLQ, redirects, deadlines, big bodies,
a hanging receiver among healthy ones, bad input) are in ``test_deliver_scenarios.py``.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from hookline.local.ports import free_port
from hookline.settings import Settings
from hookline.signing import message_id
from hookline.webhooks import EVENT_TYPES
from tests.processors.deliver.deliver_harness import Harness, metric, verify
from tests.processors.deliver.receivers import Receiver, Reply
from tests.support import EventWriter, Role, TopicReader, event_record, role_env, wait_until

pytestmark = pytest.mark.kafka


@pytest.fixture
def harness(settings: Settings, tmp_path: Path) -> Iterator[Harness]:
    h = Harness(settings, tmp_path)
    yield h
    h.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def _router(harness: Harness) -> Role:
    port = free_port()
    role = Role(["router"], role_env(harness.settings, HOOKLINE_ROUTER_METRICS_PORT=str(port)),
                harness.tmp_path / "router.log")
    harness.roles.append(role.start())
    role.wait_ready(port, timeout=90)
    return role


def test_end_to_end_1000_events_20_webhooks_5_accounts(harness: Harness, receiver: Receiver) -> None:
    """Events -> router -> tasks -> worker -> receivers: exactly the expected deliveries, all verified."""
    accounts = [f"acct-{a}" for a in range(5)]
    subscriptions: dict[str, tuple[str, ...]] = {}
    for i in range(20):
        wid = f"wh-{i:02d}"
        # Different subscriptions: from one event type up to all six.
        events = tuple(EVENT_TYPES[(i + k) % 6] for k in range(1 + i % 6))
        subscriptions[wid] = events
        harness.webhook(wid, receiver.url(f"/{wid}"), account=accounts[i % 5], events=events,
                        # Half the webhooks use a secret typed by hand (its UTF-8 bytes are the key).
                        secret=None if i % 2 else f"typed-secret-{i}")
    _router(harness)
    _role, port = harness.worker()
    writer = EventWriter(harness.settings)
    expected: set[tuple[str, str]] = set()
    for n in range(1000):
        account, event_type, event_id = accounts[n % 5], EVENT_TYPES[n % 6], f"ev-{n:04d}"
        writer.put(event_record(account, event_type, event_id))
        for wid, events in subscriptions.items():
            if harness.hooks[wid].account_id == account and event_type in events:
                expected.add((message_id(event_id, wid), wid))
    writer.flush()
    assert len(expected) > 1000

    def received() -> set[tuple[str, str]]:
        return {(g.headers["webhook-id"], g.path[1:]) for g in receiver.got()}

    wait_until(lambda: received() >= expected, 90, f"{len(expected)} deliveries")
    results = TopicReader(harness.settings, "webhook-results")
    results.wait_for(len(expected), 30)
    results.poll(0.5)
    got = receiver.got()
    assert received() == expected
    assert len(got) == len(expected), "no duplicates in a clean run"
    for g in got:
        verify(g, harness.secrets[g.path[1:]])
        assert g.headers["x-webhook-event"] in subscriptions[g.path[1:]]
        assert g.headers["content-type"] == "application/json"
        assert g.headers["user-agent"].startswith("hookline/")
    # One result record per attempt, each naming the attempt the receiver saw.
    records = results.decoded("DeliveryResult")
    assert len(records) == len(got)
    assert {r["attemptId"] for r in records} == {g.headers["x-webhook-delivery-attempt-id"] for g in got}
    assert {r["outcome"] for r in records} == {"delivered"}
    # The worker's counters agree with what the receiver counted.
    text = harness.wait_metric(port, "hookline_deliveries_total", len(got), 10, outcome="delivered")
    assert metric(text, "hookline_deliveries_total", outcome="delivered") == len(got)
    assert metric(text, "hookline_deliveries_total", status_class="2xx") == len(got)
    assert metric(text, "hookline_delivery_attempt_seconds_count") == len(got)
    assert metric(text, "hookline_event_to_delivery_seconds_count") == len(got)
    assert metric(text, "hookline_deliveries_in_flight") == 0
    wait_until(lambda: metric(harness.metrics(port), "hookline_consumer_lag_records", role="deliver") == 0,
               10, "consumer lag 0")


def test_sigkill_twice_during_2000_deliveries_loses_nothing(harness: Harness, receiver: Receiver) -> None:
    hooks = [f"k-{i}" for i in range(10)]
    for wid in hooks:
        harness.webhook(wid, receiver.url(f"/{wid}"))
        receiver.set(f"/{wid}", lambda n, g: Reply(200, delay=0.005))
    tasks = [harness.task(hooks[i % 10]) for i in range(2000)]
    # Static membership: a restarted worker takes its partitions back without waiting out the session.
    env = {"HOOKLINE_DELIVER_INSTANCE_ID": "deliver-0"}
    role, _ = harness.worker(**env)
    harness.send(tasks)
    for kill_at in (400, 1100):

        def reached(k: int = kill_at) -> bool:
            return len(receiver.got()) >= k

        wait_until(reached, 60, f"{kill_at} deliveries")
        role.kill(signal.SIGKILL)
        assert role.proc is not None
        role.proc.wait(10)
        role, _ = harness.worker(**env)
    expected = {t["messageId"]: t for t in tasks}
    wait_until(lambda: {g.headers["webhook-id"] for g in receiver.got()} >= set(expected), 90,
               "every message delivered")
    got = receiver.got()
    counts = Counter(g.headers["webhook-id"] for g in got)
    assert set(counts) == set(expected)
    for g in got:
        task = expected[g.headers["webhook-id"]]
        assert g.path == f"/{task['webhookId']}" and g.body == task["payload"]
        verify(g, harness.secrets[task["webhookId"]])
    print(f"{len(got)} requests for {len(expected)} messages ({len(got) - len(expected)} duplicates)")


def test_a_second_worker_joining_and_the_first_leaving_loses_nothing(
    harness: Harness, receiver: Receiver
) -> None:
    """Two rebalances mid-run (a worker joins, then the first one stops): every message arrives."""
    hooks = [f"r-{i}" for i in range(12)]
    for wid in hooks:
        harness.webhook(wid, receiver.url(f"/{wid}"))
        receiver.set(f"/{wid}", lambda n, g: Reply(200, delay=0.02))
    tasks = [harness.task(hooks[i % len(hooks)]) for i in range(1200)]
    first, _ = harness.worker()
    harness.send(tasks[:600])
    wait_until(lambda: len(receiver.got()) >= 200, 30, "200 deliveries")
    _second, port = harness.worker()  # joins the group: partitions move while tasks are in flight
    harness.send(tasks[600:])
    wait_until(lambda: len(receiver.got()) >= 700, 30, "700 deliveries")
    assert first.stop() == 0  # leaves the group: its partitions move again
    expected = {t["messageId"] for t in tasks}
    wait_until(lambda: {g.headers["webhook-id"] for g in receiver.got()} >= expected, 60, "every message")
    for g in receiver.got():
        verify(g, harness.secrets[g.path[1:]])
    assert "revoked" in first.log_tail(200)
    assert metric(harness.metrics(port), "hookline_deliveries_total", outcome="delivered") > 0


def test_sigterm_drains_in_flight_requests_commits_and_exits_0(harness: Harness, receiver: Receiver) -> None:
    harness.webhook("slow", receiver.url("/slow"))
    receiver.set("/slow", lambda n, g: Reply(200, delay=1.5))
    tasks = [harness.task("slow") for _ in range(40)]
    role, _ = harness.worker()
    harness.send(tasks)
    # The webhook's share (16) is in flight, the rest waits for it.
    wait_until(lambda: len(receiver.got("/slow")) >= 16, 20, "16 requests in flight")
    in_flight = {g.headers["webhook-id"] for g in receiver.got("/slow")}
    started = time.monotonic()
    assert role.stop(timeout=30) == 0
    assert time.monotonic() - started < harness.settings.deliver_drain_timeout
    log = role.log_tail(20)
    assert "draining" in log and "consumer closed" in log
    # Every request in flight at SIGTERM finished and has its result.
    results = TopicReader(harness.settings, "webhook-results")
    results.wait_for(len(in_flight), 10)
    results.poll(0.5)
    done = {r["messageId"] for r in results.decoded("DeliveryResult") if r["outcome"] == "delivered"}
    assert in_flight <= done
    # A new worker delivers the rest, and nothing the first one finished again: its offsets were committed.
    receiver.set("/slow", lambda n, g: Reply(200))
    harness.worker()
    every = {t["messageId"] for t in tasks}
    wait_until(lambda: {g.headers["webhook-id"] for g in receiver.got("/slow")} >= every, 30, "all 40")
    counts = Counter(g.headers["webhook-id"] for g in receiver.got("/slow"))
    assert all(counts[m] == 1 for m in done), "a drained delivery was repeated"


def test_without_the_allow_list_loopback_is_never_contacted(harness: Harness, receiver: Receiver) -> None:
    urls = {
        "by-name": receiver.url("/x", host="localhost"),
        "literal": receiver.url("/x"),
        "decimal": receiver.url("/x", host="2130706433"),
        "mapped": receiver.url("/x", host="[::ffff:127.0.0.1]"),
    }
    for wid, url in urls.items():
        harness.webhook(wid, url)
    _role, port = harness.worker(allow=None)
    harness.send([harness.task(wid) for wid in urls])
    results = TopicReader(harness.settings, "webhook-results")
    attempts = len(harness.settings.retry_schedule) + 1
    results.wait_for(attempts * len(urls), 30)
    for r in results.decoded("DeliveryResult"):
        assert r["errorClass"] == "blocked_address" and r["responseStatus"] is None
        assert r["outcome"] in ("failed", "dead_lettered")
        assert "not a public address" in r["errorMessage"] or "resolves to" in r["errorMessage"]
    assert receiver.connections == 0 and receiver.got() == []
    text = harness.metrics(port)
    assert metric(text, "hookline_blocked_addresses_total") == attempts * len(urls)
