"""Account isolation on every delivery logs endpoint (issue 5 acceptance).

Another account's webhook, another account's message id, and a message id of another webhook of
the same account all answer exactly like ids that do not exist: 404 ``not_found``, whatever the
parameters or body, and nothing is produced to the delivery topic.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from hookline.logstore import LogStore, open_store
from hookline.settings import Secret
from tests.api.conftest import KEY_A, KEY_B, RunningApi
from tests.logrecords import delivery_result, now_ms
from tests.support import TopicReader, wait_until

pytestmark = pytest.mark.kafka

NO_WEBHOOK = {"error": {"code": "not_found", "message": "no webhook with this id"}}
NO_MESSAGE = {"error": {"code": "not_found", "message": "no delivery with this message id for this webhook"}}


@pytest.fixture
def logs_api(make_api: Callable[..., RunningApi], tmp_path: Path) -> Iterator[tuple[RunningApi, LogStore]]:
    """An API reading the SQLite log store that this test fills directly."""
    api = make_api(database_url=Secret(f"sqlite:///{tmp_path}/logs.sqlite3"))
    store = open_store(api.settings)
    try:
        yield api, store
    finally:
        store.close()


def _create(client: httpx.Client, name: str) -> str:
    r = client.post(
        "/api/webhooks",
        json={"name": name, "url": "https://hooks.example.com/x", "subscriptions": ["SALE_NEW"]},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _calls(webhook_id: str, message_id: str) -> list[tuple[str, str, dict[str, object]]]:
    """Every logs endpoint, with parameters and bodies that would be refused if they were judged."""
    base = f"/api/webhooks/{webhook_id}"
    return [
        ("GET", f"{base}/deliveries", {}),
        ("GET", f"{base}/deliveries", {"params": {"status": "bogus", "event": "NOPE", "limit": "0"}}),
        ("GET", f"{base}/deliveries", {"params": {"startingAfter": message_id}}),
        ("GET", f"{base}/deliveries/{message_id}", {}),
        ("POST", f"{base}/deliveries/{message_id}/redeliver", {}),
        ("POST", f"{base}/test", {}),
        ("POST", f"{base}/test", {"json": {"eventType": "SALE_NEW"}}),
        ("POST", f"{base}/test", {"json": {"eventType": "BOGUS", "extra": 1}}),
        ("POST", f"{base}/test", {"content": b"not json", "headers": {"content-type": "text/plain"}}),
    ]


def test_every_logs_endpoint_answers_404_across_accounts_and_webhooks(
    logs_api: tuple[RunningApi, LogStore],
) -> None:
    api, store = logs_api
    a, b = api.client(KEY_A), api.client(KEY_B)
    a1, a2, b1 = _create(a, "a one"), _create(a, "a two"), _create(b, "b one")
    t = now_ms()
    m_a1, m_a2, m_b1 = (
        "msg_a1" + uuid.uuid4().hex[:8],
        "msg_a2" + uuid.uuid4().hex[:8],
        "msg_b1" + uuid.uuid4().hex[:8],
    )
    store.insert_attempts(
        [
            delivery_result("acct-a", a1, m_a1, 1, attempted_at=t - 2000, outcome="failed", final=False),
            delivery_result("acct-a", a1, m_a1, 2, attempted_at=t - 1000),
            delivery_result("acct-a", a2, m_a2, 1, attempted_at=t),
            delivery_result("acct-b", b1, m_b1, 1, attempted_at=t),
        ]
    )
    tasks = TopicReader(api.settings, "webhook-deliveries")
    try:
        # Positive controls: each owner sees its own rows, so the 404s below are about ownership.
        assert [m["messageId"] for m in a.get(f"/api/webhooks/{a1}/deliveries").json()["items"]] == [m_a1]
        assert a.get(f"/api/webhooks/{a1}/deliveries/{m_a1}").json()["message"]["attempts"] == 2
        assert [m["messageId"] for m in b.get(f"/api/webhooks/{b1}/deliveries").json()["items"]] == [m_b1]

        missing_hook = str(uuid.uuid4())
        for method, path, kw in _calls(missing_hook, "msg_missing"):
            r = a.request(method, path, **kw)  # type: ignore[arg-type]
            assert (r.status_code, r.json()) == (404, NO_WEBHOOK), (method, path, kw)

        # Account B on account A's webhooks (with A's message ids): exactly as for a missing webhook.
        for hook, message in ((a1, m_a1), (a2, m_a2), (a1, m_a2)):
            for method, path, kw in _calls(hook, message):
                r = b.request(method, path, **kw)  # type: ignore[arg-type]
                assert (r.status_code, r.json()) == (404, NO_WEBHOOK), (method, path, kw)

        # Account B's own webhook with account A's message ids: exactly as for a missing message.
        # And account A with a message id of its other webhook: the same.
        for client, hook, message in ((b, b1, m_a1), (b, b1, m_a2), (a, a1, m_a2), (a, a2, m_a1)):
            for method, path in (
                ("GET", f"/api/webhooks/{hook}/deliveries/{message}"),
                ("POST", f"/api/webhooks/{hook}/deliveries/{message}/redeliver"),
            ):
                r = client.request(method, path)
                assert (r.status_code, r.json()) == (404, NO_MESSAGE), (hook, message, method)
            missing = client.get(f"/api/webhooks/{hook}/deliveries/msg_missing")
            assert (missing.status_code, missing.json()) == (404, NO_MESSAGE)
            # As a cursor, a foreign message id is as unknown as a made-up one.
            foreign = client.get(f"/api/webhooks/{hook}/deliveries", params={"startingAfter": message})
            made_up = client.get(f"/api/webhooks/{hook}/deliveries", params={"startingAfter": "msg_missing"})
            assert foreign.status_code == made_up.status_code == 400
            assert foreign.json() == made_up.json()
            assert foreign.json()["error"]["code"] == "invalid_cursor"

        # Nothing refused above reached the delivery topic; the owner's own redelivery does.
        r = a.post(f"/api/webhooks/{a1}/deliveries/{m_a1}/redeliver")
        assert r.status_code == 202, r.text
        wait_until(lambda: tasks.poll(0.2) is not None and len(tasks.records) >= 1, 60, "the redelivery task")
        tasks.poll(0.5)  # anything produced before it is on the topic by now (acks=all, awaited)
        assert [
            (m.key(), t["messageId"])
            for m, t in zip(tasks.records, tasks.decoded("DeliveryTask"), strict=True)
        ] == [(a1.encode(), m_a1)]
    finally:
        tasks.close()
