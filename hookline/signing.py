"""Signatures and headers of every delivery attempt (docs/architecture.md §5).

Two schemes sign the same body bytes with the same key:

- systeme.io's ``X-Webhook-Signature``: lowercase hex HMAC-SHA256(key, body);
- Standard Webhooks' ``webhook-signature``: ``v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}." + body)>``,
  one entry per secret still valid, current secret first.

A test send (the owner's "send test event") also carries ``X-Webhook-Test: true``.

:func:`hmac_key` holds the one rule for secrets, which the API applies when a secret is saved and
the worker when it signs: a ``whsec_`` secret is standard base64 with its padding, of 24 to 64
bytes, which are the key (the Standard Webhooks form); any other secret (systeme.io lets users
type their own) is keyed by its UTF-8 bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from secrets import token_bytes

from hookline.timestamps import rfc3339

__all__ = [
    "SECRET_MAX_LENGTH",
    "SECRET_MIN_LENGTH",
    "SIGNATURE_HEADERS",
    "TEST_HEADER",
    "SecretError",
    "Signer",
    "generate_secret",
    "hmac_key",
    "message_id",
    "redact_headers",
    "sign_headers",
    "standard_signature",
    "systeme_signature",
]

_WHSEC = "whsec_"

#: How long any secret may be, in characters.
SECRET_MIN_LENGTH = 8
SECRET_MAX_LENGTH = 512
# How many bytes a whsec_ secret encodes: the Standard Webhooks range.
_WHSEC_MIN_BYTES = 24
_WHSEC_MAX_BYTES = 64
# How many random bytes a generated secret encodes: the Standard Webhooks minimum.
_GENERATED_BYTES = 24

#: Headers whose values are signatures, lowercase; :func:`redact_headers` hides them.
SIGNATURE_HEADERS = frozenset({"x-webhook-signature", "webhook-signature"})

_REDACTED = "redacted"

#: The header that marks a test send; receivers may ignore such a request's content.
TEST_HEADER = "X-Webhook-Test"


class SecretError(ValueError):
    """A webhook secret cannot be used as an HMAC key."""


def hmac_key(secret: str) -> bytes:
    """Return the HMAC key bytes of ``secret``; raise :class:`SecretError` if it breaks the rule.

    Every secret is 8 to 512 printable characters without leading or trailing whitespace. A
    ``whsec_`` secret continues in standard base64 with its ``=`` padding, and its key is the 24
    to 64 bytes that decodes to; the key of any other secret is its UTF-8 bytes. The message
    says which rule is broken and never quotes the secret.
    """
    if not SECRET_MIN_LENGTH <= len(secret) <= SECRET_MAX_LENGTH:
        raise SecretError(f"secret must be {SECRET_MIN_LENGTH} to {SECRET_MAX_LENGTH} characters long")
    if not secret.isprintable() or secret != secret.strip():
        raise SecretError("secret must be printable characters without leading or trailing spaces")
    if not secret.startswith(_WHSEC):
        return secret.encode("utf-8")
    try:
        # validate=True: the standard alphabet only, and no "=" is added, so the padding must be there
        # (receivers' libraries differ on unpadded base64). This is the check the API has always made:
        # no secret it accepted before stops signing.
        key = base64.b64decode(secret[len(_WHSEC) :], validate=True)
    except ValueError as exc:  # binascii.Error, or a character outside ASCII
        raise SecretError(
            "a secret starting with whsec_ must continue in standard base64, with its = padding"
        ) from exc
    if not _WHSEC_MIN_BYTES <= len(key) <= _WHSEC_MAX_BYTES:
        raise SecretError(f"a whsec_ secret must encode {_WHSEC_MIN_BYTES} to {_WHSEC_MAX_BYTES} bytes")
    return key


def generate_secret() -> str:
    """Return a new random secret: ``whsec_`` and the padded base64 of 24 random bytes."""
    return _WHSEC + base64.b64encode(token_bytes(_GENERATED_BYTES)).decode("ascii")


def systeme_signature(secret: str, body: bytes) -> str:
    """Return the ``X-Webhook-Signature`` value: lowercase hex HMAC-SHA256(key, body)."""
    return hmac.new(hmac_key(secret), body, hashlib.sha256).hexdigest()


def standard_signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Return one Standard Webhooks signature, ``v1,<base64 HMAC-SHA256(key, "{id}.{ts}." + body)>``."""
    mac = hmac.new(hmac_key(secret), f"{msg_id}.{timestamp}.".encode(), hashlib.sha256)
    mac.update(body)
    return "v1," + base64.b64encode(mac.digest()).decode("ascii")


