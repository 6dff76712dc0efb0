"""A webhook's rate limit through the API (issue 12): set, shown, changed, removed, refused."""

from __future__ import annotations

import pytest

from hookline.webhooks import Webhook
from schemas.codec import decode
from tests.api.conftest import RunningApi, read_config_topic

pytestmark = pytest.mark.kafka

HOOK = {"name": "Throttled CRM", "url": "https://crm.example.com/in", "subscriptions": ["SALE_NEW"]}


def stored(api: RunningApi, webhook_id: str) -> Webhook:
    """The last config record of ``webhook_id`` on the topic."""
    values = [v for k, v in read_config_topic(api.settings) if k == webhook_id.encode() and v is not None]
    return Webhook.from_record(decode(values[-1], "WebhookConfig"))


def test_rate_limit_is_set_shown_changed_and_removed(api: RunningApi) -> None:
    c = api.client()
    unlimited = c.post("/api/webhooks", json=HOOK)
    assert unlimited.status_code == 201 and unlimited.json()["rateLimit"] is None  # the default
    created = c.post("/api/webhooks", json={**HOOK, "rateLimit": 50})
    assert created.status_code == 201, created.text
    wid = created.json()["id"]
    assert created.json()["rateLimit"] == 50
    assert c.get(f"/api/webhooks/{wid}").json()["rateLimit"] == 50
    listed = {h["id"]: h["rateLimit"] for h in c.get("/api/webhooks").json()["items"]}
    assert listed == {unlimited.json()["id"]: None, wid: 50}
    assert stored(api, wid).rate_limit == 50

    # A patch of another field keeps it; a number changes it; null removes it (merge-patch).
    assert c.patch(f"/api/webhooks/{wid}", json={"name": "Renamed"}).json()["rateLimit"] == 50
    assert c.patch(f"/api/webhooks/{wid}", json={"rateLimit": 10_000}).json()["rateLimit"] == 10_000
    assert c.patch(f"/api/webhooks/{wid}", json={"rateLimit": 1}).json()["rateLimit"] == 1
    removed = c.patch(f"/api/webhooks/{wid}", json={"rateLimit": None})
    assert removed.status_code == 200 and removed.json()["rateLimit"] is None
    assert c.get(f"/api/webhooks/{wid}").json()["rateLimit"] is None
    assert stored(api, wid).rate_limit is None
    # Null on create means "not given": unlimited.
    assert c.post("/api/webhooks", json={**HOOK, "rateLimit": None}).json()["rateLimit"] is None


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (0, "rate_limit_out_of_range"),
        (10_001, "rate_limit_out_of_range"),
        (-1, "rate_limit_out_of_range"),
        ("abc", "invalid_type"),
        (1.5, "invalid_type"),
        (50.0, "invalid_type"),
        (True, "invalid_type"),
        ([50], "invalid_type"),
    ],
)
def test_a_bad_rate_limit_is_refused_with_a_message_naming_the_field(
    api: RunningApi, value: object, code: str
) -> None:
    c = api.client()
    refused = c.post("/api/webhooks", json={**HOOK, "rateLimit": value})
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["code"] == code
    assert error["message"].startswith(
        "rateLimit must be a whole number of requests per second from 1 to 10000"
    )
    assert c.get("/api/webhooks").json()["items"] == []  # nothing was created
    wid = c.post("/api/webhooks", json={**HOOK, "rateLimit": 20}).json()["id"]
    patched = c.patch(f"/api/webhooks/{wid}", json={"rateLimit": value})
    assert (patched.status_code, patched.json()["error"]["code"]) == (422, code)
    assert c.get(f"/api/webhooks/{wid}").json()["rateLimit"] == 20  # unchanged


def test_openapi_documents_the_rate_limit(api: RunningApi) -> None:
    spec = api.client(api_key=None).get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    out = schemas["WebhookOut"]["properties"]["rateLimit"]
    assert "requests per second" in out["description"].lower()
    create = spec["paths"]["/api/webhooks"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    bounds = [b for b in create["properties"]["rateLimit"]["anyOf"] if b.get("type") == "integer"]
    assert bounds == [{"type": "integer", "minimum": 1, "maximum": 10000}]
    patch = spec["paths"]["/api/webhooks/{webhook_id}"]["patch"]["requestBody"]["content"]
    assert (
        "null removes the limit"
        in patch["application/merge-patch+json"]["schema"]["properties"]["rateLimit"]["description"]
    )
