"""Webhook CRUD through HTTP against a real uvicorn server and the real broker."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from hookline.sealing import Sealer
from hookline.webhooks import Webhook
from schemas.codec import decode
from tests.api.conftest import KEY_B, RunningApi, read_config_topic

pytestmark = pytest.mark.kafka

HOOK = {
    "name": "Sales to CRM",
    "url": "https://crm.example.com/hooks/systeme?tenant=42",
    "subscriptions": ["SALE_NEW", "CONTACT_CREATED"],
}
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
PUBLIC_FIELDS = {
    "id",
    "name",
    "url",
    "subscriptions",
    "active",
    "disabledReason",
    "disabledAt",
    "rateLimit",
    "ordering",
    "createdAt",
    "updatedAt",
}


def records_of(api: RunningApi, webhook_id: str) -> list[Webhook | None]:
    """The config topic's records for one webhook, in order (None = tombstone)."""
    out: list[Webhook | None] = []
    for key, value in read_config_topic(api.settings):
        if key == webhook_id.encode():
            out.append(None if value is None else Webhook.from_record(decode(value, "WebhookConfig")))
    return out


def test_create_read_patch_delete_round_trip(api: RunningApi) -> None:
    c = api.client()
    created = c.post("/api/webhooks", json=HOOK)
    assert created.status_code == 201, created.text
    doc = created.json()
    wid = doc["id"]
    assert created.headers["location"] == f"/api/webhooks/{wid}"
    assert created.headers["cache-control"] == "no-store"
    # Generated secret: whsec_ + base64 of 24 random bytes, returned this once.
    secret = doc.pop("secret")
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:], validate=True)) == 24
    assert set(doc) == PUBLIC_FIELDS
    assert doc["name"] == HOOK["name"] and doc["url"] == HOOK["url"] and doc["active"] is True
    assert doc["disabledReason"] is None and doc["disabledAt"] is None
    # Subscriptions come back in the canonical event order, each with its own disabled state.
    assert doc["subscriptions"] == [
        {"event": "CONTACT_CREATED", "disabledAt": None, "disabledReason": None},
        {"event": "SALE_NEW", "disabledAt": None, "disabledReason": None},
    ]
    assert RFC3339.fullmatch(doc["createdAt"]) and doc["createdAt"] == doc["updatedAt"]

    # Read-your-write: the same instance serves it at once, without the secret.
    got = c.get(f"/api/webhooks/{wid}")
    assert got.status_code == 200 and got.json() == doc
    listed = c.get("/api/webhooks").json()
    assert listed == {"items": [doc], "hasMore": False}

    # Merge-patch replaces the subscription list and leaves other fields alone.
    patched = c.patch(
        f"/api/webhooks/{wid}",
        content=b'{"subscriptions": ["CONTACT_TAG_ADDED", "SALE_CANCELED", "CONTACT_OPT_IN"]}',
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert patched.status_code == 200, patched.text
    p = patched.json()
    events = [s["event"] for s in p["subscriptions"]]
    assert events == ["CONTACT_TAG_ADDED", "CONTACT_OPT_IN", "SALE_CANCELED"]
    kept = ("name", "url", "active", "createdAt")
    assert {k: p[k] for k in kept} == {k: doc[k] for k in kept}
    assert p["updatedAt"] >= doc["updatedAt"] and "secret" not in p
    assert c.get(f"/api/webhooks/{wid}").json() == p

    # The active toggle, off and on again; plain application/json is accepted too.
    off = c.patch(f"/api/webhooks/{wid}", json={"active": False})
    assert off.status_code == 200 and off.json()["active"] is False
    assert c.get(f"/api/webhooks/{wid}").json()["active"] is False
    on = c.patch(f"/api/webhooks/{wid}", json={"active": True, "name": "Renamed"})
    assert on.json()["active"] is True and on.json()["name"] == "Renamed"
    assert c.get(f"/api/webhooks/{wid}").json() == on.json()

    # An empty patch, or one that changes nothing, writes nothing.
    before = len(records_of(api, wid))
    assert c.patch(f"/api/webhooks/{wid}", json={}).json() == on.json()
    assert c.patch(f"/api/webhooks/{wid}", json={"name": "Renamed", "active": True}).json() == on.json()

    # Delete: 204, then gone for reads, lists, patches and deletes.
    assert c.delete(f"/api/webhooks/{wid}").status_code == 204
    gone = c.get(f"/api/webhooks/{wid}")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"
    assert c.get("/api/webhooks").json() == {"items": [], "hasMore": False}
    assert c.patch(f"/api/webhooks/{wid}", json={"name": "x"}).status_code == 404
    assert c.delete(f"/api/webhooks/{wid}").status_code == 404

    # On the topic: versions 1..4 strictly increasing, then a tombstone; no write for no-op patches.
    records = records_of(api, wid)
    assert len(records) == before + 1 == 5
    assert records[-1] is None
    versions = [r.version for r in records[:-1] if r is not None]
    assert versions == [1, 2, 3, 4]
    final = records[-2]
    assert final is not None and final.account_id == "acct-a" and final.name == "Renamed"


def test_user_secret_is_kept_not_returned_and_rotation_keeps_the_previous(api: RunningApi) -> None:
    c = api.client()
    typed = "my own typed secret 123"
    created = c.post("/api/webhooks", json={**HOOK, "secret": typed, "active": False})
    assert created.status_code == 201, created.text
    assert "secret" not in created.json() and created.json()["active"] is False
    wid = created.json()["id"]

    rotated = c.patch(f"/api/webhooks/{wid}", json={"secret": "a brand new secret"})
    assert rotated.status_code == 200 and "secret" not in rotated.json()

    sealer = Sealer.from_settings(api.settings)
    first, second = (r for r in records_of(api, wid) if r is not None)
    assert sealer.open(wid, first.secret) == typed and first.previous_secret is None
    assert sealer.open(wid, second.secret) == "a brand new secret"
    assert second.previous_secret is not None and sealer.open(wid, second.previous_secret) == typed
    # The old secret keeps signing for exactly 24 h after the rotation (README: "for 24 h"), no less, no more.
    assert second.previous_secret_expires_at == second.updated_at + 24 * 3600 * 1000
    assert second.version == 2 and second.active is False


def test_bearer_token_authenticates_and_accounts_see_their_own(api: RunningApi) -> None:
    a = api.client()
    b = api.client(api_key=None, headers={"Authorization": f"Bearer {KEY_B}"})
    wa = a.post("/api/webhooks", json=HOOK).json()["id"]
    wb = b.post("/api/webhooks", json={**HOOK, "name": "B's"}).json()["id"]
    assert [h["id"] for h in a.get("/api/webhooks").json()["items"]] == [wa]
    assert [h["id"] for h in b.get("/api/webhooks").json()["items"]] == [wb]


def test_concurrent_patches_keep_versions_strictly_increasing(api: RunningApi) -> None:
    c = api.client()
    wid = c.post("/api/webhooks", json=HOOK).json()["id"]

    def rename(i: int) -> int:
        return c.patch(f"/api/webhooks/{wid}", json={"name": f"name {i}"}).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(rename, range(24))) == {200}
    versions = [r.version for r in records_of(api, wid) if r is not None]
    assert versions == list(range(1, 26))


