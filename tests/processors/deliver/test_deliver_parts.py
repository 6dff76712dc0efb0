"""The delivery worker's parts without Kafka: offsets, records, limits, skip rules, the task handler
with fakes, and the HTTP sender against real local servers (plain and TLS)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import ipaddress
import random
import ssl
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client import CollectorRegistry

from hookline.addresses import AddressPolicy, BlockedAddress, DnsError
from hookline.metrics import DeliveryMetrics
from hookline.records import EXCERPT_BYTES, Exchange
from hookline.sealing import Sealer, generate_key
from hookline.settings import Secret
from hookline.webhooks import Subscription, Webhook
from processors.deliver.exchange import bounded_headers, public_url
from processors.deliver.handler import (
    Abandoned,
    DeliveryTopics,
    Record,
    SignerCache,
    TaskHandler,
    skip_reason,
    status_class,
)
from processors.deliver.limits import ConcurrencyLimits
from processors.deliver.offsets import PartitionOffsets
from processors.deliver.ratelimit import RateLimits
from processors.deliver.sender import HttpSender, classify_error
from schemas.codec import decode
from tests.logrecords import delivery_task
from tests.processors.deliver.receivers import Hang, Receiver, Reply

# --- offsets ----------------------------------------------------------------------------------------


def test_offsets_store_only_behind_finished_work() -> None:
    p = PartitionOffsets()
    assert p.to_store() is None
    for off in (10, 11, 12, 13):
        p.start(off)
    assert p.committable == 10 and p.to_store() == 10
    assert not p.finish(12) and p.committable == 10  # a gap: 10 and 11 are still running
    assert not p.finish(11)
    assert p.finish(10) and p.committable == 13  # 10..12 done, 13 still running
    p.stored = p.to_store()
    assert p.to_store() is None
    assert p.finish(13) and p.committable == 14 and len(p) == 0
    p.start(20)  # a gap in the offsets themselves (deleted records) is fine
    assert p.committable == 14
    assert p.finish(20) and p.committable == 21


def test_offsets_refuse_repeats_and_unknown() -> None:
    p = PartitionOffsets()
    p.start(5)
    assert not p.is_new(5) and not p.is_new(4) and p.is_new(6)
    with pytest.raises(ValueError):
        p.start(5)
    with pytest.raises(ValueError):
        p.finish(6)


# --- records ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pw@example.com/hook?token=abc#frag", "https://example.com/hook"),
        ("http://example.com:8080/a/b", "http://example.com:8080/a/b"),
        ("https://tok@[2001:db8::1]:8443/x?y", "https://[2001:db8::1]:8443/x"),
        ("https://EXAMPLE.com", "https://example.com"),
        ("http://example.com:99999/", "<invalid url>"),
    ],
)
def test_public_url_strips_credentials_query_and_fragment(url: str, shown: str) -> None:
    assert public_url(url) == shown


def test_bounded_headers() -> None:
    many = [(f"h{i}", "v" * 2000) for i in range(100)] + [("h0", "again")]
    out = bounded_headers(many)
    assert len(out) == 64 and all(len(v) <= 1024 for v in out.values())
    assert bounded_headers([("Set-Cookie", "a"), ("Set-Cookie", "b")]) == {"Set-Cookie": "a, b"}


# --- limits -----------------------------------------------------------------------------------------


def test_limits_cap_each_key_and_the_total() -> None:
    async def run() -> tuple[int, dict[str, int], int]:
        limits = ConcurrencyLimits(total=5, per_key=2)
        peak_total = 0
        peak: dict[str, int] = {}
        now: dict[str, int] = {}

        async def one(key: str) -> None:
            nonlocal peak_total
            async with limits.slot(key):
                now[key] = now.get(key, 0) + 1
                peak[key] = max(peak.get(key, 0), now[key])
                peak_total = max(peak_total, limits.in_flight)
                await asyncio.sleep(0.01)
                now[key] -= 1

        await asyncio.gather(*(one(k) for k in "aaaaaabbbbbbccccccdddddd"))
        return peak_total, peak, len(limits._shares)

    peak_total, peak, left = asyncio.run(run())
    assert peak_total == 5 and max(peak.values()) == 2 and left == 0


def test_a_busy_key_does_not_hold_global_slots_while_it_waits() -> None:
    async def run() -> float:
        limits = ConcurrencyLimits(total=4, per_key=2)
        release = asyncio.Event()

        async def stuck() -> None:
            async with limits.slot("slow"):
                await release.wait()

        blockers = [asyncio.create_task(stuck()) for _ in range(50)]  # 2 run, 48 wait for their share
        await asyncio.sleep(0.01)
        started = time.monotonic()
        async with limits.slot("fast"):  # two global slots are still free
            took = time.monotonic() - started
        release.set()
        await asyncio.gather(*blockers)
        return took

    assert asyncio.run(run()) < 0.05


# --- skip rules ---------------------------------------------------------------------------------------


def _hook(**kw: Any) -> Webhook:
    sealer = Sealer.from_secret(Secret(generate_key()))
    base: dict[str, Any] = dict(
        id="wh", account_id="a", name="n", url="http://127.0.0.1:1/x",
        secret=sealer.seal("wh", "s3cret-value"),
        subscriptions=(Subscription("SALE_NEW"),), active=True, created_at=0, updated_at=0, version=1,
    )
    base.update(kw)
    return Webhook(**base)


def test_skip_rules() -> None:
    task = _task()
    assert skip_reason(None, task) == "webhook deleted"
    assert skip_reason(_hook(), task) is None
    assert skip_reason(_hook(active=False, disabled_reason="410 Gone"), task) == "webhook inactive (410 Gone)"
    assert skip_reason(_hook(subscriptions=(Subscription("CONTACT_CREATED"),)), task) == (
        "not subscribed to SALE_NEW"
    )
    assert skip_reason(_hook(subscriptions=(Subscription("SALE_NEW", 5, "x"),)), task) == (
        "subscription to SALE_NEW disabled"
    )
    # Test and manual sends are the owner's explicit requests: only a deleted webhook stops them.
    for trigger in ("test", "manual"):
        assert skip_reason(_hook(active=False), dataclasses.replace(task, trigger=trigger)) is None
        assert skip_reason(None, dataclasses.replace(task, trigger=trigger)) == "webhook deleted"


def test_status_class() -> None:
    assert [status_class(s) for s in (None, 101, 200, 302, 404, 503, 600)] == [
        "none", "none", "2xx", "3xx", "4xx", "5xx", "none"
    ]


def test_signer_cache_signs_with_the_previous_secret_until_it_expires() -> None:
    sealer = Sealer.from_secret(Secret(generate_key()))
    cache = SignerCache(sealer)
    hook = _hook(secret=sealer.seal("wh", "new-secret"), previous_secret=sealer.seal("wh", "old-secret"),
                 previous_secret_expires_at=1000)
    body = b"{}"
    before = cache.get(hook, 999).standard_signature("m", 1, body)
    after = cache.get(hook, 1000).standard_signature("m", 1, body)
    assert len(before.split(" ")) == 2 and len(after.split(" ")) == 1
    assert after == before.split(" ")[0]
    assert cache.get(hook, 999) is cache.get(hook, 999)


# --- error classes ------------------------------------------------------------------------------------


def _chained(outer: BaseException, inner: BaseException) -> BaseException:
    outer.__cause__ = inner
    return outer


@pytest.mark.parametrize(
    ("exc", "cls"),
    [
        (BlockedAddress("x"), "blocked_address"),
        (DnsError("h", "no"), "dns"),
        (TimeoutError(), "timeout"),
        # httpx-aiohttp calls a refused connection a ConnectTimeout; the cause decides.
        (_chained(httpx.ConnectTimeout("x"), ConnectionRefusedError(111, "refused")), "connect"),
        (_chained(httpx.ReadError("x"), ssl.SSLCertVerificationError("bad cert")), "tls"),
        (_chained(httpx.ReadTimeout("x"), aiohttp.SocketTimeoutError("slow")), "timeout"),
        (_chained(httpx.ReadError("x"), aiohttp.ServerDisconnectedError()), "protocol"),
        (httpx.RemoteProtocolError("x"), "protocol"),
        (httpx.UnsupportedProtocol("ftp"), "connect"),
    ],
)
def test_classify_error(exc: BaseException, cls: str) -> None:
    assert classify_error(exc) == cls


# --- the sender against real local servers ------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def _send(url: str, *, policy: AddressPolicy | None = None, timeout: float = 3.0,
          ssl_context: ssl.SSLContext | None = None, times: int = 1) -> list[Exchange]:
    async def run() -> list[Exchange]:
        async with HttpSender(policy=policy or AddressPolicy(["127.0.0.0/8"]), connect_timeout=1.0,
                              attempt_timeout=timeout, ssl_context=ssl_context) as sender:
            return [await sender.send(url, b'{"a":1}', [("Content-Type", "application/json"),
                                                         ("X-Webhook-Signature", "abc")], attempt_id="att")
                    for _ in range(times)]

    return asyncio.run(run())


def test_sender_posts_exact_body_and_reports_the_response(receiver: Receiver) -> None:
    receiver.set("/ok", lambda n, g: Reply(201, {"X-Reply": "yes"}, b"hello"))
    [ex] = _send(receiver.url("/ok") + "?q=1")
    assert ex.status == 201 and ex.excerpt == b"hello" and not ex.truncated and ex.error_class is None
    assert ex.response_headers["X-Reply"] == "yes"
    assert ex.request_headers == {"Content-Type": "application/json", "X-Webhook-Signature": "redacted"}
    assert ex.url == receiver.url("/ok")
    [got] = receiver.got("/ok")
    assert got.body == b'{"a":1}' and got.headers["host"] == f"127.0.0.1:{receiver.port}"
    assert got.headers["accept-encoding"] == "identity"


def test_sender_connects_to_the_checked_address_with_the_name_in_host(receiver: Receiver) -> None:
    [ex] = _send(receiver.url("/n", host="localhost"))
    assert ex.status == 200
    assert receiver.got("/n")[0].headers["host"] == f"localhost:{receiver.port}"


def test_sender_sends_url_credentials_as_basic_auth_and_never_keeps_cookies(receiver: Receiver) -> None:
    receiver.set("/c", lambda n, g: Reply(200, {"Set-Cookie": "session=abc; Path=/"}))
    exchanges = _send(receiver.url("/c").replace("http://", "http://u:p%40ss@"), times=2)
    assert [e.status for e in exchanges] == [200, 200]
    first, second = receiver.got("/c")
    assert first.headers["authorization"] == "Basic dTpwQHNz"  # u:p@ss
    assert "cookie" not in second.headers
    assert exchanges[0].url == receiver.url("/c")


def test_sender_refuses_blocked_addresses_without_connecting(receiver: Receiver) -> None:
    for host in ("127.0.0.1", "localhost", "2130706433", "0x7f.1", "[::ffff:127.0.0.1]"):
        [ex] = _send(receiver.url("/b", host=host), policy=AddressPolicy())
        assert ex.error_class == "blocked_address" and ex.status is None, host
    assert receiver.connections == 0


def test_sender_error_classes(receiver: Receiver) -> None:
    receiver.set("/hang", lambda n, g: Hang())
    receiver.set("/redirect", lambda n, g: Reply(307, {"Location": "/elsewhere"}))
    closed = Receiver().start()
    port = closed.port
    closed.stop()  # nothing listens there any more
    started = time.monotonic()
    [hang] = _send(receiver.url("/hang"), timeout=1.0)
    assert hang.error_class == "timeout" and time.monotonic() - started < 2.0
    assert "1 s" in (hang.error_message or "")
    [refused] = _send(f"http://127.0.0.1:{port}/x")
    assert refused.error_class == "connect", refused.error_message
    [dns] = _send("http://no-such-host.invalid/x", policy=AddressPolicy())
    assert dns.error_class == "dns"
    [redirect] = _send(receiver.url("/redirect"))
    assert redirect.status == 307 and redirect.error_class is None  # the policy classifies statuses
    assert len(receiver.got("/redirect")) == 1 and receiver.got("/elsewhere") == []
    [scheme] = _send("ftp://127.0.0.1/x")
    assert scheme.error_class == "connect"


def test_sender_reads_at_most_the_excerpt(receiver: Receiver) -> None:
    from tests.processors.deliver.receivers import Big

    receiver.set("/big", lambda n, g: Big(2 * 1024 * 1024))
    [ex] = _send(receiver.url("/big"))
    assert ex.status == 200 and len(ex.excerpt) == EXCERPT_BYTES and ex.truncated


# --- TLS ----------------------------------------------------------------------------------------------


def _tls_files(tmp: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate for ``localhost`` signed by it: (ca.pem, cert.pem, key.pem)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hookline test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = tmp / "ca.pem", tmp / "cert.pem", tmp / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def test_tls_is_verified_against_the_name_while_connecting_to_the_checked_ip(tmp_path: Path) -> None:
    ca, cert, key = _tls_files(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    sni: list[str | None] = []
    server_ctx.sni_callback = lambda sock, name, ctx: sni.append(name)  # type: ignore[assignment,misc,unused-ignore]
    trusted = ssl.create_default_context(cafile=str(ca))
    with Receiver(ssl_context=server_ctx) as tls:
        [ok] = _send(tls.url("/s", host="localhost"), ssl_context=trusted)
        assert ok.status == 200, ok.error_message
        assert sni == ["localhost"]
        assert tls.got("/s")[0].headers["host"] == f"localhost:{tls.port}"
        # The certificate names localhost, not the IP: asking for the IP must fail verification.
        [by_ip] = _send(tls.url("/s"), ssl_context=trusted)
        assert by_ip.error_class == "tls", by_ip.error_message
        # An untrusted issuer fails too.
        [untrusted] = _send(tls.url("/s", host="localhost"))
        assert untrusted.error_class == "tls", untrusted.error_message
        assert len(tls.got("/s")) == 1


# --- the task handler with fakes --------------------------------------------------------------------------


class _Sink:
    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None, bytes | None]] = []

    async def send(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        self.records.append((topic, key, value))

    def decoded(self, topic: str, schema: str) -> list[dict[str, Any]]:
        return [decode(v, schema) for t, _k, v in self.records if t == topic]


class _Sender:
    def __init__(self, status: int | None, headers: dict[str, str] | None = None, error: str | None = None):
        self.status, self.headers, self.error = status, headers or {}, error
        self.sent: list[Sequence[tuple[str, str]]] = []

    async def send(
        self, url: str, body: bytes, headers: Sequence[tuple[str, str]], *, attempt_id: str
    ) -> Exchange:
        self.sent.append(headers)
        return Exchange(attempt_id, int(time.time() * 1000), url, {}, 0.01, status=self.status,
                        response_headers=self.headers, error_class=self.error)


class _Configs:
    def __init__(self, hook: Webhook | None) -> None:
        self.hook = hook
        self.calls = 0  # catch-ups asked for

    def get(self, webhook_id: str) -> Webhook | None:
        return self.hook

    async def catch_up_async(self, written_before_ms: float, timeout: float = 5.0) -> bool:
        self.calls += 1
        return True


TOPICS = DeliveryTopics(
    results="results", dlq="dlq", config="config", retry={0.5: "r0.5", 1.0: "r1", 1.5: "r1.5"}
)


def _handler(
    sink: _Sink, sender: _Sender, configs: _Configs, sealer: Sealer, rates: RateLimits | None = None
) -> TaskHandler:
    return TaskHandler(
        configs=configs, signers=SignerCache(sealer), sender=sender, sink=sink,
        limits=ConcurrencyLimits(4, 2), metrics=DeliveryMetrics(CollectorRegistry()), topics=TOPICS,
        schedule=(0.5, 1.0, 1.5), jitter=0.2, rng=random.Random(1), backlog=8, rates=rates,
    )


_task = delivery_task


def test_a_tier_holds_a_record_for_its_delay_from_when_it_was_written() -> None:
    sealer = Sealer.from_secret(Secret(generate_key()))
    sink, sender = _Sink(), _Sender(200)
    handler = _handler(sink, sender, _Configs(_hook(secret=sealer.seal("wh", "s3cret-value"))), sealer)
    now = int(time.time() * 1000)

    def rec(topic: str, due: int, written: int) -> Record:
        return Record(topic, 0, 1, b"wh", _task(due_at=due).encode(), written, written)

    assert handler.hold_until(rec("r1", now + 800, now)) == now + 800  # due within the tier's delay
    assert handler.hold_until(rec("r1", now + 60_000, now)) == now + 1000  # then it moves on
    assert handler.hold_until(rec("tasks", now + 60_000, now)) == 0  # new tasks never wait in place
    # Not due yet when released: passed on, unattempted, to the tier that fits the rest of its wait.
    asyncio.run(handler.process(rec("r1", now + 1_200, now - 1000)))
    asyncio.run(handler.process(rec("r1", now + 60_000, now - 1000)))
    assert sender.sent == [] and [t for t, _k, _v in sink.records] == ["r1", "r1.5"]
    assert [decode(v, "DeliveryTask")["dueAt"] for _t, _k, v in sink.records] == [now + 1_200, now + 60_000]


def _handle(status: int | None, *, attempt: int = 1, trigger: str = "automatic", error: str | None = None,
            headers: dict[str, str] | None = None, hook: Webhook | None = None,
            version: int = 1) -> tuple[_Sink, _Sender, _Configs]:
    sealer = Sealer.from_secret(Secret(generate_key()))
    hook = hook or _hook(secret=sealer.seal("wh", "s3cret-value"))
    sink, sender, configs = _Sink(), _Sender(status, headers, error), _Configs(hook)
    handler = _handler(sink, sender, configs, sealer)
    task = _task(config_version=version, attempt=attempt, trigger=trigger)
    rec = Record("tasks", 0, 7, b"wh", task.encode(), int(time.time() * 1000))
    asyncio.run(handler.process(rec))
    return sink, sender, configs


def test_handler_schedules_a_retry_in_the_right_tier() -> None:
    sink, _sender, _ = _handle(503, headers={"Retry-After": "1.2"}, attempt=2)
    [retry] = sink.decoded("r1", "DeliveryTask")
    [result] = sink.decoded("results", "DeliveryResult")
    assert retry["attempt"] == 3 and retry["messageId"] == "msg_1"
    assert retry["firstAttemptAt"] is not None
    assert result["outcome"] == "failed" and result["final"] is False
    assert result["nextRetryAt"] == retry["dueAt"]
    assert retry["dueAt"] - result["attemptedAt"] >= 1200 - 50


def test_handler_dead_letters_the_last_attempt() -> None:
    sink, _, _ = _handle(None, attempt=4, error="connect")
    [letter] = sink.decoded("dlq", "DeadLetter")
    [result] = sink.decoded("results", "DeliveryResult")
    assert letter["reason"] == "retries_exhausted" and letter["sourceOffset"] == 7
    assert decode(letter["value"], "DeliveryTask")["attempt"] == 4
    assert result["outcome"] == "dead_lettered" and result["final"] and result["errorClass"] == "connect"


def test_handler_disables_on_410_and_a_test_send_is_not_retried() -> None:
    sink, _, _ = _handle(410)
    [config] = sink.decoded("config", "WebhookConfig")
    assert config["active"] is False and config["disabledReason"] == "410 Gone" and config["version"] == 2
    sink, _sender, _ = _handle(500, trigger="test")
    [result] = sink.decoded("results", "DeliveryResult")
    assert result["final"] is True and result["outcome"] == "failed" and result["trigger"] == "test"
    assert [t for t, _k, _v in sink.records] == ["results"]


def test_handler_waits_for_the_view_when_the_task_is_newer() -> None:
    _sink, sender, configs = _handle(200, version=2)
    assert configs.calls == 1 and len(sender.sent) == 1
    _sink, sender, configs = _handle(200, version=1)
    assert configs.calls == 0


def test_handler_dead_letters_a_secret_it_cannot_open() -> None:
    other = Sealer.from_secret(Secret(generate_key()))
    sink, sender, _ = _handle(200, hook=_hook(secret=other.seal("wh", "s3cret-value")))
    assert sender.sent == []
    [letter] = sink.decoded("dlq", "DeadLetter")
    [result] = sink.decoded("results", "DeliveryResult")
    assert letter["reason"] == "secret_unavailable" and result["outcome"] == "dead_lettered"
    assert result["errorClass"] == "secret"


def test_ipaddress_sanity() -> None:
    # The sender puts IPv6 addresses in brackets through httpx; make sure the form is right.
    url = httpx.URL("https://example.com:8443/p").copy_with(host=str(ipaddress.ip_address("2001:db8::1")))
    assert str(url) == "https://[2001:db8::1]:8443/p"


def test_cancelled_slots_give_back_what_they_held() -> None:
    async def run() -> tuple[int, int, dict[str, object], bool, bool]:
        limits = ConcurrencyLimits(total=2, per_key=1)
        release = asyncio.Event()

        async def use(key: str) -> None:
            async with limits.slot(key):
                await release.wait()

        holders = [asyncio.create_task(use("a")), asyncio.create_task(use("b"))]  # both global slots
        share_waiter = asyncio.create_task(use("a"))  # waits for a's share
        global_waiter = asyncio.create_task(use("c"))  # holds c's share, waits for a global slot
        await asyncio.sleep(0.01)
        for task in (share_waiter, global_waiter, holders[0]):  # one of them in flight
            task.cancel()
        await asyncio.gather(share_waiter, global_waiter, holders[0], return_exceptions=True)
        in_flight = limits.in_flight
        release.set()
        await holders[1]
        # Every slot is free again: two keys can hold one each at once.
        async with limits.slot("x"), limits.slot("y"):
            both = limits.in_flight == 2
        return in_flight, limits.in_flight, dict(limits._shares), both, limits._global.locked()

    in_flight, after, shares, both, locked = asyncio.run(run())
    assert in_flight == 1 and after == 0 and shares == {} and both and not locked


def test_expected_wait_counts_rounds_of_the_share_and_the_age_of_hanging_slots() -> None:
    now = [100.0]

    async def run() -> list[float]:
        limits = ConcurrencyLimits(total=10, per_key=2, clock=lambda: now[0])
        release = asyncio.Event()
        seen = [limits.expected_wait("k")]

        async def use() -> None:
            async with limits.slot("k"):
                await release.wait()

        tasks = [asyncio.create_task(use()) for _ in range(6)]  # 2 in flight, 4 queued
        await asyncio.sleep(0)
        seen.append(limits.expected_wait("k"))  # no history, nothing old yet
        now[0] += 3.0  # the two in flight have hung for 3 s
        seen.append(limits.expected_wait("k"))
        release.set()
        await asyncio.gather(*tasks)
        return seen

    assert asyncio.run(run()) == [0.0, 0.0, 9.0]  # 4 queued = 2 rounds, +1 for a new task, 3 s each


# --- the rate limit in the handler (issue 12) ------------------------------------------------------


def _limited(rate: int | None, status: int = 200, headers: dict[str, str] | None = None, **limits: Any
             ) -> tuple[TaskHandler, _Sink, _Sender]:
    sealer = Sealer.from_secret(Secret(generate_key()))
    hook = _hook(secret=sealer.seal("wh", "s3cret-value"), rate_limit=rate)
    sink, sender = _Sink(), _Sender(status, headers)
    rates = RateLimits(**{"share": 100, "max_wait": 30.0, **limits})
    return _handler(sink, sender, _Configs(hook), sealer, rates), sink, sender


def _rec(offset: int, topic: str = "tasks", **task: Any) -> Record:
    """A task record at ``offset`` of ``topic``; each offset its own message unless ``message_id`` says."""
    task.setdefault("message_id", f"msg_{offset}")
    return Record(topic, 0, offset, b"wh", _task(**task).encode(), int(time.time() * 1000))


def test_a_second_routing_of_a_message_is_dropped_but_retries_replays_and_owner_sends_go() -> None:
    """A router that crashed routes its last commit interval again (same message ids): the worker that
    took the first copy drops the second, unsent and counted. The same id from a retry tier, a replay
    or an owner's send is sent as before."""
    handler, sink, sender = _limited(None)

    async def run() -> None:
        await handler.process(_rec(1, message_id="m"))
        await handler.process(_rec(2, message_id="m"))  # the router's second routing
        await handler.process(_rec(3, topic="r0.5", message_id="m", attempt=2))  # a retry
        await handler.process(_rec(4, message_id="m", trigger="replay"))
        await handler.process(_rec(5, message_id="m", trigger="manual"))

    asyncio.run(run())
    assert len(sender.sent) == 4
    assert handler._metrics.duplicates_dropped._value.get() == 1
    assert [r["trigger"] for r in sink.decoded("results", "DeliveryResult")] == [
        "automatic", "automatic", "replay", "manual"]


