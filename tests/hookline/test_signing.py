"""hookline.signing against checked-in vectors, the standardwebhooks verifier and plain ``hmac``."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from hookline.signing import (
    SIGNATURE_HEADERS,
    SecretError,
    Signer,
    hmac_key,
    message_id,
    redact_headers,
    sign_headers,
    standard_signature,
    systeme_signature,
)

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "testdata" / "signing_vectors.json").read_text(encoding="utf-8")
)
SIGNATURE_CASES = VECTORS["signatures"]

BODY = json.dumps(
    {"customer": {"id": 7, "email": "zoë@example.com"}, "order": {"id": 99, "totalPrice": 49.0}},
    separators=(",", ":"),
    ensure_ascii=False,
).encode()

HEADER_NAMES = [
    "Content-Type",
    "User-Agent",
    "X-Webhook-Event",
    "X-Webhook-Signature",
    "X-Webhook-Message-Id",
    "X-Webhook-Delivery-Attempt-Id",
    "X-Webhook-Event-Timestamp",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
]


def _headers(
    secrets: list[str], *, body: bytes = BODY, timestamp: int | None = None
) -> list[tuple[str, str]]:
    return sign_headers(
        secrets,
        event_type="SALE_NEW",
        msg_id=message_id("evt_1", "wh_1"),
        attempt_id="att_0001",
        event_time_ms=1717171717123,
        timestamp=int(time.time()) if timestamp is None else timestamp,
        body=body,
        user_agent="hookline/0.1.0",
    )


def _whsec(key: bytes) -> str:
    return "whsec_" + base64.b64encode(key).decode()


#: A secret for tests about headers rather than keys.
PLAIN = "s3cret-value"

#: Printable text without leading or trailing whitespace: what a typed secret may be.
_TYPED = st.text(
    alphabet=st.characters(exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"))
    | st.just(" "),
    min_size=8,
    max_size=40,
).filter(lambda s: s == s.strip())


# --- checked-in vectors (computed with openssl, see the file) --------------------------------------


@pytest.mark.parametrize("case", SIGNATURE_CASES, ids=[c["name"] for c in SIGNATURE_CASES])
def test_vectors_key(case: dict[str, Any]) -> None:
    assert hmac_key(case["secret"]).hex() == case["key_hex"]


@pytest.mark.parametrize("case", SIGNATURE_CASES, ids=[c["name"] for c in SIGNATURE_CASES])
def test_vectors_signatures(case: dict[str, Any]) -> None:
    body = case["body"].encode("utf-8")
    assert systeme_signature(case["secret"], body) == case["x_webhook_signature"]
    assert (
        standard_signature(case["secret"], case["msg_id"], case["timestamp"], body)
        == case["webhook_signature"]
    )
    signer = Signer([case["secret"]])
    assert signer.systeme_signature(body) == case["x_webhook_signature"]
    assert signer.standard_signature(case["msg_id"], case["timestamp"], body) == case["webhook_signature"]


@pytest.mark.parametrize("case", SIGNATURE_CASES, ids=[c["name"] for c in SIGNATURE_CASES])
def test_vectors_in_headers(case: dict[str, Any]) -> None:
    headers = dict(
        sign_headers(
            [case["secret"]],
            event_type="CONTACT_CREATED",
            msg_id=case["msg_id"],
            attempt_id="att",
            event_time_ms=0,
            timestamp=case["timestamp"],
            body=case["body"].encode("utf-8"),
            user_agent="hookline/test",
        )
    )
    assert headers["X-Webhook-Signature"] == case["x_webhook_signature"]
    assert headers["webhook-signature"] == case["webhook_signature"]
    assert headers["webhook-timestamp"] == str(case["timestamp"])


@pytest.mark.parametrize("case", VECTORS["event_timestamps"], ids=lambda c: str(c["epoch_ms"]))
def test_event_timestamp_vectors(case: dict[str, Any]) -> None:
    headers = dict(
        Signer([PLAIN]).headers(
            event_type="SALE_NEW",
            msg_id="msg_x",
            attempt_id="att",
            event_time_ms=case["epoch_ms"],
            timestamp=1,
            body=b"{}",
            user_agent="ua",
        )
    )
    value = headers["X-Webhook-Event-Timestamp"]
    assert value == case["rfc3339"]
    parsed = datetime.fromisoformat(value)
    assert parsed.tzinfo is not None and parsed.utcoffset() is not None
    assert round(parsed.timestamp() * 1000) == case["epoch_ms"]


@pytest.mark.parametrize("case", VECTORS["message_ids"], ids=lambda c: c["message_id"])
def test_message_id_vectors(case: dict[str, Any]) -> None:
    assert message_id(case["event_id"], case["webhook_id"]) == case["message_id"]


# --- the independent Standard Webhooks verifier ------------------------------------------------------


def test_whsec_secret_verifies_with_standardwebhooks() -> None:
    secret = _whsec(bytes(range(32)))
    headers = dict(_headers([secret]))
    assert Webhook(secret).verify(BODY, headers) == json.loads(BODY)


@pytest.mark.parametrize("secret", ["my-systeme-secret", "pässwörd 🔑", "c2VjcmV0", "12345678", "whsec-like"])
def test_plain_secret_verifies_with_raw_key_bytes(secret: str) -> None:
    headers = dict(_headers([secret]))
    key = secret.encode("utf-8")
    # standardwebhooks takes raw key bytes directly, or a whsec_ secret of their base64.
    assert Webhook(key).verify(BODY, headers) == json.loads(BODY)
    assert Webhook(_whsec(key)).verify(BODY, headers) == json.loads(BODY)


def test_plain_secret_is_not_read_as_base64() -> None:
    # "c2VjcmV0" is valid base64 of b"secret", but without the prefix its key is the text itself.
    secret = "c2VjcmV0"
    headers = dict(_headers([secret]))
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, headers)  # the library decodes unprefixed text as base64


def test_tampering_is_detected() -> None:
    secret = _whsec(b"k" * 24)
    headers = dict(_headers([secret]))
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"49.0", b"0.49"), headers)
    wrong_id = {**headers, "webhook-id": "msg_other"}
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, wrong_id)
    wrong_ts = {**headers, "webhook-timestamp": str(int(headers["webhook-timestamp"]) + 1)}
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, wrong_ts)
    with pytest.raises(WebhookVerificationError):
        Webhook(_whsec(b"j" * 24)).verify(BODY, headers)


def test_rotated_secrets_sign_twice_current_first_and_both_verify() -> None:
    current, previous = _whsec(b"new-key-bytes-0123456789"), "old typed secret"
    headers = dict(_headers([current, previous]))
    entries = headers["webhook-signature"].split(" ")
    assert len(entries) == 2
    assert all(e.startswith("v1,") for e in entries)
    ts = int(headers["webhook-timestamp"])
    assert entries[0] == standard_signature(current, headers["webhook-id"], ts, BODY)
    assert entries[1] == standard_signature(previous, headers["webhook-id"], ts, BODY)
    assert Webhook(current).verify(BODY, headers) == json.loads(BODY)
    assert Webhook(previous.encode()).verify(BODY, headers) == json.loads(BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(b"a third key").verify(BODY, headers)
    # The systeme.io header has room for one signature: the current secret's.
    assert headers["X-Webhook-Signature"] == hmac.new(hmac_key(current), BODY, hashlib.sha256).hexdigest()
    assert headers["X-Webhook-Signature"] != systeme_signature(previous, BODY)


# --- the systeme.io header against plain hmac --------------------------------------------------------


@pytest.mark.parametrize("secret", ["my-systeme-secret", "pässwörd 🔑", _whsec(b"\x00\xff" * 16)])
def test_systeme_signature_is_lowercase_hex_hmac(secret: str) -> None:
    headers = dict(_headers([secret]))
    key = base64.b64decode(secret[6:]) if secret.startswith("whsec_") else secret.encode()
    expected = hmac.new(key, BODY, hashlib.sha256).hexdigest()
    assert headers["X-Webhook-Signature"] == expected
    assert re.fullmatch(r"[0-9a-f]{64}", expected)


@given(
    secrets=st.lists(_TYPED.filter(lambda s: not s.startswith("whsec_")), min_size=1, max_size=3),
    body=st.binary(max_size=512),
    msg_id=st.from_regex(r"msg_[a-z2-7]{1,32}", fullmatch=True),
    timestamp=st.integers(min_value=0, max_value=2**40),
)
def test_signer_matches_plain_hmac(secrets: list[str], body: bytes, msg_id: str, timestamp: int) -> None:
    signer = Signer(secrets)
    keys = [s.encode("utf-8") for s in secrets]
    assert signer.systeme_signature(body) == hmac.new(keys[0], body, hashlib.sha256).hexdigest()
    expected = " ".join(
        "v1," + base64.b64encode(hmac.digest(k, f"{msg_id}.{timestamp}.".encode() + body, "sha256")).decode()
        for k in keys
    )
    assert signer.standard_signature(msg_id, timestamp, body) == expected
    # The cached HMAC state is copied, never consumed: a second call gives the same answer.
    assert signer.standard_signature(msg_id, timestamp, body) == expected


# --- headers -----------------------------------------------------------------------------------------


def test_headers_complete_and_in_fixed_order() -> None:
    secret = PLAIN
    headers = _headers([secret], timestamp=1700000000)
    assert [name for name, _ in headers] == HEADER_NAMES
    values = dict(headers)
    mid = message_id("evt_1", "wh_1")
    assert values["Content-Type"] == "application/json"
    assert values["User-Agent"] == "hookline/0.1.0"
    assert values["X-Webhook-Event"] == "SALE_NEW"
    assert values["X-Webhook-Message-Id"] == mid
    assert values["webhook-id"] == mid
    assert values["X-Webhook-Delivery-Attempt-Id"] == "att_0001"
    assert values["X-Webhook-Event-Timestamp"] == "2024-05-31T16:08:37.123Z"
    assert values["webhook-timestamp"] == "1700000000"
    assert values["webhook-signature"] == standard_signature(secret, mid, 1700000000, BODY)
    for name, value in headers:
        assert value.isascii(), name
        assert "\r" not in value and "\n" not in value


def test_sign_headers_equals_signer_headers() -> None:
    kwargs: dict[str, Any] = dict(
        event_type="CONTACT_OPT_IN",
        msg_id="msg_abc",
        attempt_id="att_1",
        event_time_ms=1,
        timestamp=2,
        body=b'{"x":1}',
        user_agent="ua/1",
    )
    secrets = ["first-secret", "second-secret"]
    assert sign_headers(secrets, **kwargs) == Signer(secrets).headers(**kwargs)


def test_retries_change_only_attempt_fields() -> None:
    signer = Signer([PLAIN])
    common: dict[str, Any] = dict(
        event_type="SALE_NEW", msg_id="msg_same", event_time_ms=5, body=BODY, user_agent="ua"
    )
    first = dict(signer.headers(attempt_id="att_1", timestamp=100, **common))
    second = dict(signer.headers(attempt_id="att_2", timestamp=160, **common))
    changed = {k for k in first if first[k] != second[k]}
    assert changed == {"X-Webhook-Delivery-Attempt-Id", "webhook-timestamp", "webhook-signature"}


# --- secrets -----------------------------------------------------------------------------------------


def test_hmac_key_rules() -> None:
    raw = b"raw\x00key".ljust(24, b"-")
    assert hmac_key(_whsec(raw)) == raw
    assert hmac_key(_whsec(b"k" * 25)) == b"k" * 25  # padded with "=="
    assert hmac_key(_whsec(b"k" * 64)) == b"k" * 64
    assert hmac_key("plain-secret") == b"plain-secret"
    assert hmac_key("WHSEC_cmF3cmF3") == b"WHSEC_cmF3cmF3"  # the prefix is case-sensitive
    assert hmac_key("pässwört") == "pässwört".encode()
    assert hmac_key("with inner spaces") == b"with inner spaces"
    assert hmac_key("s" * 512) == b"s" * 512


@pytest.mark.parametrize(
    ("secret", "because"),
    [
        ("", "8 to 512 characters"),
        ("seven77", "8 to 512 characters"),
        ("s" * 513, "8 to 512 characters"),
        ("whsec_", "8 to 512 characters"),
        (" padded secret ", "printable"),
        ("line\nbreak-secret", "printable"),
        ("tab\tsecret-value", "printable"),
        ("whsec_!!!!!!!!", "base64"),
        ("whsec_cm F3cmF3", "base64"),  # an inner space is printable, but not base64
        ("whsec_" + base64.urlsafe_b64encode(b"\xfb\xff" * 12).decode(), "base64"),  # - and _: not standard
        ("whsec_" + base64.b64encode(b"k" * 25).decode().rstrip("="), "base64"),  # padding left out
        ("whsec_" + "é" * 32, "base64"),
        ("whsec_c2hvcnQ=", "24 to 64 bytes"),
        (_whsec(b"k" * 23), "24 to 64 bytes"),
        (_whsec(b"k" * 65), "24 to 64 bytes"),
    ],
)
def test_unusable_secrets_are_refused(secret: str, because: str) -> None:
    with pytest.raises(SecretError, match=because):
        hmac_key(secret)
    with pytest.raises(SecretError):
        Signer([PLAIN, secret])  # a rotated-out secret obeys the same rule
    assert issubclass(SecretError, ValueError)


def test_signer_arguments() -> None:
    with pytest.raises(TypeError):
        Signer("one-string")
    with pytest.raises(SecretError):
        Signer([])
    with pytest.raises(SecretError):
        Signer([PLAIN, ""])
    assert PLAIN not in repr(Signer([PLAIN]))
    assert "top-secret" not in repr(Signer(["top-secret", PLAIN]))


# --- redaction ---------------------------------------------------------------------------------------


def test_redact_headers_hides_signatures_only() -> None:
    headers = _headers([PLAIN, "previous-secret"])
    redacted = redact_headers(headers)
    assert list(redacted) == HEADER_NAMES
    assert redacted["X-Webhook-Signature"] == "redacted"
    assert redacted["webhook-signature"] == "redacted"
    original = dict(headers)
    for name in HEADER_NAMES:
        if name.lower() not in SIGNATURE_HEADERS:
            assert redacted[name] == original[name]
    assert dict(headers) == original  # the input is not changed


def test_redact_headers_accepts_mappings_in_any_case() -> None:
    given_headers = {"WEBHOOK-SIGNATURE": "v1,abc", "x-webhook-signature": "ff", "X-Other": "keep"}
    assert redact_headers(given_headers) == {
        "WEBHOOK-SIGNATURE": "redacted",
        "x-webhook-signature": "redacted",
        "X-Other": "keep",
    }
    assert given_headers["WEBHOOK-SIGNATURE"] == "v1,abc"
    assert redact_headers([]) == {}


# --- message ids -------------------------------------------------------------------------------------


def test_message_id_shape_and_stability() -> None:
    mid = message_id("evt_1", "wh_1")
    assert re.fullmatch(r"msg_[a-z2-7]{32}", mid)
    assert len(mid) <= 40
    assert message_id("evt_1", "wh_1") == mid


def test_message_id_is_an_unambiguous_join() -> None:
    assert message_id("a", "bc") != message_id("ab", "c")
    assert message_id("a.b", "c") != message_id("a", "b.c")
    assert message_id("x", "") != message_id("", "x")
    assert message_id("evt", "wh") != message_id("wh", "evt")


def test_message_id_derivation() -> None:
    # Re-derive from the definition (length-prefixed UTF-8 fields, 160 bits, base32) to pin it.
    e, w = "évt-1", "wh-1"
    data = b"hookline.message-id.v1\x00"
    for part in (e.encode(), w.encode()):
        data += len(part).to_bytes(4, "big") + part
    expected = "msg_" + base64.b32encode(hashlib.sha256(data).digest()[:20]).decode().lower()
    assert message_id(e, w) == expected


@given(
    a=st.tuples(st.text(max_size=30), st.text(max_size=30)),
    b=st.tuples(st.text(max_size=30), st.text(max_size=30)),
)
def test_message_id_distinct_for_distinct_pairs(a: tuple[str, str], b: tuple[str, str]) -> None:
    assert (message_id(*a) == message_id(*b)) == (a == b)


def test_message_ids_distinct_over_many_pairs() -> None:
    ids = {message_id(f"evt_{i}", f"wh_{j}") for i in range(200) for j in range(20)}
    assert len(ids) == 200 * 20


def test_binascii_error_is_not_leaked() -> None:
    with pytest.raises(SecretError) as info:
        hmac_key("whsec_@@@")
    assert isinstance(info.value.__cause__, binascii.Error)
    assert "@@@" not in str(info.value)  # the secret never appears in the message


def test_event_timestamp_now_is_utc_with_millis() -> None:
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    value = dict(
        Signer([PLAIN]).headers(
            event_type="SALE_NEW",
            msg_id="m",
            attempt_id="a",
            event_time_ms=now_ms,
            timestamp=1,
            body=b"",
            user_agent="ua",
        )
    )["X-Webhook-Event-Timestamp"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", value)
    assert datetime.fromisoformat(value).timestamp() * 1000 == pytest.approx(now_ms, abs=1)
