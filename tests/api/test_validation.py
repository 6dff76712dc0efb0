"""Bad requests, each refused with a 4xx and its specific error code (issue 3, item 3)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from tests.api.conftest import KEY_A, RunningApi

pytestmark = pytest.mark.kafka

GOOD: dict[str, Any] = {
    "name": "Orders",
    "url": "https://hooks.example.com/in",
    "subscriptions": ["SALE_NEW"],
}
TEN_KB = "x" * 10_000
SECRET_IN_BAD_REQUEST = "short\nsecret-that-must-not-be-echoed"

_MISSING = object()


def body(**changes: Any) -> dict[str, Any]:
    """GOOD with fields replaced; a field set to _MISSING is removed."""
    out = dict(GOOD)
    for k, v in changes.items():
        if v is _MISSING:
            out.pop(k, None)
        else:
            out[k] = v
    return out


@dataclass
class Case:
    id: str
    status: int
    code: str
    json: Any = None
    content: bytes | None = None
    method: str = "POST"
    path: str = "/api/webhooks"
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] | None = None
    api_key: str | None = KEY_A


def create(case_id: str, status: int, code: str, **fields: Any) -> Case:
    return Case(case_id, status, code, json=body(**fields))


def patch(case_id: str, status: int, code: str, doc: Any = None, **kw: Any) -> Case:
    return Case(case_id, status, code, method="PATCH", path="/api/webhooks/{existing}", json=doc, **kw)


CASES = [
    # required fields and types
    create("missing-name", 422, "missing_field", name=_MISSING),
    create("missing-url", 422, "missing_field", url=_MISSING),
    create("missing-subscriptions", 422, "missing_field", subscriptions=_MISSING),
    create("name-number", 422, "invalid_type", name=123),
    create("name-null", 422, "invalid_type", name=None),
    create("url-number", 422, "invalid_type", url=42),
    create("subscriptions-string", 422, "invalid_type", subscriptions="SALE_NEW"),
    create("subscriptions-number-item", 422, "invalid_type", subscriptions=[1]),
    create("subscriptions-object-item", 422, "invalid_type", subscriptions=[{"event": "SALE_NEW"}]),
    create("secret-number", 422, "invalid_type", secret=12345678),
    create("active-string", 422, "invalid_type", active="yes"),
    create("active-number", 422, "invalid_type", active=1),
    # name
    create("name-empty", 422, "name_invalid", name=""),
    create("name-blank", 422, "name_invalid", name="   "),
    create("name-crlf", 422, "name_invalid", name="Orders\r\nX-Injected: 1"),
    create("name-lf", 422, "name_invalid", name="two\nlines"),
    create("name-nul", 422, "name_invalid", name="nul\x00byte"),
    create("name-escape", 422, "name_invalid", name="\x1b[31mred"),
    create("name-tab", 422, "name_invalid", name="tab\there"),
    create("name-line-separator", 422, "name_invalid", name="a\u2028b"),
    create("name-del", 422, "name_invalid", name="del\x7f"),
    create("name-256", 422, "name_too_long", name="n" * 256),
    create("name-10kB", 422, "name_too_long", name=TEN_KB),
    # url
    create("url-empty", 422, "invalid_url", url=""),
    create("url-garbage", 422, "invalid_url", url="not a url"),
    create("url-relative", 422, "invalid_url", url="hooks.example.com/in"),
    create("url-scheme-relative", 422, "invalid_url", url="//hooks.example.com/in"),
    create("url-no-slashes", 422, "invalid_url", url="https:hooks.example.com"),
    create("url-space-in-host", 422, "invalid_url", url="https://hooks example.com/"),
    create("url-crlf", 422, "invalid_url", url="https://hooks.example.com/\r\nHost: evil"),
    create("url-backslash", 422, "invalid_url", url="https://evil.example\\@hooks.example.com/"),
    create("url-bad-port", 422, "invalid_url", url="https://hooks.example.com:99999/"),
    create("url-port-zero", 422, "invalid_url", url="https://hooks.example.com:0/"),
    create("url-bad-ipv6", 422, "invalid_url", url="https://[::1/"),
    create("url-bad-ipv4", 422, "invalid_url", url="https://1.2.3.4.5/"),
    create("url-fragment", 422, "invalid_url", url="https://hooks.example.com/in#frag"),
    create("url-percent-host", 422, "invalid_url", url="https://%31%32%37.0.0.1/"),
    create("url-2049", 422, "url_too_long", url="https://hooks.example.com/" + "p" * 2030),
    create("url-10kB", 422, "url_too_long", url="https://hooks.example.com/" + TEN_KB),
    create("url-http", 422, "url_not_https", url="http://hooks.example.com/in"),
    create("url-http-public-ip", 422, "url_not_https", url="http://8.8.8.8/in"),
    create("url-ftp", 422, "url_not_https", url="ftp://hooks.example.com/in"),
    create("url-javascript", 422, "url_not_https", url="javascript://alert(1)"),
    create("url-userinfo", 422, "url_has_credentials", url="https://user:pw@hooks.example.com/"),
    create("url-user-only", 422, "url_has_credentials", url="https://token@hooks.example.com/"),
    create("url-at-confusion", 422, "url_has_credentials", url="https://hooks.example.com@evil.example/"),
    create("url-127.1", 422, "url_private_address", url="http://127.1"),
    create("url-127.0.0.1-https", 422, "url_private_address", url="https://127.0.0.1/in"),
    create("url-decimal-loopback", 422, "url_private_address", url="http://2130706433/"),
    create("url-hex-loopback", 422, "url_private_address", url="https://0x7f.1/"),
    create("url-octal-loopback", 422, "url_private_address", url="https://0177.0.0.1/"),
    create("url-ipv6-loopback", 422, "url_private_address", url="http://[::1]/"),
    create("url-ipv4-mapped", 422, "url_private_address", url="https://[::ffff:127.0.0.1]/"),
    create("url-nat64-loopback", 422, "url_private_address", url="https://[64:ff9b::7f00:1]/"),
    create("url-metadata", 422, "url_private_address", url="http://169.254.169.254/latest/meta-data/"),
    create("url-private-10", 422, "url_private_address", url="https://10.0.0.5/"),
    create("url-private-192", 422, "url_private_address", url="https://192.168.1.1:8443/x"),
    create("url-unspecified", 422, "url_private_address", url="https://0.0.0.0/"),
    create("url-ula", 422, "url_private_address", url="https://[fd00::1]/"),
    # A public address with a zone index (%25-encoded, RFC 6874): refused for the zone.
    create("url-ipv6-zone", 422, "url_private_address", url="https://[2606:4700:4700::1111%25eth0]/"),
    create("url-localhost", 422, "url_internal_hostname", url="https://localhost/in"),
    create("url-localhost-http", 422, "url_internal_hostname", url="http://localhost:8080/in"),
    create("url-internal", 422, "url_internal_hostname", url="https://metadata.google.internal/"),
    create("url-dot-local", 422, "url_internal_hostname", url="https://printer.local/"),
    create("url-single-label", 422, "url_internal_hostname", url="https://intranet/hooks"),
    create("url-k8s-service", 422, "url_internal_hostname", url="https://kafka.default.svc.cluster.local/"),
    # subscriptions
    create("subscriptions-empty", 422, "subscriptions_empty", subscriptions=[]),
    create("subscriptions-unknown", 422, "subscription_unknown_event", subscriptions=["SALE_NEW", "NOPE"]),
    create("subscriptions-lowercase", 422, "subscription_unknown_event", subscriptions=["sale_new"]),
    create("subscriptions-duplicate", 422, "subscription_duplicate", subscriptions=["SALE_NEW", "SALE_NEW"]),
    # secret
    create("secret-short", 422, "secret_invalid", secret="seven77"),
    create("secret-513", 422, "secret_invalid", secret="s" * 513),
    create("secret-10kB", 422, "secret_invalid", secret=TEN_KB),
    create("secret-control", 422, "secret_invalid", secret=SECRET_IN_BAD_REQUEST),
    create("secret-padded", 422, "secret_invalid", secret=" padded secret "),
    create("secret-whsec-not-base64", 422, "secret_invalid", secret="whsec_not*base64*at*all"),
    create("secret-whsec-too-short", 422, "secret_invalid", secret="whsec_c2hvcnQ="),
    # rateLimit (issue 12): a whole number of requests per second, 1 to 10,000, or null
    create("rate-limit-zero", 422, "rate_limit_out_of_range", rateLimit=0),
    create("rate-limit-10001", 422, "rate_limit_out_of_range", rateLimit=10_001),
    create("rate-limit-negative", 422, "rate_limit_out_of_range", rateLimit=-5),
    create("rate-limit-string", 422, "invalid_type", rateLimit="abc"),
    create("rate-limit-numeric-string", 422, "invalid_type", rateLimit="50"),
    create("rate-limit-float", 422, "invalid_type", rateLimit=1.5),
    create("rate-limit-boolean", 422, "invalid_type", rateLimit=True),
    # fields, bodies, media types
    create("unknown-field", 422, "unknown_field", events=["SALE_NEW"]),
    create("read-only-field", 422, "unknown_field", id="my-own-id"),
    create("unknown-field-10kB", 422, "unknown_field", **{TEN_KB: 1}),
    Case(
        "bad-json",
        400,
        "invalid_json",
        content=b'{"name": "x",',
        headers={"Content-Type": "application/json"},
    ),
    Case(
        "not-utf8",
        400,
        "invalid_json",
        content=b'{"name": "\xff\xfe"}',
        headers={"Content-Type": "application/json"},
    ),
    Case(
        "nan", 400, "invalid_json", content=b'{"active": NaN}', headers={"Content-Type": "application/json"}
    ),
    Case("empty-body", 400, "invalid_json", content=b"", headers={"Content-Type": "application/json"}),
    Case("array-body", 400, "invalid_body", json=[GOOD]),
    Case("string-body", 400, "invalid_body", json="hello"),
    Case("too-big", 413, "body_too_large", json=body(name="n" * 70_000)),
    Case("too-big-chunked", 413, "body_too_large", content=b"generator"),  # sent chunked, see test
    Case(
        "form-post", 415, "unsupported_media_type", content=b"name=x", headers={"Content-Type": "text/plain"}
    ),
    Case("no-content-type", 415, "unsupported_media_type", content=orjson.dumps(GOOD)),
    Case(
        "merge-patch-on-create",
        415,
        "unsupported_media_type",
        content=orjson.dumps(GOOD),
        headers={"Content-Type": "application/merge-patch+json"},
    ),
    # authentication
    Case("no-api-key", 401, "unauthorized", json=GOOD, api_key=None),
    Case("wrong-api-key", 401, "unauthorized", json=GOOD, api_key="key-a-wrong"),
    Case("empty-api-key", 401, "unauthorized", method="GET", api_key=None, headers={"X-API-Key": ""}),
    Case(
        "basic-auth", 401, "unauthorized", method="GET", api_key=None, headers={"Authorization": "Basic YTpi"}
    ),
    Case(
        "wrong-bearer",
        401,
        "unauthorized",
        method="GET",
        api_key=None,
        headers={"Authorization": "Bearer nope"},
    ),
    Case("huge-api-key", 401, "unauthorized", method="GET", api_key="k" * 4000),
    # list parameters, paths, methods
    Case("limit-zero", 400, "invalid_limit", method="GET", params={"limit": "0"}),
    Case("limit-101", 400, "invalid_limit", method="GET", params={"limit": "101"}),
    Case("limit-text", 400, "invalid_limit", method="GET", params={"limit": "ten"}),
    Case("limit-negative", 400, "invalid_limit", method="GET", params={"limit": "-1"}),
    Case("cursor-garbage", 400, "invalid_cursor", method="GET", params={"startingAfter": "not-an-id"}),
    Case("cursor-10kB", 400, "invalid_cursor", method="GET", params={"startingAfter": TEN_KB}),
    Case(
        "get-unknown-id",
        404,
        "not_found",
        method="GET",
        path="/api/webhooks/00000000-0000-7000-8000-000000000000",
    ),
    Case("delete-unknown-id", 404, "not_found", method="DELETE", path="/api/webhooks/nope"),
    Case("patch-unknown-id", 404, "not_found", method="PATCH", path="/api/webhooks/nope", json={"name": "x"}),
    Case("unknown-path", 404, "not_found", method="GET", path="/api/hooks"),
    Case("put-not-allowed", 405, "method_not_allowed", method="PUT", path="/api/webhooks", json=GOOD),
    # merge-patch of an existing webhook
    patch("patch-null-name", 422, "invalid_type", {"name": None}),
    patch("patch-null-subscriptions", 422, "invalid_type", {"subscriptions": None}),
    patch("patch-read-only", 422, "unknown_field", {"createdAt": "2020-01-01T00:00:00Z"}),
    patch("patch-empty-subscriptions", 422, "subscriptions_empty", {"subscriptions": []}),
    patch("patch-loopback-url", 422, "url_private_address", {"url": "http://127.1"}),
    patch("patch-name-crlf", 422, "name_invalid", {"name": "a\r\nb"}),
    patch("patch-active-string", 422, "invalid_type", {"active": "false"}),
    patch("patch-secret-short", 422, "secret_invalid", {"secret": "short"}),
    patch("patch-rate-limit-zero", 422, "rate_limit_out_of_range", {"rateLimit": 0}),
    patch("patch-rate-limit-string", 422, "invalid_type", {"rateLimit": "abc"}),
    patch("patch-array", 400, "invalid_body", [{"op": "replace", "path": "/name", "value": "x"}]),
    patch(
        "patch-json-patch-type",
        415,
        "unsupported_media_type",
        content=b'[{"op": "replace"}]',
        headers={"Content-Type": "application/json-patch+json"},
    ),
]


@pytest.fixture(scope="module")
def existing(module_api: RunningApi) -> dict[str, Any]:
    resp = module_api.client().post("/api/webhooks", json={**GOOD, "secret": "the-existing-secret"})
    assert resp.status_code == 201, resp.text
    doc: dict[str, Any] = resp.json()
    return doc


def _chunks() -> Iterator[bytes]:
    yield b'{"name": "'
    for _ in range(70):
        yield b"n" * 1024
    yield b'"}'


def test_the_table_is_large_and_covers_every_rule() -> None:
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)
    codes = {c.code for c in CASES}
    for code in (
        "missing_field", "invalid_type", "name_invalid", "name_too_long", "invalid_url", "url_too_long",
        "url_not_https", "url_has_credentials", "url_private_address", "url_internal_hostname",
        "subscriptions_empty", "subscription_unknown_event", "subscription_duplicate", "secret_invalid",
        "unknown_field", "invalid_json", "invalid_body", "body_too_large", "unsupported_media_type",
        "unauthorized", "not_found", "invalid_limit", "invalid_cursor", "rate_limit_out_of_range",
    ):  # fmt: skip
        assert code in codes, code


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_request_is_refused_with_its_code(
    case: Case, module_api: RunningApi, existing: dict[str, Any]
) -> None:
    c = module_api.client(api_key=case.api_key, headers=case.headers)
    path = case.path.format(existing=existing["id"])
    kwargs: dict[str, Any] = {"params": case.params}
    if case.id == "too-big-chunked":
        kwargs["content"] = _chunks()
        kwargs["headers"] = {"Content-Type": "application/json"}
    elif case.content is not None:
        kwargs["content"] = case.content
    elif case.json is not None:
        kwargs["json"] = case.json
    resp = c.request(case.method, path, **kwargs)
    assert (resp.status_code, resp.headers.get("content-type")) == (case.status, "application/json"), (
        resp.text
    )
    doc = resp.json()
    assert set(doc) == {"error"} and set(doc["error"]) == {"code", "message"}, doc
    assert doc["error"]["code"] == case.code, doc
    message = doc["error"]["message"]
    assert isinstance(message, str) and 0 < len(message) < 500
    for leak in ("Traceback", 'File "', TEN_KB[:100], SECRET_IN_BAD_REQUEST, "the-existing-secret"):
        assert leak not in resp.text
    if case.status == 401:
        assert resp.headers["www-authenticate"].startswith("Bearer")


def test_refused_requests_changed_nothing(module_api: RunningApi, existing: dict[str, Any]) -> None:
    # Runs after the table (same module): the only webhook is the fixture's, unchanged.
    c = module_api.client()
    assert c.get("/api/webhooks").json() == {"items": [existing], "hasMore": False}
    other = module_api.client(api_key=None, headers={"X-API-Key": "key-b-" + "b2" * 16})
    assert other.get("/api/webhooks").json() == {"items": [], "hasMore": False}


def test_good_requests_pass_the_same_rules(module_api: RunningApi, existing: dict[str, Any]) -> None:
    """The rules refuse what they should and no more (a table of refusals alone cannot show that)."""
    c = module_api.client()
    good_names = ["a", "n" * 255, "Ventes — CRM ✓ 日本語", "with  spaces"]
    good_urls = [
        "https://hooks.example.com/in?token=abc&x=1",
        "https://8.8.8.8:8443/in",
        "https://[2001:4860:4860::8888]/in",
        "https://bücher.example/hook",
        "HTTPS://HOOKS.EXAMPLE.COM/",
        "https://hooks.example.com/" + "p" * (2048 - 26),
    ]
    good_secrets = [None, "12345678", "s" * 512, "whsec_" + "A" * 32, "pässwörd with space"]
    made: list[str] = []
    for name, url, secret in zip(good_names * 2, good_urls, good_secrets * 2, strict=False):
        doc = {"name": name, "url": url, "subscriptions": ["SALE_CANCELED", "CONTACT_OPT_IN"]}
        if secret is not None:
            doc["secret"] = secret
        resp = c.post("/api/webhooks", json=doc)
        assert resp.status_code == 201, (doc, resp.text)
        assert resp.json()["url"] == url and resp.json()["name"] == name
        made.append(resp.json()["id"])
    resp = c.post("/api/webhooks", json={**GOOD, "secret": None, "active": None})  # null = not given
    assert resp.status_code == 201 and resp.json()["active"] is True and "secret" in resp.json()
    made.append(resp.json()["id"])
    for wid in made:
        assert c.delete(f"/api/webhooks/{wid}").status_code == 204


def test_allow_list_admits_http_to_allowed_networks_only(make_api: Callable[..., RunningApi]) -> None:
    api = make_api(allow_networks=("127.0.0.0/8",))
    c = api.client()
    for url in ("http://127.0.0.1:8080/in", "http://127.1/", "http://localhost:9000/x", "https://127.0.0.1/"):
        resp = c.post("/api/webhooks", json={**GOOD, "url": url})
        assert resp.status_code == 201, (url, resp.text)
    for url, code in (
        ("http://[::1]/", "url_private_address"),
        ("http://10.0.0.1/", "url_private_address"),
        ("http://169.254.169.254/", "url_private_address"),
        ("http://hooks.example.com/", "url_not_https"),
        ("https://svc.internal/", "url_internal_hostname"),
    ):
        resp = c.post("/api/webhooks", json={**GOOD, "url": url})
        assert (resp.status_code, resp.json()["error"]["code"]) == (422, code), url


def test_per_account_cap(make_api: Callable[..., RunningApi]) -> None:
    api = make_api(max_webhooks_per_account=2)
    a = api.client()
    first = a.post("/api/webhooks", json=GOOD).json()["id"]
    assert a.post("/api/webhooks", json=GOOD).status_code == 201
    refused = a.post("/api/webhooks", json=GOOD)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "too_many_webhooks"
    # The cap is per account, and deleting makes room again.
    b = api.client(api_key="key-b-" + "b2" * 16)
    assert b.post("/api/webhooks", json=GOOD).status_code == 201
    assert a.delete(f"/api/webhooks/{first}").status_code == 204
    assert a.post("/api/webhooks", json=GOOD).status_code == 201
    assert len(a.get("/api/webhooks").json()["items"]) == 2