def test_a_routed_task_abandoned_unfinished_is_taken_again() -> None:
    """Abandoned (the worker stops, or its partition moves before the attempt began): not taken, so
    when the record is read again, here or elsewhere, it is sent."""
    handler, _sink, sender = _limited(None)
    handler.stopping = True
    with pytest.raises(Abandoned):
        asyncio.run(handler.process(_rec(1, message_id="m")))
    handler.stopping = False
    asyncio.run(handler.process(_rec(1, message_id="m")))
    assert len(sender.sent) == 1 and handler._metrics.duplicates_dropped._value.get() == 0


def test_taken_ids_are_bounded_oldest_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("processors.deliver.handler.TAKEN_IDS", 3)
    handler, _sink, sender = _limited(None)

    async def run() -> None:
        for i in range(1, 5):
            await handler.process(_rec(i))  # msg_1 .. msg_4: msg_1 is forgotten
        await handler.process(_rec(1))  # sent again
        await handler.process(_rec(4))  # dropped

    asyncio.run(run())
    assert len(sender.sent) == 5 and handler._metrics.duplicates_dropped._value.get() == 1


def test_a_task_past_its_rate_limit_goes_back_unattempted_same_attempt_with_a_deferred_result() -> None:
    handler, sink, sender = _limited(1, max_wait=0.1)  # one a second; no wait of a second in memory

    async def two() -> None:
        await handler.process(_rec(1))
        await handler.process(_rec(2, attempt=3, trigger="recover"))  # owners' sends wait too

    asyncio.run(two())
    assert len(sender.sent) == 1
    [retry] = sink.decoded("r0.5", "DeliveryTask")  # its turn is a second away: the first tier
    assert (retry["attempt"], retry["trigger"], retry["firstAttemptAt"]) == (3, "recover", None)
    results = sink.decoded("results", "DeliveryResult")
    assert [r["outcome"] for r in results] == ["delivered", "deferred"]
    held = results[1]
    assert (held["attempt"], held["final"], held["errorClass"], held["responseStatus"]) == (
        3, False, "rate_limited", None)
    assert held["errorMessage"] == "rate limit of 1 requests per second: not its turn yet; no request made"
    assert held["nextRetryAt"] == retry["dueAt"] and retry["dueAt"] - held["attemptedAt"] >= 500
    m = handler._metrics
    assert m.deferred.labels("rate_limit")._value.get() == 1
    assert m.rate_limited.labels("deferred")._value.get() == 1
    assert m.deliveries.labels("deferred", "none", "rate_limited")._value.get() == 1


