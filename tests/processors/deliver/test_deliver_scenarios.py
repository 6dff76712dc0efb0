"""Receiver behaviours against one delivery worker process shared by this module.

One worker (real broker, compressed retry schedule 0.5/1/1.5 s, attempt deadline 2 s) serves
every test here; each test owns its webhooks and receiver paths, so the tests stay independent.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest

from hookline.clients import create_topics
from hookline.settings import load_settings
from hookline.topics import retry_topic
from hookline.webhooks import Subscription
from schemas.codec import decode, encode
from tests.conftest import TEST_RETRY_SCHEDULE
from tests.processors.deliver.deliver_harness import Harness, metric, verify
from tests.processors.deliver.receivers import Big, Got, Hang, Receiver, Reply
from tests.support import Role, TopicReader, wait_until

pytestmark = pytest.mark.kafka

ATTEMPT_TIMEOUT = 2.0
MAX_BUFFERED = 200
SCHEDULE = TEST_RETRY_SCHEDULE
JITTER = 0.2


class World:
    """The shared worker, its receiver, and readers of the topics it writes."""

    def __init__(self, harness: Harness, receiver: Receiver, role: Role, port: int) -> None:
        self.h = harness
        self.receiver = receiver
        self.role = role
        self.port = port
        s = harness.settings
        self.results = TopicReader(s, "webhook-results")
        self.dlq = TopicReader(s, "webhook-dlq")
        self.configs = TopicReader(s, "webhook-config")
        self.retries = {d: TopicReader(s, retry_topic(d)) for d in SCHEDULE}

    def results_for(self, webhook_id: str, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        def enough() -> list[dict[str, Any]] | None:
            self.results.poll(0.1)
            got = [r for r in self.results.decoded("DeliveryResult") if r["webhookId"] == webhook_id]
            return got if len(got) >= count else None

        found = wait_until(enough, timeout, f"{count} results for {webhook_id}")
        assert found is not None
        return sorted(found, key=lambda r: (r["attempt"], r["attemptedAt"]))

    def letters_for(self, webhook_id: str, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        def enough() -> list[dict[str, Any]] | None:
            self.dlq.poll(0.1)
            got = [d for d in self.dlq.decoded("DeadLetter") if d["key"] == webhook_id.encode()]
            return got if len(got) >= count else None

        found = wait_until(enough, timeout, f"{count} dead letters for {webhook_id}")
        assert found is not None
        return found

    def path(self, name: str) -> tuple[str, str]:
        """A fresh webhook id and its receiver path."""
        wid = f"{name}-{uuid.uuid4().hex[:6]}"
        return wid, f"/{wid}"


@pytest.fixture(scope="module")
def world(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("deliver-scenarios")
    settings = load_settings(
        {}, kafka_bootstrap=kafka_bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        retry_schedule=SCHEDULE, home=tmp / "home",
    )
    create_topics(settings)
    harness = Harness(settings, tmp)
    receiver = Receiver().start()
    role, port = harness.worker(
        HOOKLINE_ATTEMPT_TIMEOUT=str(ATTEMPT_TIMEOUT),
        HOOKLINE_CONNECT_TIMEOUT="1",
        # Small, so that a hanging receiver's backlog would fill it if it were not kept to its share.
        HOOKLINE_DELIVER_MAX_BUFFERED=str(MAX_BUFFERED),
    )
    w = World(harness, receiver, role, port)
    try:
        yield w
    finally:
        harness.close()
        receiver.stop()


def _attempts(world: World, path: str, count: int, timeout: float = 20.0) -> list[Got]:
    def enough() -> list[Got] | None:
        got = world.receiver.got(path)
        return got if len(got) >= count else None

    found = wait_until(enough, timeout, f"{count} requests to {path}")
    assert found is not None
    return found


# --- retries -------------------------------------------------------------------------------------


def test_500_three_times_then_200_is_delivered_on_attempt_four(world: World) -> None:
    wid, path = world.path("flaky")
    world.h.webhook(wid, world.receiver.url(path))
    world.receiver.set(path, lambda n, g: Reply(500) if n <= 3 else Reply(200))
    task = world.h.task(wid)
    world.h.send([task])
    results = world.results_for(wid, 4)
    got = world.receiver.got(path)
    assert len(got) == 4
    # Same message id on every attempt, fresh timestamp and attempt id, valid signatures.
    assert {g.headers["webhook-id"] for g in got} == {task["messageId"]}
    assert len({g.headers["x-webhook-delivery-attempt-id"] for g in got}) == 4
    for g in got:
        verify(g, world.h.secrets[wid])
        assert abs(int(g.headers["webhook-timestamp"]) - g.at) <= 1.5
        assert g.body == task["payload"]
    # Spacing follows the compressed schedule, within jitter (plus the worker's polling delay).
    for i, delay in enumerate(SCHEDULE):
        gap = got[i + 1].at - got[i].at
        assert delay * (1 - JITTER) - 0.05 <= gap <= delay * (1 + JITTER) + 1.0, (i, gap)
    assert [r["attempt"] for r in results] == [1, 2, 3, 4]
    assert [r["outcome"] for r in results] == ["failed", "failed", "failed", "delivered"]
    assert [r["final"] for r in results] == [False, False, False, True]
    assert all(r["errorClass"] == "http_5xx" and r["responseStatus"] == 500 for r in results[:3])
    assert results[3]["errorClass"] is None and results[3]["responseStatus"] == 200
    assert results[3]["nextRetryAt"] is None
    for r, nxt in zip(results[:3], got[1:], strict=True):
        assert r["nextRetryAt"] is not None and nxt.at * 1000 >= r["nextRetryAt"] - 5
    assert [r["attemptId"] for r in results] == [g.headers["x-webhook-delivery-attempt-id"] for g in got]
    assert {r["messageId"] for r in results} == {task["messageId"]}


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured(world: World, status: int) -> None:
    wid, path = world.path(f"busy{status}")
    world.h.webhook(wid, world.receiver.url(path))
    # 429 asks in seconds, 503 with an HTTP date: both well beyond the 0.5 s first retry.
    later = "3" if status == 429 else formatdate(time.time() + 3, usegmt=True)
    when = {"Retry-After": later}
    world.receiver.set(path, lambda n, g: Reply(status, when) if n == 1 else Reply(200))
    world.h.send([world.h.task(wid)])
    results = world.results_for(wid, 2)
    first, second = world.receiver.got(path)[:2]
    assert second.at - first.at >= 2.0 if status == 503 else second.at - first.at >= 3.0
    assert results[0]["responseStatus"] == status and results[0]["outcome"] == "failed"
    assert results[0]["nextRetryAt"] >= results[0]["attemptedAt"] + (2000 if status == 503 else 3000)
    assert results[0]["responseHeaders"]["Retry-After"] == when["Retry-After"]
    assert results[1]["outcome"] == "delivered"


def test_always_500_is_dead_lettered_after_the_whole_schedule(world: World) -> None:
    wid, path = world.path("broken")
    world.h.webhook(wid, world.receiver.url(path))
    world.receiver.set(path, lambda n, g: Reply(500, body=b"boom"))
    task = world.h.task(wid)
    world.h.send([task])
    [letter] = world.letters_for(wid, 1)
    results = world.results_for(wid, len(SCHEDULE) + 1)
    assert len(world.receiver.got(path)) == len(SCHEDULE) + 1
    assert letter["reason"] == "retries_exhausted" and letter["stage"] == "deliver"
    dead = decode(letter["value"], "DeliveryTask")
    assert dead["messageId"] == task["messageId"] and dead["attempt"] == len(SCHEDULE) + 1
    assert dead["payload"] == task["payload"]
    assert [r["outcome"] for r in results] == ["failed"] * len(SCHEDULE) + ["dead_lettered"]
    assert [r["final"] for r in results] == [False] * len(SCHEDULE) + [True]
    assert results[-1]["nextRetryAt"] is None and results[-1]["responseBodyExcerpt"] == b"boom"
    # No further attempt can follow: the retry tiers hold attempts 2..4 (a task due later than its
    # tier's delay passes on to a shorter tier, so one attempt may appear twice), and none beyond.
    retried = []
    for reader in world.retries.values():
        reader.poll(0.3)
        tasks = reader.decoded("DeliveryTask")
        retried += [t["attempt"] for t in tasks if t["messageId"] == task["messageId"]]
    assert set(retried) == set(range(2, len(SCHEDULE) + 2))
    text = world.h.metrics(world.port)
    assert metric(text, "hookline_delivery_dead_lettered_total", reason="retries_exhausted") >= 1


# --- disabling and skipping ---------------------------------------------------------------------


def test_410_disables_the_webhook_and_later_tasks_are_skipped(world: World) -> None:
    wid, path = world.path("gone")
    hook = world.h.webhook(wid, world.receiver.url(path))
    world.receiver.set(path, lambda n, g: Reply(410))
    world.h.send([world.h.task(wid)])
    [first] = world.results_for(wid, 1)
    assert first["outcome"] == "failed" and first["final"] is True and first["nextRetryAt"] is None
    assert first["responseStatus"] == 410 and first["errorClass"] == "http_4xx"

    def disabled() -> dict[str, Any] | None:
        world.configs.poll(0.1)
        for m in world.configs.records:
            if m.key() == wid.encode() and m.value() is not None:
                rec = decode(m.value(), "WebhookConfig")
                if rec["version"] == hook.version + 1:
                    return rec
        return None

    rec = wait_until(disabled, 10, "the disabled config")
    assert rec is not None
    assert rec["active"] is False and rec["disabledReason"] == "410 Gone"
    assert rec["url"] == hook.url and rec["secret"] == hook.secret.to_record()
    world.h.send([world.h.task(wid), world.h.task(wid)])
    later = world.results_for(wid, 3)[1:]
    assert [r["outcome"] for r in later] == ["skipped", "skipped"]
    assert all(r["final"] and "inactive" in (r["errorMessage"] or "") for r in later)
    assert len(world.receiver.got(path)) == 1
    assert metric(world.h.metrics(world.port), "hookline_webhooks_disabled_total") >= 1


def test_deleted_inactive_and_unsubscribed_webhooks_are_skipped_without_a_request(world: World) -> None:
    h = world.h
    ids = {name: world.path(name) for name in ("deleted", "inactive", "unsub", "subdis", "testsend")}
    h.webhook(ids["deleted"][0], world.receiver.url(ids["deleted"][1]))
    h.webhook(ids["inactive"][0], world.receiver.url(ids["inactive"][1]), active=False)
    h.webhook(ids["unsub"][0], world.receiver.url(ids["unsub"][1]), events=("SALE_NEW",))
    hook = h.webhook(ids["subdis"][0], world.receiver.url(ids["subdis"][1]), events=("CONTACT_CREATED",),
                     write=False)
    hook = dataclasses.replace(hook, subscriptions=(Subscription("CONTACT_CREATED", 1, "owner"),))
    h.hooks[hook.id] = hook
    h.configs.put(hook)
    h.webhook(ids["testsend"][0], world.receiver.url(ids["testsend"][1]), active=False)
    h.configs.delete(ids["deleted"][0])
    h.configs.flush()
    h.send([h.task(ids[n][0]) for n in ("deleted", "inactive", "unsub", "subdis")])
    # A test send is the owner's explicit request: it goes out even to an inactive webhook.
    h.send([h.task(ids["testsend"][0], trigger="test")])
    reasons = {}
    for name in ("deleted", "inactive", "unsub", "subdis"):
        [r] = world.results_for(ids[name][0], 1)
        assert r["outcome"] == "skipped" and r["final"] is True and r["responseStatus"] is None
        reasons[name] = r["errorMessage"]
        assert world.receiver.got(ids[name][1]) == []
    assert reasons == {
        "deleted": "webhook deleted",
        "inactive": "webhook inactive",
        "unsub": "not subscribed to CONTACT_CREATED",
        "subdis": "subscription to CONTACT_CREATED disabled",
    }
    [t] = world.results_for(ids["testsend"][0], 1)
    assert t["outcome"] == "delivered" and t["trigger"] == "test"


def test_a_task_routed_with_a_newer_config_waits_for_it(world: World) -> None:
    """Config and task written back to back: the worker must use the config the task was routed with."""
    h = world.h
    wid, path = world.path("fresh")
    # A brand-new webhook, its task right behind it: no "webhook deleted" skip.
    h.webhook(wid, world.receiver.url(path))
    h.send([h.task(wid)])
    world.results_for(wid, 1)
    # A new URL (version 2) and a task routed with it, back to back: the new URL gets it.
    moved = f"{path}-moved"
    h.webhook(wid, world.receiver.url(moved), version=2, secret=h.secrets[wid])
    h.send([h.task(wid)])
    results = world.results_for(wid, 2)
    assert [r["outcome"] for r in results] == ["delivered", "delivered"]
    assert len(world.receiver.got(path)) == 1 and len(world.receiver.got(moved)) == 1


# --- outbound safety ------------------------------------------------------------------------------


def test_redirect_is_a_failed_attempt_and_never_followed(world: World) -> None:
    wid, path = world.path("redir")
    with Receiver() as target:
        world.h.webhook(wid, world.receiver.url(path))
        world.receiver.set(path, lambda n, g: Reply(302, {"Location": target.url("/landing")}))
        world.h.send([world.h.task(wid)])
        world.letters_for(wid, 1)
        results = world.results_for(wid, len(SCHEDULE) + 1)
        assert all(r["errorClass"] == "redirect" and r["responseStatus"] == 302 for r in results)
        assert results[0]["outcome"] == "failed"
        assert results[0]["responseHeaders"]["Location"] == target.url("/landing")
        assert target.connections == 0 and target.got() == []


def test_hanging_receiver_attempt_ends_within_the_deadline(world: World) -> None:
    wid, path = world.path("hang")
    world.h.webhook(wid, world.receiver.url(path))
    world.receiver.set(path, lambda n, g: Hang() if n == 1 else Reply(200))
    world.h.send([world.h.task(wid)])
    first = _attempts(world, path, 1)[0]
    results = world.results_for(wid, 2, timeout=20)
    r = results[0]
    assert r["outcome"] == "failed" and r["errorClass"] == "timeout" and r["responseStatus"] is None
    assert ATTEMPT_TIMEOUT - 0.1 <= r["latencySeconds"] <= ATTEMPT_TIMEOUT + 1
    # The result exists no later than deadline + 1 s after the request reached the receiver.
    [msg] = [m for m in world.results.records
             if decode(m.value(), "DeliveryResult")["attemptId"] == r["attemptId"]]
    assert msg.timestamp()[1] / 1000 - first.at <= ATTEMPT_TIMEOUT + 1
    assert results[1]["outcome"] == "delivered"


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field}")


def test_a_10_mb_response_is_capped_and_not_buffered(world: World) -> None:
    wid, path = world.path("big")
    world.h.webhook(wid, world.receiver.url(path))
    world.receiver.set(path, lambda n, g: Big(10 * 1024 * 1024))
    assert world.role.proc is not None
    # Warm up (first-use allocations), then measure around five concurrent 10 MB answers.
    world.h.send([world.h.task(wid)])
    world.results_for(wid, 1)
    pid = world.role.proc.pid
    # Reset the peak (VmHWM), so that a buffered body shows even if it was freed right after.
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    before = _status_kib(pid, "VmRSS")
    world.h.send([world.h.task(wid) for _ in range(5)])
    results = world.results_for(wid, 6)
    peak, after = _status_kib(pid, "VmHWM"), _status_kib(pid, "VmRSS")
    for r in results:
        assert r["outcome"] == "delivered" and r["responseStatus"] == 200
        assert len(r["responseBodyExcerpt"]) == 16 * 1024 and r["responseBodyTruncated"] is True
    print(f"RSS {before} KiB -> {after} KiB, peak {peak} KiB")
    assert peak - before < 8 * 1024 and after - before < 8 * 1024, (before, peak, after)


def test_one_hanging_webhook_does_not_slow_nineteen_healthy_ones(world: World) -> None:
    h = world.h
    hang_id, hang_path = world.path("stuck")
    h.webhook(hang_id, world.receiver.url(hang_path))
    world.receiver.set(hang_path, lambda n, g: Hang())
    healthy = [world.path(f"ok{i}") for i in range(19)]
    for wid, path in healthy:
        h.webhook(wid, world.receiver.url(path))
    # The hanging webhook gets far more tasks than its share, and than the worker's whole buffer,
    # sent first: they must neither take the others' slots nor fill the worker.
    h.send([h.task(hang_id) for _ in range(3 * MAX_BUFFERED)])
    sent_at = time.time()
    tasks = [h.task(wid) for _ in range(20) for wid, _ in healthy]
    h.send(tasks)
    paths = {p for _, p in healthy}

    def arrived() -> int:
        return sum(1 for g in world.receiver.got() if g.path in paths)

    try:
        wait_until(lambda: arrived() >= len(tasks), 30, "every healthy delivery")
    except AssertionError as e:
        per_path = Counter(g.path for g in world.receiver.got() if g.path in paths)
        short = {p: per_path[p] for _, p in healthy if per_path[p] < 20}
        raise AssertionError(f"{e}: {arrived()} of {len(tasks)} arrived; short: {short}; worker metrics:\n"
                             + "\n".join(line for line in h.metrics(world.port).splitlines()
                                          if line.startswith("hookline_delivery_"))) from None
    latencies = sorted(g.at - sent_at for g in world.receiver.got() if g.path in paths)
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(f"healthy deliveries: p50 {latencies[len(latencies) // 2]:.3f}s p99 {p99:.3f}s")
    assert p99 < 2.0, f"healthy p99 {p99:.2f}s"
    # ... while the hanging one still holds only its share, and is being retried.
    stuck = world.receiver.got(hang_path)
    assert 1 <= len(stuck) <= world.h.settings.deliver_webhook_concurrency * 2
    results = world.results_for(hang_id, 1, timeout=10)
    assert results[0]["errorClass"] == "timeout" and results[0]["final"] is False
    text = h.metrics(world.port)
    assert metric(text, "hookline_delivery_deferred_total") >= MAX_BUFFERED
    assert metric(text, "hookline_delivery_tasks_buffered") <= MAX_BUFFERED


# --- bad input -------------------------------------------------------------------------------------


def test_undecodable_tasks_are_dead_lettered_and_the_worker_keeps_going(world: World) -> None:
    h = world.h
    wid, path = world.path("afterpoison")
    h.webhook(wid, world.receiver.url(path))
    key = wid.encode()
    valid = encode("DeliveryTask", h.task(wid))
    h.raw(key, b"\x00not avro at all")
    h.raw(key, None)
    h.raw(key, valid + b"trailing")
    h.raw(key, encode("DeadLetter", {"stage": "x", "reason": "y", "sourceTopic": "t", "sourcePartition": 0,
                                     "sourceOffset": 0, "failedAt": 0}))
    h.send([h.task(wid)])
    letters = world.letters_for(wid, 4)
    assert sorted(d["reason"] for d in letters) == sorted(["bad_magic", "tombstone", "trailing_bytes",
                                                           "wrong_schema"])
    assert all(d["stage"] == "deliver" for d in letters)
    assert {d["value"] for d in letters if d["value"]} >= {b"\x00not avro at all", valid + b"trailing"}
    [r] = world.results_for(wid, 1)
    assert r["outcome"] == "delivered"
    text = h.metrics(world.port)
    assert metric(text, "hookline_delivery_dead_lettered_total", reason="bad_magic") >= 1
    assert world.role.proc is not None and world.role.proc.poll() is None


# --- what a result shows, and what never leaks ----------------------------------------------------------


def test_results_strip_credentials_and_logs_hold_no_secret(world: World) -> None:
    h = world.h
    wid, path = world.path("creds")
    url = world.receiver.url(path).replace("http://", "http://alice:s3cr3t-pw@") + "?token=tok-123"
    h.webhook(wid, url)
    task = h.task(wid)
    h.send([task])
    [r] = world.results_for(wid, 1)
    [got] = world.receiver.got(path)
    verify(got, h.secrets[wid])
    assert got.headers["authorization"].startswith("Basic ")
    assert r["url"] == world.receiver.url(path)
    hdrs = r["requestHeaders"]
    assert hdrs["X-Webhook-Signature"] == "redacted" and hdrs["webhook-signature"] == "redacted"
    assert hdrs["webhook-id"] == task["messageId"] and hdrs["X-Webhook-Event"] == "CONTACT_CREATED"
    assert "Authorization" not in hdrs and "authorization" not in hdrs
    assert r["requestBody"] == task["payload"]
    assert r["eventId"] == task["eventId"] and r["accountId"] == task["accountId"]
    assert r["eventType"] == "CONTACT_CREATED" and r["trigger"] == "automatic"
    assert r["latencySeconds"] > 0 and r["responseBodyExcerpt"] == b"ok"
    log = world.role.log_path.read_text()
    secret = h.secrets[wid]
    for needle in ("s3cr3t-pw", "tok-123", secret, secret[6:], got.headers["x-webhook-signature"],
                   got.headers["webhook-signature"].split(",", 1)[1]):
        assert needle not in log


def test_a_rotated_secret_signs_with_both_until_it_expires(world: World) -> None:
    h = world.h
    now = int(time.time() * 1000)
    (a, pa), (b, pb) = world.path("rot"), world.path("rotexp")
    h.webhook(a, world.receiver.url(pa), previous="old-plain-secret", previous_expires_at=now + 3_600_000)
    h.webhook(b, world.receiver.url(pb), previous="old-plain-secret", previous_expires_at=now - 1)
    h.send([h.task(a), h.task(b)])
    [ga] = _attempts(world, pa, 1)
    [gb] = _attempts(world, pb, 1)
    assert len(ga.headers["webhook-signature"].split(" ")) == 2
    verify(ga, h.secrets[a], previous="old-plain-secret")
    assert len(gb.headers["webhook-signature"].split(" ")) == 1
    verify(gb, h.secrets[b])


def test_metrics_and_probes(world: World) -> None:
    text = world.h.metrics(world.port)
    for name in ("hookline_deliveries_total", "hookline_delivery_attempt_seconds_bucket",
                 "hookline_event_to_delivery_seconds_bucket", "hookline_deliveries_in_flight",
                 "hookline_retries_scheduled_total", "hookline_consumer_lag_records"):
        assert name in text, name
    assert f'hookline_delivery_attempt_seconds_bucket{{le="{ATTEMPT_TIMEOUT}"}}' in text
    assert 'hookline_consumer_lag_records{role="deliver"}' in text
    assert world.role.get(world.port, "/readyz")[0] == 200
    assert world.role.get(world.port, "/healthz")[0] == 200
