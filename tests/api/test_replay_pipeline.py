"""Replay over the real pipeline (issue 13, point 1): a webhook created after the fact gets its
account's events again from the event topics.

The API in this process, ``hookline router`` (which runs replays) and ``hookline deliver`` as
processes, one real broker, a real receiver on 127.0.0.1. 1,000 events of 5 accounts are published
before any webhook exists; a replay of the last hour sends A's webhook exactly A's subscribed events,
once each, with the message ids the routing gives, signed as Standard Webhooks says; a second replay
of the window sends the same ids. A router SIGKILLed half-way through a replay resumes it after a
restart: every message arrives at least once and at most twice.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import OffsetSpec  # type: ignore[attr-defined]
from standardwebhooks import Webhook as StandardWebhook

from hookline.clients import admin_client
from hookline.local.ports import free_port
from hookline.signing import message_id
from hookline.timestamps import rfc3339
from hookline.topics import CONTACT_EVENTS, DELIVERIES, REPLAYS
from hookline.webhooks import EVENT_TYPES
from tests.api.conftest import KEY_A, KEY_B, RunningApi
from tests.api.test_page import sign_in
from tests.processors.deliver.receivers import Receiver
from tests.support import EventWriter, Role, TopicReader, event_record, role_env, scaled, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

ACCOUNTS = ("acct-a", "acct-b", "acct-c", "acct-d", "acct-e")
EVENTS = 1000
SUBSCRIBED = ("CONTACT_CREATED", "CONTACT_TAG_ADDED", "SALE_NEW", "SALE_CANCELED")
HOUR_MS = 3600 * 1000


@dataclass
class Stack:
    api: RunningApi
    router: Role
    router_port: int
    receiver: Receiver
    more_routers: list[tuple[Role, int]] = field(default_factory=list)

    def wait_routed(self, count: int) -> None:
        """Until the router has read ``count`` events that no webhook wanted: the webhooks made after
        that can only get them from a replay."""

        def unmatched() -> bool:
            total = 0.0
            for role, port in [(self.router, self.router_port), *self.more_routers]:
                status, text = role.get(port, "/metrics")
                lines = text.decode().splitlines() if status == 200 else []
                prefix = "hookline_router_events_unmatched_total{"
                total += sum(float(ln.split()[-1]) for ln in lines if ln.startswith(prefix))
            return total >= count

        wait_until(unmatched, 60, f"the router to read {count} events", interval=0.2)

    def router_metrics(self, *names: str) -> dict[str, float]:
        """The values of the first router's series ``names`` (a name with its labels, as exposed)."""
        status, text = self.router.get(self.router_port, "/metrics")
        values = dict(
            ln.rsplit(" ", 1) for ln in text.decode().splitlines() if status == 200 and ln[:1] != "#"
        )
        return {n: float(values[n]) for n in names if n in values}

    def restart_router(self) -> None:
        self.router.start()
        self.router.wait_ready(self.router_port, timeout=90)


def make_stack(make_api: Callable[..., RunningApi], tmp_path: Path, replay_rate: float) -> Iterator[Stack]:
    api = make_api()
    env = role_env(
        api.settings,
        HOOKLINE_ALLOW_NETWORKS="127.0.0.0/8",
        HOOKLINE_SECRET_KEY=api.settings.secret_key.get(),
        HOOKLINE_RETRY_JITTER="0",
    )
    router_port, deliver_port = free_port(), free_port()
    router = Role(
        ["router", "--replay-rate", str(replay_rate)],
        {**env, "HOOKLINE_ROUTER_METRICS_PORT": str(router_port)},
        tmp_path / "router.log",
    )
    deliver = Role(
        ["deliver"], {**env, "HOOKLINE_DELIVER_METRICS_PORT": str(deliver_port)}, tmp_path / "deliver.log"
    )
    receiver = Receiver()
    try:
        receiver.start()
        router.start()
        deliver.start()
        router.wait_ready(router_port, timeout=90)
        deliver.wait_ready(deliver_port, timeout=90)
        yield Stack(api, router, router_port, receiver)
    finally:
        router.stop()
        deliver.stop()
        receiver.stop()


@pytest.fixture
def stack(make_api: Callable[..., RunningApi], tmp_path: Path) -> Iterator[Stack]:
    yield from make_stack(make_api, tmp_path, replay_rate=50)


