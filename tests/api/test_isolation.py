"""Account isolation: another account's webhook is indistinguishable from one that does not exist."""

from __future__ import annotations

import uuid

import pytest

from hookline.webhooks import Webhook
from schemas.codec import decode
from tests.api.conftest import KEY_B, RunningApi, read_config_topic

pytestmark = pytest.mark.kafka

HOOK = {
    "name": "A's orders",
    "url": "https://a.example.com/in",
    "subscriptions": ["SALE_NEW", "SALE_CANCELED"],
}


def test_account_b_cannot_list_read_patch_or_delete_account_a_webhook(api: RunningApi) -> None:
    a = api.client()
    b = api.client(api_key=KEY_B)
    created = a.post("/api/webhooks", json=HOOK)
    assert created.status_code == 201
    mine = {k: v for k, v in created.json().items() if k != "secret"}
    wid = mine["id"]
    b_own = b.post("/api/webhooks", json={**HOOK, "name": "B's own"}).json()["id"]

    # What B gets for A's id is exactly what B gets for an id that never existed.
    never = str(uuid.uuid4())
    for method, body in (
        ("GET", None),
        ("PATCH", {"active": False}),
        ("PATCH", {"name": None}),
        ("DELETE", None),
    ):
        theirs = b.request(method, f"/api/webhooks/{wid}", json=body)
        absent = b.request(method, f"/api/webhooks/{never}", json=body)
        assert theirs.status_code == absent.status_code == 404, (method, theirs.text)
        assert (
            theirs.json()
            == absent.json()
            == {"error": {"code": "not_found", "message": "no webhook with this id"}}
        )
    # Bearer form of the same key: same answer.
    bearer = api.client(api_key=None, headers={"Authorization": f"Bearer {KEY_B}"})
    assert bearer.get(f"/api/webhooks/{wid}").status_code == 404

    # B's list never shows it, from the start or from A's id used as a cursor.
    assert [h["id"] for h in b.get("/api/webhooks").json()["items"]] == [b_own]
    after = b.get("/api/webhooks", params={"startingAfter": wid})
    assert after.status_code == 200 and wid not in after.text

    # A's webhook is unchanged, and nothing but A's create and B's create reached the topic.
    assert a.get(f"/api/webhooks/{wid}").json() == mine
    assert [h["id"] for h in a.get("/api/webhooks").json()["items"]] == [wid]
    records = [(k, v) for k, v in read_config_topic(api.settings)]
    assert sorted(k for k, _ in records if k is not None) == sorted([wid.encode(), b_own.encode()])
    stored = {k: Webhook.from_record(decode(v, "WebhookConfig")) for k, v in records if v is not None}
    assert stored[wid.encode()].account_id == "acct-a" and stored[wid.encode()].version == 1
    assert stored[b_own.encode()].account_id == "acct-b"


def test_a_deleted_by_owner_is_gone_for_everyone(api: RunningApi) -> None:
    a = api.client()
    b = api.client(api_key=KEY_B)
    wid = a.post("/api/webhooks", json=HOOK).json()["id"]
    assert a.delete(f"/api/webhooks/{wid}").status_code == 204
    assert a.get(f"/api/webhooks/{wid}").status_code == b.get(f"/api/webhooks/{wid}").status_code == 404