class Signer:
    """Sign attempts for one set of secrets: build once per webhook config, reuse for every attempt.

    ``secrets`` lists the current secret first, then rotated ones that are still valid. The
    keyed HMAC states are computed here, so an attempt only hashes its own bytes.
    """

    __slots__ = ("_macs",)

    def __init__(self, secrets: Sequence[str]) -> None:
        if isinstance(secrets, str):
            raise TypeError("secrets must be a sequence of secrets, not one string")
        if not secrets:
            raise SecretError("at least one secret is needed")
        self._macs = tuple(hmac.new(hmac_key(s), digestmod=hashlib.sha256) for s in secrets)

    def __repr__(self) -> str:
        return f"Signer(<{len(self._macs)} secret(s)>)"

    def systeme_signature(self, body: bytes) -> str:
        """Return ``X-Webhook-Signature`` for ``body``, made with the current secret."""
        mac = self._macs[0].copy()
        mac.update(body)
        return mac.hexdigest()

    def standard_signature(self, msg_id: str, timestamp: int, body: bytes) -> str:
        """Return ``webhook-signature``: a ``v1,...`` entry per secret, current first, space-separated."""
        prefix = f"{msg_id}.{timestamp}.".encode()
        parts = []
        for base in self._macs:
            mac = base.copy()
            mac.update(prefix)
            mac.update(body)
            parts.append("v1," + base64.b64encode(mac.digest()).decode("ascii"))
        return " ".join(parts)

    def headers(
        self,
        *,
        event_type: str,
        msg_id: str,
        attempt_id: str,
        event_time_ms: int,
        timestamp: int,
        body: bytes,
        user_agent: str,
        test: bool = False,
    ) -> list[tuple[str, str]]:
        """Return every header of one attempt, in a fixed order (docs/architecture.md §5).

        ``event_time_ms`` is when the event happened (epoch milliseconds); ``timestamp`` is the
        attempt's own time in Unix seconds, which Standard Webhooks receivers check for freshness.
        ``test`` adds ``X-Webhook-Test: true`` at the end.
        """
        headers = [
            ("Content-Type", "application/json"),
            ("User-Agent", user_agent),
            ("X-Webhook-Event", event_type),
            ("X-Webhook-Signature", self.systeme_signature(body)),
            ("X-Webhook-Message-Id", msg_id),
            ("X-Webhook-Delivery-Attempt-Id", attempt_id),
            ("X-Webhook-Event-Timestamp", rfc3339(event_time_ms)),
            ("webhook-id", msg_id),
            ("webhook-timestamp", str(timestamp)),
            ("webhook-signature", self.standard_signature(msg_id, timestamp, body)),
        ]
        if test:
            headers.append((TEST_HEADER, "true"))
        return headers


def sign_headers(
    secrets: Sequence[str],
    *,
    event_type: str,
    msg_id: str,
    attempt_id: str,
    event_time_ms: int,
    timestamp: int,
    body: bytes,
    user_agent: str,
    test: bool = False,
) -> list[tuple[str, str]]:
    """Return every header of one attempt; on a hot path, keep a :class:`Signer` instead."""
    return Signer(secrets).headers(
        event_type=event_type,
        msg_id=msg_id,
        attempt_id=attempt_id,
        event_time_ms=event_time_ms,
        timestamp=timestamp,
        body=body,
        user_agent=user_agent,
        test=test,
    )


def redact_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    """Return ``headers`` as a dict with every signature value replaced by ``"redacted"``."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {name: _REDACTED if name.lower() in SIGNATURE_HEADERS else value for name, value in items}


def _field(text: str) -> bytes:
    raw = text.encode("utf-8")
    return len(raw).to_bytes(4, "big") + raw


def message_id(event_id: str, webhook_id: str) -> str:
    """Return the stable message id of (event, webhook): the same on every attempt and redelivery.

    ``msg_`` and 32 base32 characters (160 bits of SHA-256 over both ids, length-prefixed so
    that no two pairs share an input).
    """
    digest = hashlib.sha256(b"hookline.message-id.v1\x00" + _field(event_id) + _field(webhook_id)).digest()
    return "msg_" + base64.b32encode(digest[:20]).decode("ascii").lower()
