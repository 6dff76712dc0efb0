"""Webhook secrets encrypted at rest: AES-256-GCM, the webhook id as associated data.

``HOOKLINE_SECRET_KEY`` holds one or more keys, ``[kid:]<base64url of 32 bytes>``, comma-separated.
The first key seals; every key opens, so a key is rotated by putting a new one first and keeping
the old one listed until every config has been rewritten. A key without an explicit id gets one
derived from a hash of the key, stable across restarts. The key id travels in the record
(:class:`~hookline.webhooks.SealedSecret`); binding the ciphertext to the webhook id means a sealed
secret copied into another webhook's record does not open.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hookline.settings import Secret, Settings
from hookline.webhooks import SealedSecret

__all__ = [
    "KeyNotConfigured",
    "KeySpecInvalid",
    "Sealer",
    "SealingError",
    "UnsealError",
    "generate_key",
    "parse_keys",
]

KEY_BYTES = 32
NONCE_BYTES = 12  # the size AES-GCM is specified for; random nonces are safe far beyond our volumes
_KID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class SealingError(Exception):
    """Base class of every sealing failure. Messages never contain key material or plaintext."""


class KeyNotConfigured(SealingError):
    """``HOOKLINE_SECRET_KEY`` is empty."""


class KeySpecInvalid(SealingError):
    """``HOOKLINE_SECRET_KEY`` cannot be parsed."""


class UnsealError(SealingError):
    """A sealed secret does not open: unknown key id, wrong webhook, or tampered bytes."""


def generate_key(key_id: str | None = None) -> str:
    """Return a fresh key spec for ``HOOKLINE_SECRET_KEY`` (``kid:`` prefixed when ``key_id`` is given)."""
    encoded = base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode("ascii").rstrip("=")
    if key_id is None:
        return encoded
    if not _KID.fullmatch(key_id):
        raise KeySpecInvalid("key id must be 1-64 characters of A-Z a-z 0-9 . _ -")
    return f"{key_id}:{encoded}"


def _decode_key(text: str, position: int) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    try:
        raw = base64.b64decode(padded, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise KeySpecInvalid(f"HOOKLINE_SECRET_KEY: key #{position} is not base64url") from None
    if len(raw) != KEY_BYTES:
        raise KeySpecInvalid(
            f"HOOKLINE_SECRET_KEY: key #{position} decodes to {len(raw)} bytes, expected {KEY_BYTES}"
        )
    return raw


def _derived_kid(key: bytes) -> str:
    # A hash of the key is safe to store next to the ciphertext and needs no configuration.
    return "k" + hashlib.sha256(b"hookline-sealing-kid\x00" + key).hexdigest()[:10]


def parse_keys(spec: str) -> list[tuple[str, bytes]]:
    """Parse a key spec into ``[(kid, key), ...]``, the sealing key first."""
    keys: list[tuple[str, bytes]] = []
    seen: set[str] = set()
    for position, part in enumerate((p.strip() for p in spec.split(",")), start=1):
        if not part:
            continue
        kid_text, sep, key_text = part.rpartition(":")
        key = _decode_key(key_text.strip(), position)
        if sep:
            kid = kid_text.strip()
            if not _KID.fullmatch(kid):
                raise KeySpecInvalid(
                    f"HOOKLINE_SECRET_KEY: key id #{position} must be 1-64 characters of A-Z a-z 0-9 . _ -"
                )
        else:
            kid = _derived_kid(key)
        if kid in seen:
            raise KeySpecInvalid(f"HOOKLINE_SECRET_KEY: key id {kid!r} appears twice")
        seen.add(kid)
        keys.append((kid, key))
    return keys


class Sealer:
    """Seal and open webhook secrets with the configured keys."""

    def __init__(self, keys: Mapping[str, bytes] | list[tuple[str, bytes]]) -> None:
        items = list(keys.items()) if isinstance(keys, Mapping) else list(keys)
        if not items:
            raise KeyNotConfigured(
                "HOOKLINE_SECRET_KEY is not set: it encrypts webhook secrets at rest. Generate one with "
                "`python -c 'from hookline.sealing import generate_key; print(generate_key())'`."
            )
        for kid, key in items:
            if len(key) != KEY_BYTES:
                raise KeySpecInvalid(f"key {kid!r} is {len(key)} bytes, expected {KEY_BYTES}")
        self._primary = items[0][0]
        self._aeads = {kid: AESGCM(key) for kid, key in items}

    @classmethod
    def from_settings(cls, settings: Settings) -> Sealer:
        return cls.from_secret(settings.secret_key)

    @classmethod
    def from_secret(cls, secret: Secret) -> Sealer:
        return cls(parse_keys(secret.get()))

    @property
    def primary_key_id(self) -> str:
        return self._primary

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._aeads)

    def __repr__(self) -> str:
        return f"Sealer(key_ids={self.key_ids!r})"

    def seal(self, webhook_id: str, plaintext: str) -> SealedSecret:
        """Encrypt ``plaintext`` for ``webhook_id`` with the first key."""
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = self._aeads[self._primary].encrypt(nonce, plaintext.encode("utf-8"), _aad(webhook_id))
        return SealedSecret(self._primary, nonce, ciphertext)

    def open(self, webhook_id: str, sealed: SealedSecret) -> str:
        """Decrypt a secret sealed for ``webhook_id``; raise :class:`UnsealError` if it does not open."""
        aead = self._aeads.get(sealed.key_id)
        if aead is None:
            raise UnsealError(
                f"secret of webhook {webhook_id} is sealed with unknown key id {sealed.key_id!r}"
            )
        if len(sealed.nonce) != NONCE_BYTES:
            raise UnsealError(f"secret of webhook {webhook_id} has a {len(sealed.nonce)}-byte nonce")
        try:
            raw = aead.decrypt(sealed.nonce, sealed.ciphertext, _aad(webhook_id))
        except InvalidTag:
            raise UnsealError(
                f"secret of webhook {webhook_id} does not open (tampered, or sealed for another webhook)"
            ) from None
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise UnsealError(f"secret of webhook {webhook_id} is not UTF-8") from None


def _aad(webhook_id: str) -> bytes:
    return webhook_id.encode("utf-8")
