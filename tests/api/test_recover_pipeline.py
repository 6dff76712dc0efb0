"""Recover over the real pipeline (issue 11, point 5): what failed into the DLQ is sent again.

The API in this process, ``hookline deliver`` and ``logsink`` as processes, one real broker, one
SQLite log store, receivers on 127.0.0.1. 200 messages fail for good (compressed retry schedule),
the receiver is fixed, one recover call sends each of them once more — with its message id, oldest
first — while an identical call made at the same time sends nothing; a capped API says more remain.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from confluent_kafka import Producer

from hookline.clients import producer_config
from hookline.local.ports import free_port
from hookline.records import DeliveryResult, DeliveryTask
from hookline.settings import Secret
from hookline.signing import message_id
from hookline.timestamps import rfc3339
from tests.api.conftest import KEY_A, KEY_B, RunningApi
from tests.processors.deliver.receivers import Receiver, Reply
from tests.support import Role, TopicReader, role_env, scaled, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

MESSAGES = 200
CAPPED = 30
CAP = 20
WEBHOOK_CONCURRENCY = 16  # the worker's default share per webhook


@dataclass
class Pipeline:
    api: RunningApi
    capped: RunningApi  # the same topics and store, HOOKLINE_RECOVER_MAX=20
    receiver: Receiver
    database_url: str


@pytest.fixture
def pipeline(make_api: Callable[..., RunningApi], tmp_path: Path) -> Iterator[Pipeline]:
    database_url = f"sqlite:///{tmp_path}/logs.sqlite3"
    api = make_api(database_url=Secret(database_url))
    capped = make_api(database_url=Secret(database_url), secret_key=api.settings.secret_key, recover_max=CAP)
    env = role_env(
        api.settings,
        HOOKLINE_ALLOW_NETWORKS="127.0.0.0/8",
        HOOKLINE_SECRET_KEY=api.settings.secret_key.get(),
        HOOKLINE_DATABASE_URL=database_url,
        HOOKLINE_RETRY_JITTER="0",
    )
    ports = {"deliver": free_port(), "logsink": free_port()}
    roles = [
        Role([name], {**env, f"HOOKLINE_{name.upper()}_METRICS_PORT": str(port)}, tmp_path / f"{name}.log")
        for name, port in ports.items()
    ]
    receiver = Receiver()
    try:
        receiver.start()
        for role in roles:
            role.start()
        for role, port in zip(roles, ports.values(), strict=True):
            role.wait_ready(port, timeout=90)
        yield Pipeline(api, capped, receiver, database_url)
    finally:
        for role in roles:
            role.stop()
        receiver.stop()


def failed_ids(client: httpx.Client, webhook_id: str) -> list[str]:
    out: list[str] = []
    cursor = ""
    while True:
        r = client.get(
            f"/api/webhooks/{webhook_id}/deliveries",
            params={"status": "failed", "limit": 100, **({"startingAfter": cursor} if cursor else {})},
        )
        assert r.status_code == 200, r.text
        doc = r.json()
        out += [m["messageId"] for m in doc["items"]]
        if not doc["hasMore"]:
            return out
        cursor = doc["items"][-1]["messageId"]


def test_recover_sends_every_failed_message_once_oldest_first(pipeline: Pipeline) -> None:
    api, receiver = pipeline.api, pipeline.receiver
    settings = api.settings
    fixed = threading.Event()
    for path in ("/main", "/capped"):
        receiver.set(path, lambda n, got: Reply(200) if fixed.is_set() else Reply(503, body=b"down"))
    a = api.client(KEY_A)
    hooks = {}
    for path in ("/main", "/capped"):
        r = a.post(
            "/api/webhooks", json={"name": path, "url": receiver.url(path), "subscriptions": ["SALE_NEW"]}
        )
        assert r.status_code == 201, r.text
        hooks[path] = r.json()["id"]
    main, capped = hooks["/main"], hooks["/capped"]
    since = rfc3339(int(time.time() * 1000) - 1000)

    # 1. Messages fail for good: 4 attempts (0.5, 1, 1.5 s apart), then the DLQ.
    producer = Producer(producer_config(settings))
    payloads: dict[str, bytes] = {}
    sent: dict[str, set[str]] = {main: set(), capped: set()}
    for wid, count in ((main, MESSAGES), (capped, CAPPED)):
        for i in range(count):
            event_id = f"ev-{uuid.uuid4().hex[:12]}"
            body = orjson.dumps({"order": {"id": i, "webhook": wid}})
            task = DeliveryTask(
                message_id=message_id(event_id, wid),
                event_id=event_id,
                webhook_id=wid,
                account_id="acct-a",
                event_type="SALE_NEW",
                event_occurred_at=int(time.time() * 1000),
                routed_at=int(time.time() * 1000),
                config_version=1,
                payload=body,
            )
            payloads[task.message_id] = body
            sent[wid].add(task.message_id)
            producer.produce(settings.topic("webhook-deliveries"), key=task.key, value=task.encode())
            producer.poll(0)
    assert producer.flush(scaled(60)) == 0
    wait_until(
        lambda: len(failed_ids(a, main)) == MESSAGES and len(failed_ids(a, capped)) == CAPPED,
        120,
        f"{MESSAGES} + {CAPPED} failed messages in the logs API",
        interval=0.5,
    )
    main_ids = set(failed_ids(a, main))
    assert main_ids == sent[main]

    # Order of first attempt, from the attempts themselves (the results topic).
    results = TopicReader(settings, "webhook-results")

    def finals_read() -> bool:
        results.poll()
        read = (DeliveryResult.decode(m.value()) for m in results.records)
        return {r.message_id for r in read if r.final} >= sent[main] | sent[capped]

    wait_until(finals_read, 60, "the last attempt of every failed message on the results topic")
    first: dict[str, int] = {}
    last_attempt: dict[str, int] = {}
    for m in results.records:
        res = DeliveryResult.decode(m.value())
        first[res.message_id] = min(first.get(res.message_id, res.attempted_at), res.attempted_at)
        last_attempt[res.message_id] = max(last_attempt.get(res.message_id, 0), res.attempt)
    results.close()
    assert main_ids <= set(first)

    # Refusals: another account's webhook is a 404; a since without an offset is refused.
    assert api.client(KEY_B).post(f"/api/webhooks/{main}/recover", json={"since": since}).status_code == 404
    bad = a.post(f"/api/webhooks/{main}/recover", json={"since": "2024-06-01T00:00:00"})
    assert (bad.status_code, bad.json()["error"]["code"]) == (422, "invalid_since")

    # 2. The receiver is fixed; two identical recover calls at the same time.
    fixed.set()
    fixed_at = time.time()
    before = len(receiver.got("/main"))
    answers: list[dict[str, Any]] = []

    def call() -> None:
        with httpx.Client(base_url=api.base_url, headers={"X-API-Key": KEY_A}, timeout=60) as c:
            r = c.post(f"/api/webhooks/{main}/recover", json={"since": since})
            assert r.status_code == 202, r.text
            answers.append(r.json())

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert sorted(x["count"] for x in answers) == [0, MESSAGES], answers
    assert not any(x["hasMore"] for x in answers)
    assert sum(x["pending"] for x in answers) <= MESSAGES

    def after_fix(path: str, count: int) -> list[Any] | None:
        got = [g for g in receiver.got(path) if g.at >= fixed_at]
        return got if len(got) >= count else None

    arrived = wait_until(lambda: after_fix("/main", MESSAGES), 120, f"{MESSAGES} recovered deliveries")
    assert arrived is not None and len(receiver.got("/main")) - before == len(arrived)
    ids = [g.headers["x-webhook-message-id"] for g in arrived]
    assert len(ids) == len(set(ids)) == MESSAGES, "each exactly once"
    assert set(ids) == main_ids, "with their original message ids"
    assert all(g.body == payloads[g.headers["x-webhook-message-id"]] for g in arrived)

    # What the API produced: exactly one recover task per message, in order of first attempt.
    tasks = TopicReader(settings, "webhook-deliveries")
    tasks.wait_for(MESSAGES + CAPPED + MESSAGES, 60)
    recovered = [t for t in (DeliveryTask.decode(m.value()) for m in tasks.records) if t.trigger == "recover"]
    tasks.close()
    order = [t.message_id for t in recovered]
    assert order == sorted(order, key=lambda m: first[m]), "oldest first: order of first attempt"
    assert len(order) == len(set(order)) == MESSAGES
    assert all(t.attempt == last_attempt[t.message_id] + 1 for t in recovered)
    # Arrival order: the worker sends up to 16 requests of one webhook at once, so arrivals may swap
    # within that window, never further.
    position = {m: i for i, m in enumerate(order)}
    moved = max(abs(position[m] - i) for i, m in enumerate(ids))
    print(f"recover: {MESSAGES} arrived once each; largest displacement in arrival order {moved}")
    assert moved < WEBHOOK_CONCURRENCY

    # Once logged as delivered, nothing is left to recover, and nothing more arrives.
    wait_until(lambda: not failed_ids(a, main), 60, "no failed message left", interval=0.5)
    again = a.post(f"/api/webhooks/{main}/recover", json={"since": since})
    assert (again.status_code, again.json()["count"]) == (202, 0)
    assert len(receiver.got("/main")) - before == MESSAGES

    # 3. The cap: 30 failed, 20 per call; the answer says more remain, the next call sends the rest.
    c = pipeline.capped.client(KEY_A)
    one = c.post(f"/api/webhooks/{capped}/recover", json={"since": since}).json()
    assert (one["count"], one["hasMore"]) == (CAP, True), one
    two = c.post(f"/api/webhooks/{capped}/recover", json={"since": since}).json()
    assert (two["count"], two["hasMore"]) == (CAPPED - CAP, False), two
    wait_until(lambda: after_fix("/capped", CAPPED), 60, "capped recoveries")
    wait_until(lambda: not failed_ids(a, capped), 60, "no capped message left failed", interval=0.5)
    got_capped = [g.headers["x-webhook-message-id"] for g in receiver.got("/capped") if g.at >= fixed_at]
    assert len(got_capped) == len(set(got_capped)) == CAPPED
    assert set(got_capped) == sent[capped]
