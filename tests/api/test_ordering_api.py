"""A webhook's delivery order through the API and the page (issue 12, point 2): set, shown, changed,
reset, refused with a message that names the field and the allowed values."""

from __future__ import annotations

import re

import pytest

from tests.api.conftest import RunningApi
from tests.api.test_page import _escaped, create_hook, page_api, sign_in
from tests.api.test_rate_limit_api import stored

pytestmark = pytest.mark.kafka

__all__ = ["page_api"]  # the page's module fixture, used here too

HOOK = {"name": "State sync", "url": "https://crm.example.com/in", "subscriptions": ["CONTACT_TAG_ADDED"]}
MESSAGE = 'ordering must be "none" or "contact"'


def test_ordering_is_set_shown_changed_and_reset(api: RunningApi) -> None:
    c = api.client()
    plain = c.post("/api/webhooks", json=HOOK)
    assert plain.status_code == 201 and plain.json()["ordering"] == "none"  # the default
    created = c.post("/api/webhooks", json={**HOOK, "ordering": "contact"})
    assert created.status_code == 201, created.text
    wid = created.json()["id"]
    assert created.json()["ordering"] == "contact"
    assert c.get(f"/api/webhooks/{wid}").json()["ordering"] == "contact"
    listed = {h["id"]: h["ordering"] for h in c.get("/api/webhooks").json()["items"]}
    assert listed == {plain.json()["id"]: "none", wid: "contact"}
    assert stored(api, wid).ordering == "contact"
    # A patch of another field keeps it; a value changes it; null resets it to the default.
    assert c.patch(f"/api/webhooks/{wid}", json={"rateLimit": 5}).json()["ordering"] == "contact"
    assert c.patch(f"/api/webhooks/{wid}", json={"ordering": "none"}).json()["ordering"] == "none"
    assert stored(api, wid).ordering == "none"
    assert c.patch(f"/api/webhooks/{wid}", json={"ordering": "contact"}).json()["ordering"] == "contact"
    reset = c.patch(f"/api/webhooks/{wid}", json={"ordering": None})
    assert reset.status_code == 200 and reset.json()["ordering"] == "none"
    assert c.post("/api/webhooks", json={**HOOK, "ordering": None}).json()["ordering"] == "none"


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("fifo", "ordering_invalid"),
        ("", "ordering_invalid"),
        ("Contact", "ordering_invalid"),
        (1, "invalid_type"),
        (True, "invalid_type"),
        (["contact"], "invalid_type"),
    ],
)
def test_a_bad_ordering_is_refused_with_a_clear_message(api: RunningApi, value: object, code: str) -> None:
    c = api.client()
    refused = c.post("/api/webhooks", json={**HOOK, "ordering": value})
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["code"] == code
    assert error["message"].startswith(MESSAGE), error
    assert c.get("/api/webhooks").json()["items"] == []  # nothing was created
    wid = c.post("/api/webhooks", json={**HOOK, "ordering": "contact"}).json()["id"]
    patched = c.patch(f"/api/webhooks/{wid}", json={"ordering": value})
    assert (patched.status_code, patched.json()["error"]["code"]) == (422, code)
    assert patched.json()["error"]["message"].startswith(MESSAGE)
    assert c.get(f"/api/webhooks/{wid}").json()["ordering"] == "contact"  # unchanged


def test_openapi_documents_the_ordering(api: RunningApi) -> None:
    spec = api.client(api_key=None).get("/openapi.json").json()
    out = spec["components"]["schemas"]["WebhookOut"]["properties"]["ordering"]
    assert out["enum"] == ["none", "contact"] and "publish" in out["description"]
    create = spec["paths"]["/api/webhooks"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "contact" in str(create["properties"]["ordering"])
    patch = spec["paths"]["/api/webhooks/{webhook_id}"]["patch"]["requestBody"]["content"]
    props = patch["application/merge-patch+json"]["schema"]["properties"]
    assert 'null sets "none"' in props["ordering"]["description"]


def test_ordering_is_set_shown_and_cleared_on_the_form(page_api: RunningApi) -> None:
    c, csrf = sign_in(page_api)
    base = {"csrf": csrf, "name": "Ordered", "url": "https://hooks.example.com/in",
            "subscriptions": "SALE_NEW"}  # fmt: skip
    tampered = c.post("/settings/webhooks/new", data={**base, "ordering": "fifo"})
    assert tampered.status_code == 422
    block = tampered.text[tampered.text.index('id="ordering"') :]
    block = block[: block.index("</div>")]
    assert 'id="ordering-error">' + _escaped('Ordering must be "none" or "contact"') in block, block
    hook_id = create_hook(c, csrf, name="Ordered", ordering="contact")
    api = page_api.client()
    assert api.get(f"/api/webhooks/{hook_id}").json()["ordering"] == "contact"
    listing = c.get("/settings/webhooks").text
    assert 'data-ordering="contact">in order per contact<' in listing
    form = c.get(f"/settings/webhooks/{hook_id}/edit").text
    assert re.search(r'name="ordering" value="contact"\s+checked', form)
    r = c.post(f"/settings/webhooks/{hook_id}/edit", data=base)  # unchecked
    assert r.status_code == 303 and api.get(f"/api/webhooks/{hook_id}").json()["ordering"] == "none"
    assert 'data-ordering="contact"' not in c.get("/settings/webhooks").text
    assert not re.search(
        r'name="ordering" value="contact"\s+checked', c.get(f"/settings/webhooks/{hook_id}/edit").text
    )
