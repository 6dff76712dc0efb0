"""Sessions of the web page: a signed cookie that names an account, and the CSRF tokens bound to it.

The cookie never carries the API key. It carries the account id, a fingerprint of the key that
signed in (an HMAC of the key's digest), a random session nonce and an expiry, signed with a key
derived from ``HOOKLINE_SECRET_KEY``. So any API instance with the same settings accepts it, a
session ends when its key is removed from ``HOOKLINE_API_KEYS``, and signing out denies the nonce
on this instance (the cookie is cleared in the browser too).

CSRF tokens are synchronizer tokens derived from the session: ``HMAC(key, "csrf" + nonce)``. A form
carries the token, the POST handler recomputes it from the session cookie and compares in constant
time; another site can read neither. Before signing in, a short-lived *pre-session* cookie plays the
same role for the sign-in form, so no one can sign a victim in to the attacker's account.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from api.auth import MAX_KEY_LENGTH
from hookline.settings import Secret, Settings

__all__ = ["PRESESSION_COOKIE", "SESSION_COOKIE", "Session", "SessionCodec"]

SESSION_COOKIE = "hookline_session"
PRESESSION_COOKIE = "hookline_signin"
SESSION_SECONDS = 8 * 3600
PRESESSION_SECONDS = 3600
MAX_COOKIE_LENGTH = 1024
_CONTEXT = b"hookline web page sessions v1"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in account (or, with an empty account, a pre-session for the sign-in form)."""

    account: str
    fingerprint: str
    nonce: str
    expires: int  # unix seconds

    def __repr__(self) -> str:
        return f"Session(account={self.account!r}, expires={self.expires})"


class SessionCodec:
    """Issue, read and revoke session cookies; derive and check CSRF tokens."""

    def __init__(
        self, secret_key: Secret, api_keys: Secret, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._key = hmac.new(secret_key.get().encode("utf-8"), _CONTEXT, hashlib.sha256).digest()
        self._clock = clock
        # Fingerprint -> account for every configured key; only fingerprints, never keys, are kept.
        self._accounts: dict[str, str] = {}
        for account, key in _pairs(api_keys):
            self._accounts[self._fingerprint(key)] = account
        self._revoked: dict[str, int] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> SessionCodec:
        return cls(settings.secret_key, settings.api_keys)

    def __repr__(self) -> str:
        return f"SessionCodec({len(self._accounts)} keys)"

    def _mac(self, *parts: str) -> bytes:
        return hmac.new(self._key, "\x00".join(parts).encode("utf-8"), hashlib.sha256).digest()

    def _fingerprint(self, api_key: str) -> str:
        return _b64(self._mac("key", hashlib.sha256(api_key.encode("utf-8")).hexdigest())[:16])

    # -- sessions ---------------------------------------------------------------------------------
    def sign_in(self, api_key: str) -> Session | None:
        """A new session for the account ``api_key`` belongs to; None for an unknown key."""
        if not api_key or len(api_key) > MAX_KEY_LENGTH:
            return None
        fingerprint = self._fingerprint(api_key)
        found: str | None = None
        for candidate, account in self._accounts.items():  # no early exit, as in ApiKeys
            if hmac.compare_digest(candidate, fingerprint):
                found = account
        if found is None:
            return None
        return Session(found, fingerprint, _b64(secrets.token_bytes(18)), self._now() + SESSION_SECONDS)

    def presession(self) -> Session:
        """An anonymous session that only protects the sign-in form."""
        return Session("", "", _b64(secrets.token_bytes(18)), self._now() + PRESESSION_SECONDS)

    def encode(self, session: Session) -> str:
        payload = _b64(
            orjson.dumps(
                {"a": session.account, "f": session.fingerprint, "n": session.nonce, "e": session.expires}
            )
        )
        return f"{payload}.{_b64(self._mac('session', payload))}"

    def decode(self, cookie: str | None, *, anonymous: bool = False) -> Session | None:
        """The session a cookie value carries, or None when it is forged, expired, revoked or stale.

        ``anonymous`` selects pre-sessions (sign-in form) instead of signed-in sessions.
        """
        if not cookie or len(cookie) > MAX_COOKIE_LENGTH or cookie.count(".") != 1:
            return None
        payload, _, mac = cookie.partition(".")
        try:
            given = _unb64(mac)
            doc = orjson.loads(_unb64(payload))
        except (binascii.Error, ValueError, orjson.JSONDecodeError):
            return None
        if not hmac.compare_digest(given, self._mac("session", payload)):
            return None
        if not isinstance(doc, dict):
            return None
        account, fingerprint, nonce, expires = doc.get("a"), doc.get("f"), doc.get("n"), doc.get("e")
        if not (
            isinstance(account, str)
            and isinstance(fingerprint, str)
            and isinstance(nonce, str)
            and isinstance(expires, int)
        ):
            return None
        if expires <= self._now():
            return None
        if anonymous:
            return Session("", "", nonce, expires) if not account and not fingerprint else None
        if self._accounts.get(fingerprint) != account or not account:
            return None  # the key was removed (or the cookie is a pre-session)
        with self._lock:
            if nonce in self._revoked:
                return None
        return Session(account, fingerprint, nonce, expires)

    def revoke(self, session: Session) -> None:
        """Refuse this session from now on (on this instance; the browser drops its cookie too)."""
        now = self._now()
        with self._lock:
            for nonce, expires in list(self._revoked.items()):
                if expires <= now:
                    del self._revoked[nonce]
            self._revoked[session.nonce] = session.expires

    # -- CSRF -------------------------------------------------------------------------------------
    def csrf_token(self, session: Session) -> str:
        return _b64(self._mac("csrf", session.nonce))

    def check_csrf(self, session: Session, token: str | None) -> bool:
        if not token or len(token) > 128:
            return False
        return hmac.compare_digest(token.encode("ascii", "replace"), self.csrf_token(session).encode("ascii"))

    def _now(self) -> int:
        return int(self._clock())


def _pairs(api_keys: Secret) -> list[tuple[str, str]]:
    # The same reading as ApiKeys.parse, which has already validated the setting in create_app.
    pairs = []
    for part in (p.strip() for p in api_keys.get().split(",")):
        account, sep, key = part.partition(":")
        if sep and key.strip():
            pairs.append((account.strip(), key.strip()))
    return pairs