@pytest.fixture
def slow_stack(make_api: Callable[..., RunningApi], tmp_path: Path) -> Iterator[Stack]:
    yield from make_stack(make_api, tmp_path, replay_rate=10)


def publish(stack: Stack) -> list[dict[str, Any]]:
    """1,000 events, 200 per account, the six types in turn; before any webhook exists."""
    writer = EventWriter(stack.api.settings)
    run = uuid.uuid4().hex[:8]
    records = []
    for i in range(EVENTS):
        record = event_record(
            ACCOUNTS[i % len(ACCOUNTS)], EVENT_TYPES[i // len(ACCOUNTS) % 6], f"ev-{run}-{i}"
        )
        writer.put(record)
        records.append(record)
    writer.flush()
    stack.wait_routed(EVENTS)
    return records


def create(client: httpx.Client, url: str, subscriptions: tuple[str, ...]) -> tuple[str, str]:
    r = client.post("/api/webhooks", json={"name": "late", "url": url, "subscriptions": list(subscriptions)})
    assert r.status_code == 201, r.text
    return r.json()["id"], r.json()["secret"]


def wait_done(client: httpx.Client, hook: str, replay: str, timeout: float = 120) -> dict[str, Any]:
    def done() -> dict[str, Any]:
        r = client.get(f"/api/webhooks/{hook}/replays/{replay}")
        assert r.status_code == 200, r.text
        return dict(r.json()) if r.json()["done"] else {}

    return wait_until(done, timeout, f"replay {replay} done", interval=0.2)


def received_ids(receiver: Receiver, path: str, secret: str) -> list[str]:
    """The webhook-id of every request to ``path``, each signature checked with standardwebhooks."""
    verifier = StandardWebhook(secret)
    ids = []
    for got in receiver.got(path):
        verifier.verify(got.body, got.headers)  # raises on a bad signature
        assert got.headers["x-webhook-message-id"] == got.headers["webhook-id"]
        ids.append(got.headers["webhook-id"])
    return ids


def test_a_replay_sends_a_late_webhook_its_accounts_events_once_with_the_routings_ids(stack: Stack) -> None:
    api, receiver = stack.api, stack.receiver
    a, b = api.client(KEY_A), api.client(KEY_B)
    since = rfc3339(int(time.time() * 1000) - HOUR_MS)
    records = publish(stack)
    until = rfc3339(int(time.time() * 1000) + 1)  # after every publish: both replays read the same window
    hook, secret = create(a, receiver.url("/a"), SUBSCRIBED)
    other, _ = create(b, receiver.url("/b"), EVENT_TYPES)  # B's webhook: A's replay never reaches it
    expected = {
        message_id(r["eventId"], hook)
        for r in records
        if r["accountId"] == "acct-a" and r["type"] in SUBSCRIBED
    }
    assert len(expected) == 134  # 200 of A's events, 4 of the 6 types

    started = time.monotonic()
    r = a.post(f"/api/webhooks/{hook}/replay", json={"from": since, "to": until})
    assert r.status_code == 202, r.text
    first = r.json()
    assert r.headers["location"] == f"/api/webhooks/{hook}/replays/{first['id']}"
    assert (first["status"], first["done"], first["events"]) == ("running", False, list(SUBSCRIBED))
    assert first["eventsTotal"] == EVENTS and first["earliestAvailable"] is None

    # While it runs: a second one is refused, and so is every malformed request, each with its code.
    def refused(client: httpx.Client, path: str, body: Any, status: int, code: str) -> None:
        got = client.post(path, json=body)
        assert (got.status_code, got.json()["error"]["code"]) == (status, code), got.text

    replay = f"/api/webhooks/{hook}/replay"
    refused(a, replay, {"from": since}, 409, "replay_running")
    refused(a, replay, {"from": until, "to": since}, 422, "invalid_window")
    refused(a, replay, {"from": "yesterday"}, 422, "invalid_from")
    refused(a, replay, {"from": since, "to": "2024-13-01T00:00:00Z"}, 422, "invalid_to")
    refused(a, replay, {"from": "2024-06-01T00:00:00"}, 422, "invalid_from")  # no offset
    refused(a, replay, {}, 422, "from_required")
    refused(a, replay, {"from": since, "events": ["CONTACT_DELETED"]}, 422, "invalid_event_type")
    refused(a, replay, {"from": since, "events": ["CONTACT_OPT_IN"]}, 422, "event_not_subscribed")
    refused(a, replay, {"from": since, "speed": 2}, 422, "unknown_field")
    refused(b, replay, {"from": since}, 404, "not_found")  # another account's webhook
    refused(a, f"/api/webhooks/{other}/replay", {"from": since}, 404, "not_found")
    assert b.get(f"/api/webhooks/{hook}/replays/{first['id']}").status_code == 404
    assert a.get(f"/api/webhooks/{hook}/replays/rpl_{'0' * 32}").json()["error"]["code"] == "replay_not_found"

    done = wait_done(a, hook, first["id"])
    assert (done["status"], done["eventsScanned"], done["tasksProduced"]) == ("done", EVENTS, len(expected))
    # The router's metrics count the same (each series is read once the job has ended).
    want = {
        "hookline_router_replay_events_scanned_total": float(EVENTS),
        "hookline_router_replay_tasks_total": float(len(expected)),
        'hookline_router_replays_ended_total{outcome="done"}': 1.0,
        "hookline_router_replays_running": 0.0,
    }
    wait_until(lambda: stack.router_metrics(*want) == want, 30, f"router metrics {want}", interval=0.2)
    wait_until(lambda: len(receiver.got("/a")) >= len(expected), 120, f"{len(expected)} replayed deliveries")
    took = time.monotonic() - started
    time.sleep(1.0)  # nothing more may come (a period, not a deadline)
    ids = received_ids(receiver, "/a", secret)
    assert Counter(ids) == Counter(expected), "each of A's subscribed events exactly once"
    assert not receiver.got("/b")
    assert {g.headers["x-webhook-event"] for g in receiver.got("/a")} == set(SUBSCRIBED)
    tasks = TopicReader(api.settings, DELIVERIES)
    tasks.wait_for(len(expected), 60)
    assert {(t["trigger"], t["webhookId"]) for t in tasks.decoded("DeliveryTask")} == {("replay", hook)}
    print(f"replay: {EVENTS} events scanned, {len(expected)} delivered once each in {took:.1f}s")

    # The same window again: the same message ids, once more each.
    r = a.post(f"/api/webhooks/{hook}/replay", json={"from": since, "to": until})
    assert r.status_code == 202, r.text
    second = r.json()
    assert second["id"] != first["id"]
    wait_done(a, hook, second["id"])
    wait_until(lambda: len(receiver.got("/a")) >= 2 * len(expected), 120, "the second replay's deliveries")
    again = received_ids(receiver, "/a", secret)[len(ids) :]
    assert Counter(again) == Counter(expected)
    assert a.get(f"/api/webhooks/{hook}/replays/{first['id']}").status_code == 404  # only the latest is kept

    # Retention deleted the start of a partition: the answer names the earliest time still there.
    settings = api.settings
    topic = settings.topic(CONTACT_EVENTS)
    admin = admin_client(settings)
    ends = admin.list_offsets(
        {TopicPartition(topic, p): OffsetSpec.latest() for p in range(settings.topic_partitions)},  # type: ignore[no-untyped-call]
        request_timeout=scaled(30),
    )
    fullest = max(ends, key=lambda tp: ends[tp].result().offset)
    for f in admin.delete_records(
        [TopicPartition(topic, fullest.partition, 5)], request_timeout=scaled(30)
    ).values():
        f.result()
    r = a.post(f"/api/webhooks/{hook}/replay", json={"from": since, "to": until, "events": ["SALE_NEW"]})
    assert r.status_code == 202, r.text
    cut = r.json()
    assert cut["earliestAvailable"] is not None and cut["earliestAvailable"] > since, cut
    assert cut["notice"].startswith(f"events published before {cut['earliestAvailable']} are no longer kept")
    assert (cut["from"], cut["eventsTotal"]) == (since, EVENTS - 5)


def test_a_router_killed_half_way_through_a_replay_resumes_it_after_a_restart(slow_stack: Stack) -> None:
    stack = slow_stack
    api, receiver = stack.api, stack.receiver
    a = api.client(KEY_A)
    since = rfc3339(int(time.time() * 1000) - HOUR_MS)
    records = publish(stack)
    hook, secret = create(a, receiver.url("/a"), SUBSCRIBED)
    expected = {
        message_id(r["eventId"], hook)
        for r in records
        if r["accountId"] == "acct-a" and r["type"] in SUBSCRIBED
    }
    r = a.post(f"/api/webhooks/{hook}/replay", json={"from": since})
    assert r.status_code == 202, r.text
    replay = r.json()["id"]

    def progress() -> dict[str, Any]:
        got = a.get(f"/api/webhooks/{hook}/replays/{replay}")
        assert got.status_code == 200, got.text
        return dict(got.json())

    # 10 tasks a second: about 13 s for A's 134. SIGKILL once half of them are stored as produced.
    wait_until(lambda: progress()["tasksProduced"] >= len(expected) // 2, 60, "half of the replay")
    time.sleep(0.5)  # into the next batch: its tasks are produced, its position is not stored yet
    stack.router.kill()
    assert stack.router.proc is not None
    stack.router.proc.wait(scaled(30))
    at_kill = progress()
    assert not at_kill["done"], at_kill
    sent_at_kill = len(receiver.got("/a"))
    stack.restart_router()
    done = wait_done(a, hook, replay, timeout=180)
    assert done["status"] == "done"
    wait_until(lambda: set(received_ids(receiver, "/a", secret)) >= expected, 120, "every message once")
    time.sleep(1.0)  # late duplicates (a period, not a deadline)
    counts = Counter(received_ids(receiver, "/a", secret))
    assert set(counts) == expected, "only A's subscribed events"
    duplicates = sorted(m for m, n in counts.items() if n > 1)
    print(
        f"replay kill: {at_kill['tasksProduced']} tasks stored as produced at the SIGKILL "
        f"({sent_at_kill} received by then); "
        f"after the restart {done['tasksProduced']} counted, {sum(counts.values())} received for "
        f"{len(expected)} messages; {len(duplicates)} received twice: {duplicates}"
    )
    assert max(counts.values()) <= 2, counts.most_common(3)


def test_the_page_starts_a_replay_and_shows_its_progress(stack: Stack) -> None:
    api, receiver = stack.api, stack.receiver
    records = publish(stack)
    hook, secret = create(api.client(KEY_A), receiver.url("/page"), ("SALE_NEW", "SALE_CANCELED"))
    expected = {
        message_id(r["eventId"], hook)
        for r in records
        if r["accountId"] == "acct-a" and r["type"] == "SALE_CANCELED"
    }
    c, csrf = sign_in(api)
    assert f'href="/settings/webhooks/{hook}/replay"' in c.get("/settings/webhooks").text
    page = c.get(f"/settings/webhooks/{hook}/replay")
    assert page.status_code == 200 and "No replay yet." in page.text
    assert f'action="/settings/webhooks/{hook}/replay"' in page.text
    assert 'value="SALE_NEW" checked' in page.text and 'value="CONTACT_CREATED"' not in page.text
    wrong = c.post(
        f"/settings/webhooks/{hook}/replay", data={"hours": "5", "events": "SALE_NEW", "csrf": csrf}
    )
    assert wrong.status_code == 422 and "Unknown period" in wrong.text
    done = c.post(
        f"/settings/webhooks/{hook}/replay", data={"hours": "1", "events": ["SALE_CANCELED"], "csrf": csrf}
    )
    assert done.status_code == 303, done.text
    assert done.headers["location"] == f"/settings/webhooks/{hook}/replay?notice=replay_started"
    shown = c.get(done.headers["location"]).text
    assert "Replay started" in shown and "SALE_CANCELED" in shown
    wait_until(lambda: set(received_ids(receiver, "/page", secret)) >= expected, 120, "the page's replay")

    def finished() -> str:
        text = c.get(f"/settings/webhooks/{hook}/replay").text
        return "" if "data-live" in text else text

    final = wait_until(finished, 60, "the page to show the replay done")
    assert f"1000 of 1000 events read, {len(expected)} messages sent" in final
    assert Counter(received_ids(receiver, "/page", secret)) == Counter(expected)


def test_a_replay_ends_when_its_webhook_is_switched_off_or_deleted(slow_stack: Stack) -> None:
    stack = slow_stack
    api, receiver = stack.api, stack.receiver
    a = api.client(KEY_A)
    since = rfc3339(int(time.time() * 1000) - HOUR_MS)
    publish(stack)
    hook, _secret = create(a, receiver.url("/off"), SUBSCRIBED)
    first = a.post(f"/api/webhooks/{hook}/replay", json={"from": since}).json()
    wait_until(lambda: receiver.got("/off"), 60, "the replay to start sending")
    assert a.patch(f"/api/webhooks/{hook}", json={"active": False}).status_code == 200
    off = wait_done(a, hook, first["id"], timeout=60)
    assert (off["status"], off["reason"]) == ("canceled", "webhook inactive")
    assert 0 < off["tasksProduced"] < 134, off
    refused = a.post(f"/api/webhooks/{hook}/replay", json={"from": since})
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "webhook_inactive")

    assert a.patch(f"/api/webhooks/{hook}", json={"active": True}).status_code == 200
    second = a.post(f"/api/webhooks/{hook}/replay", json={"from": since})
    assert second.status_code == 202, second.text  # the canceled one no longer counts as running
    sent = len(receiver.got("/off"))
    wait_until(lambda: len(receiver.got("/off")) > sent, 60, "the second replay to start sending")
    assert a.delete(f"/api/webhooks/{hook}").status_code == 204
    # The router drops the replay of a deleted webhook from the compacted topic: its last record there
    # is a tombstone.
    replays = TopicReader(api.settings, REPLAYS)

    def tombstoned() -> bool:
        replays.poll()
        mine = [m for m in replays.records if m.key() == hook.encode()]
        return bool(mine) and mine[-1].value() is None

    wait_until(tombstoned, 60, "the replay's tombstone")
    stopped = len(receiver.got("/off"))
    time.sleep(1.0)  # nothing more is produced for it (a period, not a deadline)
    assert len(receiver.got("/off")) <= stopped + 1  # at most the one in flight


def test_two_routers_share_replays_and_the_survivor_finishes_a_killed_ones(
    slow_stack: Stack, tmp_path: Path
) -> None:
    """Each replay is run by one router (the group on webhook-replays): with two routers no message
    is sent twice; SIGKILL one and the other takes its replays over and finishes them."""
    stack = slow_stack
    api, receiver = stack.api, stack.receiver
    a = api.client(KEY_A)
    port = free_port()
    second = Role(
        ["router", "--replay-rate", "10"],
        {**stack.router.env, "HOOKLINE_ROUTER_METRICS_PORT": str(port)},
        tmp_path / "router2.log",
    )
    second.start()
    try:
        second.wait_ready(port, timeout=90)
        stack.more_routers.append((second, port))
        since = rfc3339(int(time.time() * 1000) - HOUR_MS)
        records = publish(stack)
        hooks = [create(a, receiver.url(f"/r{i}"), SUBSCRIBED) for i in range(4)]
        replays = {}
        for hook, _secret in hooks:
            r = a.post(f"/api/webhooks/{hook}/replay", json={"from": since})
            assert r.status_code == 202, r.text
            replays[hook] = r.json()["id"]

        def progress(hook: str) -> dict[str, Any]:
            return dict(a.get(f"/api/webhooks/{hook}/replays/{replays[hook]}").json())

        wait_until(
            lambda: sum(progress(h)["tasksProduced"] for h, _ in hooks) >= 200, 90, "the replays under way"
        )
        before = {
            f"/r{i}": Counter(g.headers["webhook-id"] for g in receiver.got(f"/r{i}")) for i in range(4)
        }
        assert all(n == 1 for c in before.values() for n in c.values()), "two routers sent one message"
        stack.router.kill()
        for hook, _secret in hooks:
            assert wait_done(a, hook, replays[hook], timeout=180)["status"] == "done"
        for i, (hook, secret) in enumerate(hooks):
            expected = {
                message_id(r["eventId"], hook)
                for r in records
                if r["accountId"] == "acct-a" and r["type"] in SUBSCRIBED
            }
            wait_until(
                lambda: set(received_ids(receiver, f"/r{i}", secret)) >= expected,  # noqa: B023
                120,
                f"every message of replay {i}",
            )
        time.sleep(1.0)  # late duplicates (a period, not a deadline)
        counts = {
            f"/r{i}": Counter(received_ids(receiver, f"/r{i}", hook[1])) for i, hook in enumerate(hooks)
        }
        twice = {path: sorted(m for m, n in c.items() if n > 1) for path, c in counts.items()}
        print(f"two routers, one SIGKILLed: received twice per webhook {twice}")
        assert all(max(c.values()) <= 2 for c in counts.values()), counts
        assert all(len(c) == 134 for c in counts.values())
    finally:
        second.stop()