def test_a_task_waits_in_memory_for_its_turn_then_goes() -> None:
    handler, sink, sender = _limited(10)

    async def three() -> float:
        started = time.monotonic()
        await asyncio.gather(*(handler.process(_rec(i)) for i in range(3)))
        return time.monotonic() - started

    took = asyncio.run(three())
    assert len(sender.sent) == 3 and took >= 0.2 - 0.01  # 10 a second: the third goes 0.2 s after the first
    assert [r["outcome"] for r in sink.decoded("results", "DeliveryResult")] == ["delivered"] * 3
    assert handler._metrics.rate_limited.labels("memory")._value.get() == 2


def test_a_retry_after_pauses_the_webhook_without_a_limit_too() -> None:
    handler, sink, sender = _limited(None, status=429, headers={"Retry-After": "30"}, max_wait=1.0)

    async def two() -> None:
        await handler.process(_rec(1))
        await handler.process(_rec(2))

    asyncio.run(two())
    assert len(sender.sent) == 1  # the second one made no request
    results = sink.decoded("results", "DeliveryResult")
    assert [r["outcome"] for r in results] == ["failed", "deferred"]
    assert results[1]["errorMessage"].startswith("rate limit: the receiver asked to wait (Retry-After) 30s")
    [back] = [t for t in sink.decoded("r1.5", "DeliveryTask") if t["attempt"] == 1]  # about 28.5 s away
    assert back["dueAt"] - results[1]["attemptedAt"] >= 28_000


def test_a_task_waiting_for_its_turn_gives_up_when_its_partition_is_revoked_or_the_worker_stops() -> None:
    handler, sink, sender = _limited(2)

    async def run() -> list[BaseException | None]:
        await handler.process(_rec(1))
        revoked, other = _rec(2), _rec(3)
        waiting = [asyncio.create_task(handler.process(r)) for r in (revoked, other)]
        await asyncio.sleep(0.05)
        revoked.revoked = True  # the worker marks it when the partition goes (worker._revoked)
        handler.stopping = True  # and stopping releases every waiter at once (not in 1 s)
        done = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 0.4)
        return list(done)

    outcomes = asyncio.run(run())
    assert all(isinstance(o, Abandoned) for o in outcomes), outcomes
    assert len(sender.sent) == 1 and len(sink.decoded("results", "DeliveryResult")) == 1
