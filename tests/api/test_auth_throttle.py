"""Guessing API keys: an address that presents too many unknown keys is refused with 429.

The unit tests drive :class:`AuthThrottle` with a fake clock; the others run the real API on
127.0.0.1 and reach it from two loopback addresses (127.0.0.1 and 127.0.0.2) to show that one
address's failures never lock out another.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.throttle import AuthThrottle
from hookline.settings import SettingsError, load_settings
from tests.api.conftest import KEY_A, RunningApi
from tests.api.test_page import csrf_of


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sliding_window_counts_failures_per_address() -> None:
    clock = Clock()
    t = AuthThrottle(3, 60.0, clock=clock)
    for _ in range(2):
        t.failed("10.0.0.1")
    assert t.retry_after("10.0.0.1") is None
    clock.now += 30
    t.failed("10.0.0.1")
    assert t.retry_after("10.0.0.1") == 30  # the first failure ages out 60 s after it happened
    assert t.retry_after("10.0.0.2") is None
    clock.now += 29.5
    assert t.retry_after("10.0.0.1") == 1  # rounded up, never 0
    clock.now += 0.5
    assert t.retry_after("10.0.0.1") is None  # two failures left in the window
    clock.now += 30
    assert t.retry_after("10.0.0.1") is None
    clock.now += 60
    assert t.retry_after("10.0.0.1") is None and len(t) == 0  # forgotten once all aged out


def test_limit_zero_turns_it_off_and_memory_is_bounded() -> None:
    off = AuthThrottle(0, 60.0)
    for _ in range(100):
        off.failed("10.0.0.1")
    assert off.retry_after("10.0.0.1") is None and len(off) == 0

    clock = Clock()
    t = AuthThrottle(2, 60.0, max_clients=100, clock=clock)
    for i in range(1000):
        t.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(t) == 100
    t.failed("10.0.3.231")  # the newest address is kept and now over the limit
    assert t.retry_after("10.0.3.231") == 60
    with pytest.raises(ValueError):
        AuthThrottle(-1, 60.0)
    with pytest.raises(ValueError):
        AuthThrottle(1, 0.0)


def test_settings_are_checked() -> None:
    with pytest.raises(SettingsError, match="HOOKLINE_API_AUTH_FAILURE_LIMIT"):
        load_settings({"HOOKLINE_API_AUTH_FAILURE_LIMIT": "-1"})
    with pytest.raises(SettingsError, match="HOOKLINE_API_AUTH_FAILURE_WINDOW"):
        load_settings({"HOOKLINE_API_AUTH_FAILURE_WINDOW": "0"})
    with pytest.raises(SettingsError, match=r"HOOKLINE_API_TRUSTED_PROXIES: 'proxy\.example'"):
        load_settings({"HOOKLINE_API_TRUSTED_PROXIES": "10.0.0.0/8,proxy.example"})
    s = load_settings({})
    assert (s.api_auth_failure_limit, s.api_auth_failure_window, s.api_trusted_proxies) == (20, 60.0, ())


def _from(api: RunningApi, address: str, key: str | None) -> httpx.Client:
    c = httpx.Client(
        base_url=api.base_url,
        headers={"X-API-Key": key} if key else {},
        timeout=30.0,
        transport=httpx.HTTPTransport(local_address=address),
    )
    api.clients.append(c)
    return c


def metric_value(text: str, sample_name: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == sample_name:
                return float(sample.value)
    raise AssertionError(f"no sample {sample_name}")


@pytest.mark.kafka
def test_api_refuses_an_address_that_guessed_too_often(
    make_api: Callable[..., RunningApi], caplog: pytest.LogCaptureFixture
) -> None:
    api = make_api(api_auth_failure_limit=3, api_auth_failure_window=3.0)
    guesser = _from(api, "127.0.0.1", "key-a-guess")
    owner_here = _from(api, "127.0.0.1", KEY_A)
    owner_elsewhere = _from(api, "127.0.0.2", KEY_A)
    nobody = _from(api, "127.0.0.1", None)

    assert owner_here.get("/api/webhooks").status_code == 200
    for _ in range(5):  # requests without any key are not guesses
        assert nobody.get("/api/webhooks").status_code == 401
    with caplog.at_level(logging.WARNING, logger="hookline.api.auth"):
        for _ in range(3):
            r = guesser.get("/api/webhooks")
            assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    started = time.monotonic()

    refused = guesser.get("/api/webhooks")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "too_many_auth_failures"
    assert 1 <= int(refused.headers["Retry-After"]) <= 3
    # A right key from the same address is refused too: the answer must not confirm a guess.
    assert owner_here.get("/api/webhooks").status_code == 429
    assert owner_here.post("/api/webhooks", json={}).status_code == 429
    # Another address is not affected.
    assert owner_elsewhere.get("/api/webhooks").status_code == 200

    metrics = api.client(api_key=None).get("/metrics").text
    assert metric_value(metrics, "hookline_api_auth_throttled_total") == 3
    assert metric_value(metrics, "hookline_api_auth_failures_total") == 8
    warned = [r.getMessage() for r in caplog.records if r.name == "hookline.api.auth"]
    assert warned == ["client 127.0.0.1 presented 3 unknown API keys within 3s: refused for 3s"]
    assert "key-a-guess" not in caplog.text

    time.sleep(max(0.0, started + 3.2 - time.monotonic()))
    assert owner_here.get("/api/webhooks").status_code == 200  # the window has passed


@pytest.mark.kafka
def test_page_sign_in_is_throttled_by_the_same_counter(make_api: Callable[..., RunningApi]) -> None:
    api = make_api(api_auth_failure_limit=2, api_auth_failure_window=60.0)

    def sign_in(address: str, key: str) -> httpx.Response:
        c = _from(api, address, None)
        form = c.get("/signin")
        return c.post("/signin", data={"csrf": csrf_of(form.text), "api_key": key})

    assert sign_in("127.0.0.1", "wrong-1").status_code == 401
    assert _from(api, "127.0.0.1", "wrong-2").get("/api/webhooks").status_code == 401  # API counts too
    refused = sign_in("127.0.0.1", KEY_A)
    assert refused.status_code == 429
    assert "Too many wrong API keys were tried from your address" in refused.text
    assert KEY_A not in refused.text
    assert int(refused.headers["Retry-After"]) in range(55, 61)
    assert sign_in("127.0.0.2", KEY_A).status_code == 303  # signed in from elsewhere


@pytest.mark.kafka
def test_x_forwarded_for_counts_only_from_a_trusted_proxy(make_api: Callable[..., RunningApi]) -> None:
    def via(api: RunningApi, forwarded_for: str, key: str) -> int:
        c = _from(api, "127.0.0.1", key)
        return c.get("/api/webhooks", headers={"X-Forwarded-For": forwarded_for}).status_code

    behind = make_api(api_auth_failure_limit=2, api_trusted_proxies=("127.0.0.0/8",))
    assert [via(behind, "203.0.113.5", "guess") for _ in range(3)] == [401, 401, 429]
    assert via(behind, "203.0.113.5", KEY_A) == 429
    assert via(behind, "203.0.113.6", KEY_A) == 200  # another client behind the same proxy

    direct = make_api(api_auth_failure_limit=2)  # nobody trusted: the header is the client's word
    assert [via(direct, f"203.0.113.{i}", "guess") for i in range(3)] == [401, 401, 429]
    assert via(direct, "203.0.113.9", KEY_A) == 429
