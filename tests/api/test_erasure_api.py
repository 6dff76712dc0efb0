"""Contact erasure and body retention through the API and the web page (issue 13, points 2 and 3).

A real API (uvicorn in a thread, the session broker) over a real log store of each kind, filled
with attempts whose bodies name a contact; bodies expire through a real log sink's purge. Whether an
e-mail is gone is judged on the raw database (tests/logscan.py); the page is checked as HTML and in
a real browser (Debian's chromium, as tests/api/test_page_browser.py drives it).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from playwright.sync_api import expect, sync_playwright

from hookline.logstore import LogStore, open_store
from hookline.records import DeliveryResult
from hookline.settings import Secret
from processors.logsink.app import LogSink
from tests.api.conftest import KEY_A, KEY_B, RunningApi
from tests.api.test_page import sign_in
from tests.api.test_page_browser import CHROMIUM_ARGS, TIMEOUT_MS, _chromium, shot
from tests.logrecords import delivery_result, now_ms
from tests.logscan import in_postgres, in_sqlite_files
from tests.processors.logsink.test_logsink import Results, in_process, one_full_loop

pytestmark = pytest.mark.kafka

DAY_MS = 86_400_000
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
ANN = "ann.erase-me@example.org"
BOB = "bob.keep-me@example.org"
B_ANN = "someone-else@example.org"  # account B's contact that happens to have the same id
# A failure whose error text names no one (the worker writes its own words there, e.g. "HTTP 500").
FAILED: dict[str, Any] = {"status": 500, "final": True, "errorMessage": "HTTP 500"}


@dataclass
class Logs:
    api: RunningApi
    store: LogStore
    scan: Callable[[str], list[str]]


@pytest.fixture(params=["sqlite", "postgresql"])
def logs(
    request: pytest.FixtureRequest, make_api: Callable[..., RunningApi], tmp_path: Path
) -> Iterator[Logs]:
    if request.param == "sqlite":
        path = tmp_path / "logs.sqlite3"
        url = f"sqlite:///{path}"
        scan: Callable[[str], list[str]] = lambda needle: in_sqlite_files(path, needle)  # noqa: E731
    else:
        url = request.getfixturevalue("postgres_url")
        scan = lambda needle: in_postgres(url, needle)  # noqa: E731
    api = make_api(database_url=Secret(url))
    store = open_store(api.settings)
    try:
        yield Logs(api, store, scan)
    finally:
        store.close()


def create(client: httpx.Client) -> str:
    r = client.post(
        "/api/webhooks",
        json={"name": "crm", "url": "https://hooks.example.com/x", "subscriptions": ["CONTACT_CREATED"]},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def attempt(
    account: str, hook: str, message: str, n: int, contact: int, email: str, **kw: Any
) -> DeliveryResult:
    body = orjson.dumps({"contact": {"id": contact, "email": email, "fields": [], "tags": []}})
    fields: dict[str, Any] = {
        "event_type": "CONTACT_CREATED",
        "outcome": "failed",
        "final": False,
        "requestBody": body,
        "responseBodyExcerpt": f'{{"error": "{email} is taken"}}'.encode(),
        "responseHeaders": {"x-contact": email},
        "errorMessage": f"HTTP 409 for {email}",
    }
    fields.update(kw)
    return delivery_result(account, hook, message, n, **fields)


def metric(api: RunningApi, name: str) -> float:
    text = api.client(api_key=None).get("/metrics").text
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def test_an_owner_erases_a_contact_of_its_own_account_only(
    logs: Logs, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    a, b = logs.api.client(KEY_A), logs.api.client(KEY_B)
    hook_a, hook_b = create(a), create(b)
    logs.store.insert_attempts([
        attempt("acct-a", hook_a, "msg_ann_1", 1, 4242, ANN),
        attempt("acct-a", hook_a, "msg_ann_1", 2, 4242, ANN),
        attempt("acct-a", hook_a, "msg_ann_2", 1, 4242, ANN, outcome="delivered", final=True),
        attempt("acct-a", hook_a, "msg_bob_1", 1, 4343, BOB),
        attempt("acct-b", hook_b, "msg_b_1", 1, 4242, B_ANN),
    ])  # fmt: skip
    assert logs.scan(ANN), "the e-mail must be stored before the erasure (else this proves nothing)"

    # Account B erases "its" contact 4242: only B's row goes, A's stay whole.
    r = b.post("/api/contacts/4242/erase")
    assert r.status_code == 200, r.text
    assert (r.json()["messages"], r.json()["attempts"]) == (1, 1)
    assert logs.scan(ANN) and logs.scan(B_ANN) == []
    before = a.get(f"/api/webhooks/{hook_a}/deliveries/msg_ann_1").json()
    assert before["message"]["erased"] is False and before["attempts"][0]["requestBody"]
    assert b.get(f"/api/webhooks/{hook_a}/deliveries/msg_ann_1").status_code == 404  # as before

    r = a.post("/api/contacts/4242/erase")
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"erasureId", "erasedAt", "messages", "attempts"}
    assert (body["messages"], body["attempts"]) == (2, 3) and RFC3339.fullmatch(body["erasedAt"])
    assert r.headers["cache-control"] == "no-store"
    assert logs.scan(ANN) == [] and logs.scan(BOB)

    for message in ("msg_ann_1", "msg_ann_2"):
        detail = a.get(f"/api/webhooks/{hook_a}/deliveries/{message}").json()
        assert detail["message"]["erased"] is True and detail["message"]["erasedAt"] == body["erasedAt"]
        for at in detail["attempts"]:
            assert at["erased"] is True and at["bodyExpired"] is False
            assert at["requestBody"] == at["responseBodyExcerpt"] == "" and at["errorMessage"] is None
            assert at["requestHeaders"] == at["responseHeaders"] == {}
            assert at["responseStatus"] in (200, 503) and at["outcome"] in ("failed", "delivered")
    listed = {
        m["messageId"]: m["erased"] for m in a.get(f"/api/webhooks/{hook_a}/deliveries").json()["items"]
    }
    assert listed == {"msg_ann_1": True, "msg_ann_2": True, "msg_bob_1": False}
    bob = a.get(f"/api/webhooks/{hook_a}/deliveries/msg_bob_1").json()
    assert bob["message"]["erased"] is False and BOB in bob["attempts"][0]["requestBody"]
    # Redelivering an erased message has nothing to send.
    assert a.post(f"/api/webhooks/{hook_a}/deliveries/msg_ann_1/redeliver").status_code == 409

    again = a.post("/api/contacts/4242/erase").json()
    assert (again["messages"], again["attempts"]) == (0, 0)  # nothing left: not an error
    assert [e.requested_by for e in logs.store.erasures("acct-a")] == ["api", "api"]
    assert metric(logs.api, "hookline_api_contact_erasures_total") == 3
    # hookline's own log lines (``hookline api`` keeps uvicorn's access log and httpx at WARNING).
    lines = [rec.getMessage() for rec in caplog.records if rec.name.startswith("hookline")]
    assert any("contact erasure" in line for line in lines)
    assert not [line for line in lines if ANN in line or B_ANN in line or "4242" in line]


@pytest.mark.parametrize(
    ("path", "needle"),
    [
        ("/api/contacts/ann@example.org/erase", "not an e-mail address"),
        (f"/api/contacts/{'7' * 129}/erase", "at most 128 characters"),
        ("/api/contacts/%201/erase", "no spaces around"),
        ("/api/contacts/a%09b/erase", "no control characters"),
    ],
)
def test_a_bad_contact_id_is_400_with_a_clear_message(logs: Logs, path: str, needle: str) -> None:
    r = logs.api.client(KEY_A).post(path)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_contact_id" and needle in r.json()["error"]["message"]
    assert logs.store.erasures() == []


def test_an_unknown_contact_erases_nothing_and_a_missing_key_is_401(logs: Logs) -> None:
    r = logs.api.client(KEY_A).post("/api/contacts/999999/erase")
    assert r.status_code == 200 and (r.json()["messages"], r.json()["attempts"]) == (0, 0)
    assert logs.api.client(api_key=None).post("/api/contacts/1/erase").status_code == 401
    assert logs.api.client("not-a-key").post("/api/contacts/1/erase").status_code == 401


def test_openapi_documents_the_erasure_and_the_new_fields(logs: Logs) -> None:
    doc = logs.api.client(api_key=None).get("/openapi.json").json()
    op = doc["paths"]["/api/contacts/{contact_id}/erase"]["post"]
    assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErasureOut")
    assert {"400", "401"} <= set(op["responses"])
    schemas = doc["components"]["schemas"]
    assert {"erased", "erasedAt"} <= set(schemas["DeliveryOut"]["properties"])
    assert {"bodyExpired", "erased"} <= set(schemas["AttemptOut"]["properties"])


def test_an_expired_body_shows_its_status_but_no_body_in_the_api_and_the_page(logs: Logs) -> None:
    """Bodies kept 1 day, metadata 30: an attempt 2 days old, through a real log sink's purge."""
    a = logs.api.client(KEY_A)
    hook = create(a)
    clock_s = now_ms() // 1000
    now = clock_s * 1000
    logs.store.insert_attempts([
        attempt("acct-a", hook, "msg_old", 1, 4242, ANN, attempted_at=now - 2 * DAY_MS, **FAILED),
        attempt("acct-a", hook, "msg_new", 1, 4343, BOB, attempted_at=now - 3600_000, **FAILED),
    ])  # fmt: skip
    settings = logs.api.settings.replace(log_body_retention_days=1, log_retention_days=30)
    with in_process(LogSink(settings, batch_wait=0.05, clock=lambda: float(clock_s))):
        one_full_loop(logs.store, Results(settings))
    assert logs.scan(ANN) == []  # the only row that held it lost its bodies

    old = a.get(f"/api/webhooks/{hook}/deliveries/msg_old").json()
    assert old["message"]["status"] == "failed" and old["message"]["lastResponseStatus"] == 500
    [at] = old["attempts"]
    assert at["bodyExpired"] is True and at["erased"] is False
    assert at["requestBody"] == at["responseBodyExcerpt"] == "" and at["responseHeaders"] == {}
    assert at["requestHeaders"]["X-Webhook-Event"] == "CONTACT_CREATED" and at["errorMessage"] == "HTTP 500"
    assert at["responseStatus"] == 500 and at["errorClass"] == "http_5xx" and at["latencySeconds"] > 0
    new = a.get(f"/api/webhooks/{hook}/deliveries/msg_new").json()
    assert new["attempts"][0]["bodyExpired"] is False and BOB in new["attempts"][0]["requestBody"]

    page, _csrf = sign_in(logs.api)
    html = page.get(f"/settings/webhooks/{hook}/logs/msg_old").text
    assert "body expired" in html and '<span class="code">500</span>' in html
    assert "body expired" not in page.get(f"/settings/webhooks/{hook}/logs/msg_new").text


