"""The API's pure parts, without a broker: validation rules, API keys, ids, the error shape."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import httpx
import pytest

from api import create_app
from api.auth import ApiKeys
from api.errors import InvalidRequest
from api.service import new_webhook_id
from api.validation import (
    UrlRules,
    check_url,
    parse_create,
    parse_json_object,
    parse_limit,
    parse_patch,
)
from hookline.sealing import generate_key
from hookline.settings import Secret, SettingsError, load_settings
from hookline.signing import generate_secret
from hookline.webhooks import Webhook

NO_ALLOW = UrlRules(())
SENSITIVE = "boom with sensitive detail whsec_AAAA"  # a name, so traceback source lines do not show it
LOOPBACK = UrlRules(("127.0.0.0/8",))


def code_of(fn: Any, *args: Any) -> str:
    try:
        fn(*args)
    except InvalidRequest as exc:
        return exc.code
    return "ok"


@pytest.mark.parametrize(
    ("url", "plain", "allowed"),
    [
        ("https://hooks.example.com/x", "ok", "ok"),
        ("http://hooks.example.com/x", "url_not_https", "url_not_https"),
        ("http://127.0.0.1:8080/x", "url_private_address", "ok"),
        ("http://127.1/", "url_private_address", "ok"),
        ("http://2130706433/", "url_private_address", "ok"),
        ("http://[::ffff:7f00:1]/", "url_private_address", "ok"),
        ("http://localhost:8080/", "url_internal_hostname", "ok"),
        ("http://api.localhost/", "url_internal_hostname", "ok"),
        ("http://[::1]/", "url_private_address", "url_private_address"),  # ::1 is not in 127.0.0.0/8
        ("http://10.1.2.3/", "url_private_address", "url_private_address"),
        ("https://corp.internal/", "url_internal_hostname", "url_internal_hostname"),
        ("https://[2606:4700::1111]/", "ok", "ok"),
    ],
)
def test_url_rules_with_and_without_allow_list(url: str, plain: str, allowed: str) -> None:
    assert (code_of(check_url, url, NO_ALLOW), code_of(check_url, url, LOOPBACK)) == (plain, allowed)


def test_create_defaults_and_canonical_subscription_order() -> None:
    new = parse_create(
        {"name": "n", "url": "https://e.example/x", "subscriptions": ["SALE_NEW", "CONTACT_CREATED"]},
        NO_ALLOW,
    )
    assert new.subscriptions == ("CONTACT_CREATED", "SALE_NEW") and new.active is True and new.secret is None
    assert "hidden-secret" not in repr(parse_create({**_good(), "secret": "hidden-secret"}, NO_ALLOW))


def _good() -> dict[str, Any]:
    return {"name": "n", "url": "https://e.example/x", "subscriptions": ["SALE_NEW"]}


def test_patch_semantics() -> None:
    assert parse_patch({}, NO_ALLOW).empty
    changes = parse_patch({"active": False, "subscriptions": ["SALE_CANCELED"]}, NO_ALLOW)
    assert (changes.active, changes.subscriptions, changes.name) == (False, ("SALE_CANCELED",), None)
    assert code_of(parse_patch, {"url": None}, NO_ALLOW) == "invalid_type"
    assert code_of(parse_patch, {"version": 3}, NO_ALLOW) == "unknown_field"


def test_body_and_parameter_parsing() -> None:
    assert parse_json_object(b'{"a": 1}') == {"a": 1}
    assert code_of(parse_json_object, b"[]") == "invalid_body"
    assert code_of(parse_json_object, b"{") == "invalid_json"
    assert code_of(parse_json_object, b" " * (64 * 1024 + 1)) == "body_too_large"
    assert parse_limit(None) == 10 and parse_limit("100") == 100
    for bad in ("0", "101", "1e2", "٣", " 5"):
        assert code_of(parse_limit, bad) == "invalid_limit", bad


def test_generated_secrets_are_fresh_and_valid() -> None:
    secrets = {generate_secret() for _ in range(50)}
    assert len(secrets) == 50
    assert all(s.startswith("whsec_") and len(s) == 6 + 32 for s in secrets)
    for s in secrets:
        parse_create({**_good(), "secret": s}, NO_ALLOW)  # a generated secret passes our own rules


def test_api_keys_are_hashed_and_map_to_accounts() -> None:
    keys = ApiKeys.parse(Secret("a:key-one, b:key-two ,a:key-three"))
    assert len(keys) == 3 and "key-one" not in repr(keys) and "key-one" not in repr(vars(keys))
    assert keys.account_for("key-one") == "a" and keys.account_for("key-three") == "a"
    assert keys.account_for("key-two") == "b"
    for unknown in (None, "", "key-on", "key-one ", "x" * 10_000):
        assert keys.account_for(unknown) is None
    for bad in ("justakey", "a:", ":key", "bad account:key", "a:k,b:k"):
        with pytest.raises(SettingsError):
            ApiKeys.parse(Secret(bad))


def test_webhook_ids_are_uuid7_carrying_creation_time() -> None:
    ids = [new_webhook_id(1_700_000_000_000 + i) for i in range(100)]
    assert ids == sorted(ids) and len(set(ids)) == 100
    parsed = uuid.UUID(ids[0])
    assert parsed.version == 7 and parsed.int >> 80 == 1_700_000_000_000


class _BrokenView:
    """A view that is ready but fails on every read, to exercise the catch-all handler."""

    ready = True
    error = None

    def get(self, webhook_id: str) -> Webhook | None:
        raise RuntimeError(SENSITIVE)

    def for_account(self, account_id: str) -> list[Webhook]:
        raise RuntimeError(SENSITIVE)

    async def wait_applied_async(self, partition: int, offset: int, timeout: float = 10.0) -> bool:
        return True


class _IdleProducer:
    def produce(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("nothing is written in this test")

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        return 0


def test_unexpected_errors_become_a_generic_json_500(caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings({}, api_keys=Secret("acct:the-key"), secret_key=Secret(generate_key()))
    app = create_app(settings, view=_BrokenView(), producer=_IdleProducer())
    caplog.set_level(logging.DEBUG)

    async def scenario() -> tuple[httpx.Response, httpx.Response]:
        # In-process; the lifespan does not run, which this test does not need (no writes).
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            failed = await client.get("/api/webhooks", headers={"X-API-Key": "the-key"})
            return failed, await client.get("/readyz")

    resp, ready = asyncio.run(scenario())
    assert resp.status_code == 500 and ready.status_code == 200
    assert resp.json()["error"] == {"code": "internal_error", "message": "internal error; it has been logged"}
    assert "Traceback" not in resp.text
    assert "unhandled RuntimeError in GET /api/webhooks" in caplog.text
    assert "sensitive detail" not in caplog.text and "whsec_AAAA" not in caplog.text


def test_missing_sealing_key_is_a_clear_start_up_error() -> None:
    from hookline.sealing import KeyNotConfigured

    with pytest.raises(KeyNotConfigured, match="HOOKLINE_SECRET_KEY is not set"):
        create_app(load_settings({}, api_keys=Secret("acct:the-key")))


class _MemoryView:
    """A ready-or-not view over a dict, for in-process app tests."""

    def __init__(self, ready: bool = True) -> None:
        self.ready = ready
        self.error = None
        self.hooks: dict[str, Webhook] = {}

    def get(self, webhook_id: str) -> Webhook | None:
        return self.hooks.get(webhook_id)

    def for_account(self, account_id: str) -> list[Webhook]:
        return sorted(
            (h for h in self.hooks.values() if h.account_id == account_id), key=lambda h: (h.created_at, h.id)
        )

    async def wait_applied_async(self, partition: int, offset: int, timeout: float = 10.0) -> bool:
        return True


class _RefusingProducer:
    """Acknowledges every write with a delivery error, as librdkafka does when the broker is gone."""

    def __init__(self) -> None:
        self.pending: list[Any] = []

    def produce(
        self, topic: str, value: bytes | None = None, key: bytes | None = None, *, on_delivery: Any
    ) -> None:
        self.pending.append(on_delivery)

    def poll(self, timeout: float) -> int:
        served, self.pending = self.pending, []
        for callback in served:
            callback(_KafkaErr(), None)
        return len(served)

    def flush(self, timeout: float) -> int:
        return self.poll(0)


class _KafkaErr:
    def name(self) -> str:
        return "_MSG_TIMED_OUT"


def _in_process(app: Any, *requests: tuple[str, str, Any]) -> list[httpx.Response]:
    async def scenario() -> list[httpx.Response]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                return [
                    await client.request(m, p, json=body, headers={"X-API-Key": "the-key"})
                    for m, p, body in requests
                ]

    return asyncio.run(scenario())


def _settings() -> Any:
    return load_settings({}, api_keys=Secret("acct:the-key"), secret_key=Secret(generate_key()))


def test_not_ready_view_answers_503_and_readyz_says_so() -> None:
    app = create_app(_settings(), view=_MemoryView(ready=False), producer=_IdleProducer())
    listed, ready = _in_process(app, ("GET", "/api/webhooks", None), ("GET", "/readyz", None))
    assert listed.status_code == 503 and listed.json()["error"]["code"] == "unavailable"
    assert listed.headers["retry-after"] == "1"
    assert ready.status_code == 503


def test_a_write_the_broker_refuses_is_a_503_and_is_counted() -> None:
    view = _MemoryView()
    app = create_app(_settings(), view=view, producer=_RefusingProducer())
    body = {"name": "n", "url": "https://e.example/x", "subscriptions": ["SALE_NEW"]}
    created, metrics = _in_process(app, ("POST", "/api/webhooks", body), ("GET", "/metrics", None))
    assert created.status_code == 503, created.text
    assert created.json()["error"] == {
        "code": "unavailable",
        "message": "the config topic refused the write (_MSG_TIMED_OUT)",
    }
    assert 'hookline_api_config_writes_total{kind="create",outcome="failed"} 1.0' in metrics.text
    assert not view.hooks
