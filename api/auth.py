"""API keys: which account a request speaks for.

Keys come from ``HOOKLINE_API_KEYS`` (``account:key`` pairs, comma-separated). Only their SHA-256
digests are kept once loaded, and a presented key is compared against every digest in constant
time, so neither memory dumps nor response timing reveal a key.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from hookline.settings import Secret, Settings, SettingsError

__all__ = ["ApiKeys"]

_ACCOUNT = re.compile(r"[A-Za-z0-9._@-]{1,128}")
MAX_KEY_LENGTH = 512


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


class ApiKeys:
    """Hashed API keys and the accounts they belong to."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        entries: list[tuple[bytes, str]] = []
        seen: set[bytes] = set()
        for account, key in pairs:
            digest = _digest(key)
            if digest in seen:
                raise SettingsError(f"HOOKLINE_API_KEYS: a key of account {account!r} is listed twice")
            seen.add(digest)
            entries.append((digest, account))
        self._entries = tuple(entries)

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiKeys:
        return cls.parse(settings.api_keys)

    @classmethod
    def parse(cls, secret: Secret) -> ApiKeys:
        """Read ``account:key,...``; an account may have several keys (rotation)."""
        pairs: list[tuple[str, str]] = []
        for position, part in enumerate((p.strip() for p in secret.get().split(",")), start=1):
            if not part:
                continue
            account, sep, key = part.partition(":")
            account, key = account.strip(), key.strip()
            if not sep or not key:
                raise SettingsError(f"HOOKLINE_API_KEYS: entry #{position} is not `account:key`")
            if not _ACCOUNT.fullmatch(account):
                raise SettingsError(
                    f"HOOKLINE_API_KEYS: account of entry #{position} must be 1-128 characters of "
                    "A-Z a-z 0-9 . _ @ -"
                )
            if len(key) > MAX_KEY_LENGTH:
                raise SettingsError(
                    f"HOOKLINE_API_KEYS: key of entry #{position} is longer than {MAX_KEY_LENGTH}"
                )
            pairs.append((account, key))
        return cls(pairs)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"ApiKeys({len(self._entries)} keys)"

    def account_for(self, presented: str | None) -> str | None:
        """The account ``presented`` belongs to, or None. Takes the same time for every key."""
        if not presented or len(presented) > MAX_KEY_LENGTH:
            return None
        digest = _digest(presented)
        found: str | None = None
        for candidate, account in self._entries:  # no early exit: timing does not depend on the match
            if hmac.compare_digest(candidate, digest):
                found = account
        return found