def _page_through(
    get: Callable[..., Any], limit: int, on_page: Callable[[list[str]], None] | None = None
) -> list[str]:
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(1000):
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["startingAfter"] = cursor
        resp = get("/api/webhooks", params=params)
        assert resp.status_code == 200, resp.text
        page = resp.json()
        ids = [h["id"] for h in page["items"]]
        assert len(ids) <= limit
        seen += ids
        if on_page is not None:
            on_page(ids)
        if not page["hasMore"]:
            return seen
        assert ids, "hasMore with an empty page"
        cursor = ids[-1]
    raise AssertionError("pagination did not end")


@pytest.mark.slow
def test_pagination_over_250_webhooks_has_no_gaps_or_repeats(make_api: Callable[..., RunningApi]) -> None:
    api = make_api(max_webhooks_per_account=300)
    c = api.client()

    def create(i: int) -> tuple[str, str]:
        resp = c.post("/api/webhooks", json={**HOOK, "name": f"hook {i:03d}", "secret": f"secret-{i:04d}"})
        assert resp.status_code == 201, resp.text
        return resp.json()["createdAt"], resp.json()["id"]

    with ThreadPoolExecutor(4) as pool:
        created = list(pool.map(create, range(250)))
    expected = [wid for _, wid in sorted(created)]  # (createdAt, id) order; RFC 3339 sorts as text
    assert len(set(expected)) == 250

    for limit in (100, 37, 1):
        assert _page_through(c.get, limit) == expected, f"limit={limit}"
    first_page = c.get("/api/webhooks").json()["items"]  # default limit 10
    assert first_page == [c.get(f"/api/webhooks/{w}").json() for w in expected[:10]]

    # Deleting the item a cursor points at, between pages, neither skips nor repeats anything.
    deleted: list[str] = []

    def delete_last(ids: list[str]) -> None:
        if ids and len(deleted) < 3:
            assert c.delete(f"/api/webhooks/{ids[-1]}").status_code == 204
            deleted.append(ids[-1])

    assert _page_through(c.get, 50, delete_last) == expected
    remaining = [w for w in expected if w not in deleted]
    assert _page_through(c.get, 100) == remaining


def test_openapi_and_probes(api: RunningApi) -> None:
    c = api.client(api_key=None)
    spec = c.get("/openapi.json")
    assert spec.status_code == 200
    doc = spec.json()
    assert set(doc["paths"]) == {
        "/api/webhooks",
        "/api/contacts/{contact_id}/erase",
        "/api/webhooks/{webhook_id}",
        "/api/webhooks/{webhook_id}/deliveries",
        "/api/webhooks/{webhook_id}/deliveries/{message_id}",
        "/api/webhooks/{webhook_id}/deliveries/{message_id}/redeliver",
        "/api/webhooks/{webhook_id}/recover",
        "/api/webhooks/{webhook_id}/replay",
        "/api/webhooks/{webhook_id}/replays/{replay_id}",
        "/api/webhooks/{webhook_id}/test",
    }
    assert set(doc["paths"]["/api/webhooks/{webhook_id}"]) == {"get", "patch", "delete"}
    patch_body = doc["paths"]["/api/webhooks/{webhook_id}"]["patch"]["requestBody"]["content"]
    assert set(patch_body) == {"application/merge-patch+json", "application/json"}
    schemes = doc["components"]["securitySchemes"]
    assert {s["type"] for s in schemes.values()} == {"apiKey", "http"}
    assert c.get("/healthz").status_code == 200
    assert c.get("/readyz").json() == {"status": "ready"}
    metrics = c.get("/metrics")
    assert metrics.status_code == 200 and "hookline_api_requests_total" in metrics.text
