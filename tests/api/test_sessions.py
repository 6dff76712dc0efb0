"""Session cookies and CSRF tokens of the web page, without a server."""

from __future__ import annotations

import base64

from api.sessions import SESSION_SECONDS, SessionCodec
from hookline.sealing import generate_key
from hookline.settings import Secret

SECRET_KEY = Secret(generate_key("k1"))
KEYS = Secret("acct-a:key-of-a-123456,acct-b:key-of-b-654321")


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def codec(keys: Secret = KEYS, secret_key: Secret = SECRET_KEY, clock: Clock | None = None) -> SessionCodec:
    return SessionCodec(secret_key, keys, clock=clock or Clock())


def test_sign_in_names_the_account_and_the_cookie_round_trips_without_the_key() -> None:
    c = codec()
    session = c.sign_in("key-of-b-654321")
    assert session is not None and session.account == "acct-b"
    cookie = c.encode(session)
    assert "key-of-b" not in cookie
    payload = cookie.split(".")[0]
    assert b"key-of-b" not in base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    assert c.decode(cookie) == session
    assert "key-of-b" not in repr(session) and "key-of-b" not in repr(c)


def test_unknown_empty_or_oversized_keys_do_not_sign_in() -> None:
    c = codec()
    for key in ("", "key-of-a-12345", "key-of-a-1234567", "acct-a", "x" * 10_000):
        assert c.sign_in(key) is None


def test_forged_or_foreign_cookies_are_refused() -> None:
    c = codec()
    session = c.sign_in("key-of-a-123456")
    assert session is not None
    cookie = c.encode(session)
    payload, mac = cookie.split(".")
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    forged = base64.urlsafe_b64encode(raw.replace(b"acct-a", b"acct-b")).decode().rstrip("=")
    for bad in (
        f"{forged}.{mac}",
        f"{payload}.{mac[:-2]}AA",
        f"{payload}.",
        payload,
        "",
        "a.b.c",
        f"{payload}.{mac}" + "x" * 2000,
        "!!!.???",
    ):
        assert c.decode(bad) is None, bad
    # Another secret key (another deployment) does not accept it.
    other = codec(secret_key=Secret(generate_key("k2")))
    assert other.decode(cookie) is None


def test_sessions_expire_and_end_when_the_key_is_removed_or_the_session_revoked() -> None:
    clock = Clock()
    c = codec(clock=clock)
    session = c.sign_in("key-of-a-123456")
    assert session is not None
    cookie = c.encode(session)
    clock.now += SESSION_SECONDS - 1
    assert c.decode(cookie) is not None
    clock.now += 1
    assert c.decode(cookie) is None

    clock.now -= 10
    # The same deployment restarted with acct-a's key replaced:
    rotated = codec(keys=Secret("acct-a:a-new-key-999999"), clock=clock)
    assert rotated.decode(cookie) is None
    assert codec(clock=clock).decode(cookie) is not None  # key still listed: still valid

    c.revoke(session)
    assert c.decode(cookie) is None


def test_pre_sessions_and_sessions_are_not_interchangeable() -> None:
    c = codec()
    pre = c.presession()
    session = c.sign_in("key-of-a-123456")
    assert session is not None
    assert c.decode(c.encode(pre)) is None
    assert c.decode(c.encode(pre), anonymous=True) == pre
    assert c.decode(c.encode(session), anonymous=True) is None


def test_csrf_tokens_are_bound_to_their_session() -> None:
    c = codec()
    one, two = c.sign_in("key-of-a-123456"), c.sign_in("key-of-a-123456")
    assert one is not None and two is not None
    token = c.csrf_token(one)
    assert c.check_csrf(one, token)
    assert not c.check_csrf(two, token)
    for bad in (None, "", token[:-1], token + "A", "é" * 43, "x" * 500):
        assert not c.check_csrf(one, bad)
    assert codec().csrf_token(one) == token  # stateless: any instance with the same settings agrees
