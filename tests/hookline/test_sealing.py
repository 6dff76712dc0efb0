from __future__ import annotations

import base64
import dataclasses

import pytest

from hookline.sealing import (
    KeyNotConfigured,
    KeySpecInvalid,
    Sealer,
    UnsealError,
    generate_key,
    parse_keys,
)
from hookline.settings import Secret, load_settings
from hookline.webhooks import SealedSecret

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def sealer(*specs: str) -> Sealer:
    return Sealer.from_secret(Secret(",".join(specs)))


def test_round_trip() -> None:
    s = sealer(generate_key())
    sealed = s.seal("wh-1", SECRET)
    assert s.open("wh-1", sealed) == SECRET
    assert sealed.key_id == s.primary_key_id


def test_round_trip_unicode_and_fresh_nonce() -> None:
    s = sealer(generate_key("main"))
    a, b = s.seal("wh-1", "pässwörd-ünïcode"), s.seal("wh-1", "pässwörd-ünïcode")
    assert a.nonce != b.nonce and a.ciphertext != b.ciphertext
    assert s.open("wh-1", a) == s.open("wh-1", b) == "pässwörd-ünïcode"


def test_no_plaintext_in_sealed_record() -> None:
    s = sealer(generate_key())
    sealed = s.seal("wh-1", SECRET)
    blob = sealed.key_id.encode() + sealed.nonce + sealed.ciphertext
    for needle in (SECRET, SECRET.removeprefix("whsec_"), SECRET[6:20]):
        assert needle.encode() not in blob
    assert base64.b64decode(SECRET.removeprefix("whsec_")) not in blob
    assert SECRET not in repr(sealed) and "whsec" not in repr(s)


def test_wrong_webhook_id_does_not_open() -> None:
    s = sealer(generate_key())
    sealed = s.seal("wh-1", SECRET)
    with pytest.raises(UnsealError, match="another webhook") as info:
        s.open("wh-2", sealed)
    assert SECRET not in str(info.value)


@pytest.mark.parametrize("field", ["nonce", "ciphertext"])
def test_tampering_is_detected(field: str) -> None:
    s = sealer(generate_key())
    sealed = s.seal("wh-1", SECRET)
    raw = bytearray(getattr(sealed, field))
    for i in (0, len(raw) // 2, len(raw) - 1):
        flipped = bytearray(raw)
        flipped[i] ^= 0x01
        with pytest.raises(UnsealError):
            if field == "nonce":
                forged = SealedSecret(sealed.key_id, bytes(flipped), sealed.ciphertext)
            else:
                forged = SealedSecret(sealed.key_id, sealed.nonce, bytes(flipped))
            s.open("wh-1", forged)


def test_truncated_ciphertext_and_bad_nonce_length() -> None:
    s = sealer(generate_key())
    sealed = s.seal("wh-1", SECRET)
    with pytest.raises(UnsealError):
        s.open("wh-1", dataclasses.replace(sealed, ciphertext=sealed.ciphertext[:-1]))
    with pytest.raises(UnsealError, match="nonce"):
        s.open("wh-1", dataclasses.replace(sealed, nonce=sealed.nonce + b"\0"))


def test_rotation_first_key_seals_all_keys_open() -> None:
    old_key, new_key = generate_key("old"), generate_key("new")
    before = sealer(old_key)
    sealed_old = before.seal("wh-1", SECRET)
    after = sealer(new_key, old_key)
    assert after.primary_key_id == "new" and after.key_ids == ("new", "old")
    assert after.open("wh-1", sealed_old) == SECRET
    sealed_new = after.seal("wh-1", SECRET)
    assert sealed_old.key_id == "old" and sealed_new.key_id == "new"
    # Once the old key is dropped, what it sealed no longer opens, with a clear reason.
    with pytest.raises(UnsealError, match="unknown key id 'old'"):
        sealer(new_key).open("wh-1", sealed_old)
    # The old key alone cannot open what the new one sealed.
    with pytest.raises(UnsealError):
        before.open("wh-1", sealed_new)


def test_same_kid_with_another_key_does_not_open() -> None:
    sealed = sealer(generate_key("k1")).seal("wh-1", SECRET)
    with pytest.raises(UnsealError):
        sealer(generate_key("k1")).open("wh-1", sealed)


def test_derived_key_id_is_stable_and_distinct() -> None:
    key_a, key_b = generate_key(), generate_key()
    assert sealer(key_a).primary_key_id == sealer(key_a).primary_key_id
    assert sealer(key_a).primary_key_id != sealer(key_b).primary_key_id
    sealed = sealer(key_a).seal("wh-1", SECRET)
    assert sealer(key_b, key_a).open("wh-1", sealed) == SECRET


def test_key_spec_accepts_padding_and_whitespace() -> None:
    raw = bytes(range(32))
    padded = base64.urlsafe_b64encode(raw).decode()
    assert padded.endswith("=")
    assert parse_keys(f" a:{padded} , b:{padded.rstrip('=')} ,") == [("a", raw), ("b", raw)]


def test_from_settings_reads_secret_key() -> None:
    spec = generate_key("env")
    s = Sealer.from_settings(load_settings({"HOOKLINE_SECRET_KEY": spec}))
    assert s.primary_key_id == "env"


def test_no_key_configured_is_a_clear_error() -> None:
    with pytest.raises(KeyNotConfigured, match="HOOKLINE_SECRET_KEY is not set"):
        Sealer.from_settings(load_settings({}))
    with pytest.raises(KeyNotConfigured):
        sealer(" , ")


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("not base64!", "not base64url"),
        (base64.urlsafe_b64encode(b"short").decode(), "expected 32"),
        (base64.urlsafe_b64encode(bytes(33)).decode(), "expected 32"),
        ("bad id:" + base64.urlsafe_b64encode(bytes(32)).decode(), "key id #1"),
        (":" + base64.urlsafe_b64encode(bytes(32)).decode(), "key id #1"),
        ("a:" + base64.urlsafe_b64encode(bytes(32)).decode() + ",a:" + generate_key(), "appears twice"),
    ],
)
def test_invalid_key_specs(spec: str, match: str) -> None:
    with pytest.raises(KeySpecInvalid, match=match) as info:
        sealer(spec)
    assert base64.urlsafe_b64encode(bytes(32)).decode() not in str(info.value)


def test_generate_key_rejects_bad_id_and_produces_32_bytes() -> None:
    with pytest.raises(KeySpecInvalid):
        generate_key("no spaces")
    ((kid, key),) = parse_keys(generate_key("x"))
    assert kid == "x" and len(key) == 32


def test_sealed_secret_record_round_trip_opens() -> None:
    s = sealer(generate_key())
    sealed = s.seal("wh-1", SECRET)
    again = SealedSecret.from_record(sealed.to_record())
    assert s.open("wh-1", again) == SECRET