def test_the_page_says_erased_and_body_expired_in_a_browser(logs: Logs) -> None:
    chromium = _chromium()
    a = logs.api.client(KEY_A)
    hook = create(a)
    now = now_ms()
    logs.store.insert_attempts([
        attempt("acct-a", hook, "msg_erased", 1, 4242, ANN, status=503),
        attempt("acct-a", hook, "msg_expired", 1, 4343, BOB, attempted_at=now - 2 * DAY_MS, **FAILED),
    ])  # fmt: skip
    assert a.post("/api/contacts/4242/erase").json()["messages"] == 1
    assert logs.store.expire_bodies_older_than(datetime.now(UTC) - timedelta(days=1)).attempts == 1
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        context = browser.new_context(base_url=logs.api.base_url, viewport={"width": 1280, "height": 860})
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        try:
            page.goto("/signin")
            page.get_by_label("API key").fill(KEY_A)
            page.get_by_role("button", name="Sign in").click()
            expect(page).to_have_url(re.compile(r"/settings/webhooks$"))
            page.goto(f"/settings/webhooks/{hook}/logs")
            expect(page.locator('tr[data-message-id="msg_erased"] .chip-erased')).to_have_text("erased")
            expect(page.locator('tr[data-message-id="msg_expired"] .chip-erased')).to_have_count(0)
            page.goto(f"/settings/webhooks/{hook}/logs/msg_erased")
            expect(page.locator("#erased")).to_contain_text("Erased")
            expect(page.locator(".body-state")).to_have_text("erased")
            expect(page.locator(".response-status")).to_have_text("503")
            expect(page.get_by_text(ANN)).to_have_count(0)
            shot(page, "delivery-erased")
            page.goto(f"/settings/webhooks/{hook}/logs/msg_expired")
            expect(page.locator(".body-state")).to_have_text("body expired")
            expect(page.locator(".response-status")).to_have_text("500")
            expect(page.locator("#erased")).to_have_count(0)
            expect(page.get_by_text(BOB)).to_have_count(0)
            shot(page, "delivery-body-expired")
        finally:
            context.close()
            browser.close()
