"""The delivery logs API against a log store this test fills: listing, filters, detail, sends.

The pipeline itself (router, workers, log sink) is in ``test_deliveries_pipeline.py``.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from api.deliveries import body_text, sample_payload
from hookline.logstore import LogStore, open_store
from hookline.settings import Secret
from hookline.signing import TEST_HEADER, Signer, message_id
from hookline.webhooks import EVENT_TYPES
from tests.api.conftest import KEY_A, RunningApi
from tests.logrecords import delivery_result, now_ms
from tests.support import TopicReader, wait_until

RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
PAYLOAD_KEYS = {
    "CONTACT_CREATED": {"contact"},
    "CONTACT_TAG_ADDED": {"contact", "tag"},
    "CONTACT_TAG_REMOVED": {"contact", "tag"},
    "CONTACT_OPT_IN": {"contact", "funnelStep"},
    "SALE_NEW": {"customer", "order", "pricePlan"},
    "SALE_CANCELED": {"customer", "order", "pricePlan", "cancellation"},
}
LIST_KEYS = {
    "messageId", "eventType", "eventId", "eventOccurredAt", "status", "lastOutcome", "attempts",
    "lastAttempt", "lastResponseStatus", "lastErrorClass", "firstAttemptAt", "lastAttemptAt", "trigger",
    "nextRetryAt", "url", "erased", "erasedAt",
}  # fmt: skip


@pytest.fixture
def logs_api(make_api: Callable[..., RunningApi], tmp_path: Path) -> Iterator[tuple[RunningApi, LogStore]]:
    api = make_api(database_url=Secret(f"sqlite:///{tmp_path}/logs.sqlite3"))
    store = open_store(api.settings)
    try:
        yield api, store
    finally:
        store.close()


def _create(client: httpx.Client, subscriptions: list[str] | None = None) -> str:
    r = client.post(
        "/api/webhooks",
        json={
            "name": "logs",
            "url": "https://hooks.example.com/x",
            "subscriptions": subscriptions or ["SALE_NEW"],
        },
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _error(r: httpx.Response) -> tuple[int, str]:
    return r.status_code, str(r.json()["error"]["code"])


def _metric(api: RunningApi, sample: str) -> float:
    text = api.client().get("/metrics").text
    m = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


class Tasks:
    """The delivery topic, read back."""

    def __init__(self, api: RunningApi) -> None:
        self.reader = TopicReader(api.settings, "webhook-deliveries")

    def wait(self, count: int) -> list[dict[str, Any]]:
        wait_until(
            lambda: self.reader.poll(0.1) is not None and len(self.reader.records) >= count,
            60,
            f"{count} tasks",
        )
        return self.reader.decoded("DeliveryTask")

    def close(self) -> None:
        self.reader.close()


# -- listing and detail -----------------------------------------------------------------------


@pytest.mark.kafka
def test_list_is_newest_first_filters_and_pages_without_gaps(logs_api: tuple[RunningApi, LogStore]) -> None:
    api, store = logs_api
    a = api.client(KEY_A)
    hook = _create(a)
    t = now_ms() - 100_000
    kinds = ["delivered", "retrying", "failed", "skipped", "dead_lettered"]
    records, expected = [], []
    for i in range(25):
        msg = f"msg_{i:02d}_{uuid.uuid4().hex[:6]}"
        kind = kinds[i % len(kinds)]
        event = "SALE_NEW" if i % 2 else "CONTACT_CREATED"
        at = t + i * 1000
        if kind == "retrying":
            records.append(
                delivery_result(
                    "acct-a",
                    hook,
                    msg,
                    1,
                    attempted_at=at,
                    outcome="failed",
                    final=False,
                    nextRetryAt=at + 5000,
                    event_type=event,
                )
            )
        else:
            outcome = "failed" if kind == "failed" else kind
            records.append(
                delivery_result(
                    "acct-a", hook, msg, 1, attempted_at=at, outcome=outcome, event_type=event, final=True
                )
            )
        expected.append((msg, "failed" if kind == "dead_lettered" else kind, event))
    store.insert_attempts(records)
    newest_first = [m for m, _, _ in reversed(expected)]

    first = a.get(f"/api/webhooks/{hook}/deliveries")
    assert first.status_code == 200, first.text
    body = first.json()
    assert [m["messageId"] for m in body["items"]] == newest_first[:10] and body["hasMore"] is True
    item = body["items"][0]
    assert set(item) == LIST_KEYS
    assert RFC3339.fullmatch(item["firstAttemptAt"]) and RFC3339.fullmatch(item["lastAttemptAt"])

    for limit in (7, 25, 100):
        seen: list[str] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": limit}
            if cursor:
                params["startingAfter"] = cursor
            page = a.get(f"/api/webhooks/{hook}/deliveries", params=params).json()
            seen += [m["messageId"] for m in page["items"]]
            if not page["hasMore"]:
                break
            cursor = page["items"][-1]["messageId"]
        assert seen == newest_first, limit

    for status in ("delivered", "retrying", "failed", "skipped"):
        got = a.get(f"/api/webhooks/{hook}/deliveries", params={"status": status, "limit": 100}).json()[
            "items"
        ]
        assert [m["messageId"] for m in got] == [m for m, s, _ in reversed(expected) if s == status], status
        assert {m["status"] for m in got} == {status}
    retrying = a.get(f"/api/webhooks/{hook}/deliveries", params={"status": "retrying", "limit": 1}).json()
    assert retrying["items"][0]["nextRetryAt"] is not None
    failed = a.get(f"/api/webhooks/{hook}/deliveries", params={"status": "failed", "limit": 100}).json()
    dead = [m for m in failed["items"] if m["lastOutcome"] == "dead_lettered"]
    assert len(dead) == 5
    sales = a.get(
        f"/api/webhooks/{hook}/deliveries", params={"event": "SALE_NEW", "status": "delivered"}
    ).json()
    assert [m["messageId"] for m in sales["items"]] == [
        m for m, s, e in reversed(expected) if e == "SALE_NEW" and s == "delivered"
    ]

    bad = f"/api/webhooks/{hook}/deliveries"
    assert _error(a.get(bad, params={"status": "pending"})) == (422, "invalid_status")
    assert _error(a.get(bad, params={"event": "SALE_OLD"})) == (422, "invalid_event_type")
    assert _error(a.get(bad, params={"limit": "0"})) == (400, "invalid_limit")
    assert _error(a.get(bad, params={"limit": "101"})) == (400, "invalid_limit")
    assert _error(a.get(bad, params={"startingAfter": "msg_nope"})) == (400, "invalid_cursor")
    assert _error(a.get(bad, params={"startingAfter": "x" * 500})) == (400, "invalid_cursor")


@pytest.mark.kafka
def test_detail_shows_every_attempt_with_bodies_and_headers(logs_api: tuple[RunningApi, LogStore]) -> None:
    api, store = logs_api
    a = api.client(KEY_A)
    hook = _create(a)
    t = now_ms()
    msg, binary = "msg_detail", "msg_binary"
    body = orjson.dumps({"order": {"id": 11, "note": "café ✓"}})
    store.insert_attempts(
        [
            delivery_result("acct-a", hook, msg, 1, attempted_at=t - 3000, outcome="failed", final=False,
                            status=500, requestBody=body, responseBodyExcerpt=b"boom", nextRetryAt=t - 2500),
            delivery_result("acct-a", hook, msg, 2, attempted_at=t - 2000, outcome="failed", final=False,
                            responseStatus=None, errorClass="timeout", errorMessage="no answer within 10s",
                            requestBody=body, nextRetryAt=t - 1000),
            # A truncated excerpt that ends inside "é" (0xC3 0xA9): shown as text, the broken end dropped.
            delivery_result("acct-a", hook, msg, 3, attempted_at=t - 1000, requestBody=body,
                            responseBodyExcerpt="voilà é".encode()[:-1], responseBodyTruncated=True),
            delivery_result("acct-a", hook, binary, 1, attempted_at=t, requestBody=b"\xff\xfe\x00",
                            responseBodyExcerpt=b"\x80ok"),
        ]
    )  # fmt: skip
    r = a.get(f"/api/webhooks/{hook}/deliveries/{msg}")
    assert r.status_code == 200, r.text
    doc = r.json()
    assert set(doc) == {"message", "attempts"}
    assert doc["message"]["messageId"] == msg and doc["message"]["attempts"] == 3
    assert doc["message"]["status"] == "delivered" and doc["message"]["lastResponseStatus"] == 200
    attempts = doc["attempts"]
    assert [x["attempt"] for x in attempts] == [1, 2, 3]
    assert [x["outcome"] for x in attempts] == ["failed", "failed", "delivered"]
    first, timeout, last = attempts
    assert first["requestBody"] == body.decode() and first["requestBodyEncoding"] == "utf-8"
    assert first["requestHeaders"]["X-Webhook-Signature"] == "***"  # as stored: the worker redacts
    assert (first["responseStatus"], first["responseBodyExcerpt"], first["errorClass"]) == (
        500,
        "boom",
        "http_5xx",
    )
    assert RFC3339.fullmatch(first["nextRetryAt"]) and first["final"] is False
    assert (timeout["responseStatus"], timeout["errorClass"]) == (None, "timeout")
    assert timeout["errorMessage"] == "no answer within 10s"
    assert last["responseBodyExcerpt"] == "voilà " and last["responseBodyTruncated"] is True
    assert last["latencySeconds"] == pytest.approx(0.042) and last["trigger"] == "automatic"
    assert set(first) >= {"attemptId", "attemptedAt", "url", "responseHeaders", "responseBodyExcerptEncoding"}

    raw = a.get(f"/api/webhooks/{hook}/deliveries/{binary}").json()["attempts"][0]
    assert raw["requestBodyEncoding"] == "base64"
    assert base64.b64decode(raw["requestBody"]) == b"\xff\xfe\x00"
    assert raw["responseBodyExcerptEncoding"] == "base64"
    assert _error(a.get(f"/api/webhooks/{hook}/deliveries/msg_unknown")) == (404, "not_found")


# -- sends --------------------------------------------------------------------------------------


@pytest.mark.kafka
def test_redeliver_produces_one_manual_task_with_the_stored_payload(
    logs_api: tuple[RunningApi, LogStore],
) -> None:
    api, store = logs_api
    a = api.client(KEY_A)
    hook = _create(a)
    assert a.patch(f"/api/webhooks/{hook}", json={"name": "renamed"}).status_code == 200  # version 2
    t = now_ms()
    body = orjson.dumps({"customer": {"id": 3}, "order": {"id": 11}})
    msg = message_id("evt-redeliver", hook)
    common: dict[str, Any] = {"requestBody": body, "eventId": "evt-redeliver", "eventOccurredAt": t - 60_000}
    store.insert_attempts(
        [
            delivery_result(
                "acct-a", hook, msg, 1, attempted_at=t - 3000, outcome="failed", final=False, **common
            ),
            delivery_result(
                "acct-a", hook, msg, 2, attempted_at=t - 2000, outcome="failed", final=False, **common
            ),
            delivery_result("acct-a", hook, msg, 3, attempted_at=t - 1000, outcome="dead_lettered", **common),
            delivery_result("acct-a", hook, "msg_cut", 1, requestBody=body[:-5]),  # the log kept a prefix
            delivery_result("acct-a", hook, "msg_empty", 1, requestBody=b""),
            delivery_result("acct-a", hook, "msg_test", 1, requestBody=body, trigger="test"),
        ]
    )
    tasks = Tasks(api)
    try:
        r = a.post(f"/api/webhooks/{hook}/deliveries/{msg}/redeliver")
        assert r.status_code == 202, r.text
        assert r.json() == {"messageId": msg, "eventType": "SALE_NEW", "trigger": "manual", "attempt": 4}
        [task] = tasks.wait(1)
        assert tasks.reader.records[0].key() == hook.encode()
        assert task["payload"] == body  # the very bytes, so the signatures cover what was sent before
        assert (task["messageId"], task["eventId"], task["eventType"]) == (msg, "evt-redeliver", "SALE_NEW")
        assert (task["attempt"], task["trigger"], task["configVersion"]) == (4, "manual", 2)
        assert (task["eventOccurredAt"], task["accountId"], task["dueAt"]) == (t - 60_000, "acct-a", 0)

        # A test message sent again is still a test (X-Webhook-Test), never a sample passed off as real.
        r = a.post(f"/api/webhooks/{hook}/deliveries/msg_test/redeliver")
        assert r.status_code == 202 and r.json()["trigger"] == "test" and r.json()["attempt"] == 2
        _, again = tasks.wait(2)
        assert (again["messageId"], again["trigger"], again["attempt"]) == ("msg_test", "test", 2)

        assert _error(a.post(f"/api/webhooks/{hook}/deliveries/msg_cut/redeliver")) == (
            409,
            "payload_incomplete",
        )
        assert _error(a.post(f"/api/webhooks/{hook}/deliveries/msg_empty/redeliver")) == (
            409,
            "payload_unavailable",
        )
        assert a.patch(f"/api/webhooks/{hook}", json={"active": False}).status_code == 200
        assert _error(a.post(f"/api/webhooks/{hook}/deliveries/{msg}/redeliver")) == (409, "webhook_inactive")
        tasks.reader.poll(0.5)
        assert len(tasks.reader.records) == 2  # refused sends produced nothing
        assert _metric(api, 'hookline_api_sends_total{outcome="ok",trigger="manual"}') == 1
        assert _metric(api, 'hookline_api_sends_total{outcome="ok",trigger="test"}') == 1
    finally:
        tasks.close()


@pytest.mark.kafka
def test_send_test_produces_a_sample_of_the_type_marked_test(logs_api: tuple[RunningApi, LogStore]) -> None:
    api, _ = logs_api
    a = api.client(KEY_A)
    hook = _create(a, ["CONTACT_TAG_ADDED", "SALE_NEW"])
    tasks = Tasks(api)
    events = TopicReader(api.settings, "sale-events"), TopicReader(api.settings, "contact-events")
    try:
        sent = [a.post(f"/api/webhooks/{hook}/test")]  # no body: the first subscribed event
        sent.append(a.post(f"/api/webhooks/{hook}/test", json={"eventType": None}))
        for kind in EVENT_TYPES:
            sent.append(a.post(f"/api/webhooks/{hook}/test", json={"eventType": kind}))
        assert a.patch(f"/api/webhooks/{hook}", json={"active": False}).status_code == 200
        # A test is the owner's explicit request: it goes to an inactive webhook too (so does the worker).
        sent.append(a.post(f"/api/webhooks/{hook}/test", json={"eventType": "SALE_NEW"}))
        assert [r.status_code for r in sent] == [202] * len(sent), [r.text for r in sent]
        kinds = ["CONTACT_TAG_ADDED", "CONTACT_TAG_ADDED", *EVENT_TYPES, "SALE_NEW"]
        assert [r.json()["eventType"] for r in sent] == kinds
        produced = tasks.wait(len(sent))
        by_id = {t["messageId"]: t for t in produced}
        assert len(by_id) == len(sent)  # a fresh message id per test
        for r in sent:
            answer = r.json()
            assert answer["trigger"] == "test" and answer["attempt"] == 1
            task = by_id[answer["messageId"]]
            assert task["eventId"].startswith("test-")
            assert task["messageId"] == message_id(task["eventId"], hook)
            assert (task["trigger"], task["attempt"], task["eventType"]) == ("test", 1, answer["eventType"])
            assert task["webhookId"] == hook and task["accountId"] == "acct-a"
            assert set(orjson.loads(task["payload"])) == PAYLOAD_KEYS[answer["eventType"]]
        assert {t["configVersion"] for t in produced} == {1, 2}

        url = f"/api/webhooks/{hook}/test"
        assert _error(a.post(url, json={"eventType": "SALE_OLD"})) == (422, "invalid_event_type")
        assert _error(a.post(url, json={"eventType": 5})) == (422, "invalid_type")
        assert _error(a.post(url, json={"eventType": "SALE_NEW", "when": "now"})) == (422, "unknown_field")
        assert _error(a.post(url, json=["SALE_NEW"])) == (400, "invalid_body")
        assert _error(a.post(url, content=b"{", headers={"content-type": "application/json"})) == (
            400,
            "invalid_json",
        )
        assert _error(a.post(url, content=b"SALE_NEW", headers={"content-type": "text/plain"})) == (
            415, "unsupported_media_type"
        )  # fmt: skip
        # No event went to the domain topics: a test never reaches other webhooks through the router.
        assert events[0].poll(0.3) == [] and events[1].poll(0.3) == []
        assert _metric(api, 'hookline_api_sends_total{outcome="ok",trigger="test"}') == len(sent)
    finally:
        tasks.close()
        for reader in events:
            reader.close()


@pytest.mark.kafka
def test_an_unreachable_log_store_answers_503(make_api: Callable[..., RunningApi]) -> None:
    api = make_api(database_url=Secret("sqlite:////proc/hookline-nowhere/logs.sqlite3"))
    a = api.client(KEY_A)
    hook = _create(a)
    for r in (
        a.get(f"/api/webhooks/{hook}/deliveries"),
        a.get(f"/api/webhooks/{hook}/deliveries/msg_x"),
        a.post(f"/api/webhooks/{hook}/deliveries/msg_x/redeliver"),
    ):
        assert _error(r) == (503, "unavailable") and r.headers["retry-after"] == "1"
    assert _metric(api, "hookline_api_log_store_errors_total") == 3
    assert a.post(f"/api/webhooks/{hook}/test").status_code == 202  # a test needs no log


@pytest.mark.kafka
def test_openapi_documents_the_logs_endpoints(api: RunningApi) -> None:
    doc = api.client(api_key=None).get("/openapi.json").json()
    paths = doc["paths"]
    base = "/api/webhooks/{webhook_id}"
    listing = paths[f"{base}/deliveries"]["get"]
    assert {p["name"] for p in listing["parameters"]} >= {
        "webhook_id",
        "status",
        "event",
        "limit",
        "startingAfter",
    }
    assert listing["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/DeliveryList"
    )
    detail = paths[f"{base}/deliveries/{{message_id}}"]["get"]
    assert detail["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/DeliveryDetailOut"
    )
    redeliver = paths[f"{base}/deliveries/{{message_id}}/redeliver"]["post"]
    assert {"202", "404", "409"} <= set(redeliver["responses"])
    test = paths[f"{base}/test"]["post"]
    assert "202" in test["responses"] and test["requestBody"]["required"] is False
    assert "eventType" in test["requestBody"]["content"]["application/json"]["schema"]["properties"]
    schemas = doc["components"]["schemas"]
    assert "requestBodyEncoding" in schemas["AttemptOut"]["properties"]
    assert set(schemas["DeliveryOut"]["properties"]) == LIST_KEYS


# -- pure parts ---------------------------------------------------------------------------------


def test_body_text_is_utf8_or_base64() -> None:
    assert body_text(b'{"a": "\xc3\xa9"}') == ('{"a": "é"}', "utf-8")
    assert body_text(b"") == ("", "utf-8")
    assert body_text(b"\xff") == ("/w==", "base64")
    assert body_text("é".encode()[:1], truncated=True) == ("", "utf-8")  # cut inside the last character
    assert body_text("é".encode()[:1]) == ("ww==", "base64")  # not truncated: the bytes are what they are
    assert body_text(b"\xffabc", truncated=True)[1] == "base64"  # broken in the middle, not at the cut


def test_a_test_send_is_marked_on_the_wire_and_nothing_else_is() -> None:
    signer = Signer(["whsec_" + base64.b64encode(b"k" * 24).decode()])
    args: dict[str, Any] = dict(
        event_type="SALE_NEW", msg_id="msg_x", attempt_id="att_1", event_time_ms=0, timestamp=1, body=b"{}",
        user_agent="hookline/test",
    )  # fmt: skip
    plain, marked = signer.headers(**args), signer.headers(**args, test=True)
    assert TEST_HEADER not in dict(plain)
    assert marked == [*plain, ("X-Webhook-Test", "true")]


@pytest.mark.parametrize("kind", EVENT_TYPES)
def test_sample_payloads_have_the_shape_of_real_ones(kind: str) -> None:
    body, occurred_at = sample_payload(kind, "acct-a")
    doc = orjson.loads(body)
    assert set(doc) == PAYLOAD_KEYS[kind]
    assert abs(occurred_at - now_ms()) < 60_000
    if "contact" in doc:
        assert "@" in doc["contact"]["email"] and RFC3339.fullmatch(doc["contact"]["registeredAt"])
    if kind == "SALE_CANCELED":
        assert doc["cancellation"]["reason"] in ("subscription_canceled", "refunded")
