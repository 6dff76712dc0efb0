"""The webhook as every role sees it: a typed view of one WebhookConfig record."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["EVENT_TYPES", "ORDERINGS", "SealedSecret", "Subscription", "Webhook"]

#: The six events, in the order systeme.io lists them (docs/architecture.md §1).
EVENT_TYPES: tuple[str, ...] = (
    "CONTACT_CREATED",
    "CONTACT_TAG_ADDED",
    "CONTACT_TAG_REMOVED",
    "CONTACT_OPT_IN",
    "SALE_NEW",
    "SALE_CANCELED",
)

#: A webhook's delivery order: "none" (concurrent, retries overtake) or "contact" (one contact's
#: messages one at a time, in publish order; docs/architecture.md §6, *Ordered delivery*).
ORDERINGS: tuple[str, ...] = ("none", "contact")


@dataclass(frozen=True, slots=True)
class SealedSecret:
    """A webhook secret encrypted at rest (see :mod:`hookline.sealing`)."""

    key_id: str
    nonce: bytes
    ciphertext: bytes

    def __repr__(self) -> str:
        return f"SealedSecret(key_id={self.key_id!r}, ...)"

    def to_record(self) -> dict[str, Any]:
        return {"keyId": self.key_id, "nonce": self.nonce, "ciphertext": self.ciphertext}

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> SealedSecret:
        return cls(r["keyId"], bytes(r["nonce"]), bytes(r["ciphertext"]))


@dataclass(frozen=True, slots=True)
class Subscription:
    event: str
    disabled_at: int | None = None
    disabled_reason: str | None = None

    @property
    def enabled(self) -> bool:
        return self.disabled_at is None


@dataclass(frozen=True, slots=True)
class Webhook:
    id: str
    account_id: str
    name: str
    url: str
    secret: SealedSecret
    subscriptions: tuple[Subscription, ...]
    active: bool
    created_at: int
    updated_at: int
    version: int
    disabled_reason: str | None = None
    previous_secret: SealedSecret | None = None
    previous_secret_expires_at: int | None = None
    disabled_at: int | None = None  # when the platform switched it off (410 Gone, a failure streak)
    rate_limit: int | None = None  # requests per second at most (per webhook, enforced by its worker)
    ordering: str = "none"  # "contact": one contact's messages in publish order (ORDERINGS)

    def switched_off(self, *, reason: str, now_ms: int) -> Webhook:
        """This webhook switched off by the platform: inactive, with ``reason``, one version later."""
        return dataclasses.replace(
            self,
            active=False,
            disabled_reason=reason,
            disabled_at=now_ms,
            version=self.version + 1,
            updated_at=max(now_ms, self.updated_at),
        )

    def wants(self, event_type: str) -> bool:
        """True when this webhook is active and subscribed (not disabled) to ``event_type``."""
        if not self.active:
            return False
        return any(s.event == event_type and s.disabled_at is None for s in self.subscriptions)

    def to_record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "accountId": self.account_id,
            "name": self.name,
            "url": self.url,
            "secret": self.secret.to_record(),
            "previousSecret": self.previous_secret.to_record() if self.previous_secret else None,
            "previousSecretExpiresAt": self.previous_secret_expires_at,
            "subscriptions": [
                {"event": s.event, "disabledAt": s.disabled_at, "disabledReason": s.disabled_reason}
                for s in self.subscriptions
            ],
            "active": self.active,
            "disabledReason": self.disabled_reason,
            "disabledAt": self.disabled_at,
            "rateLimit": self.rate_limit,
            "ordering": self.ordering,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "version": self.version,
        }

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> Webhook:
        prev = r.get("previousSecret")
        return cls(
            id=r["id"],
            account_id=r["accountId"],
            name=r["name"],
            url=r["url"],
            secret=SealedSecret.from_record(r["secret"]),
            previous_secret=SealedSecret.from_record(prev) if prev else None,
            previous_secret_expires_at=r.get("previousSecretExpiresAt"),
            subscriptions=tuple(
                Subscription(s["event"], s.get("disabledAt"), s.get("disabledReason"))
                for s in r["subscriptions"]
            ),
            active=bool(r["active"]),
            disabled_reason=r.get("disabledReason"),
            disabled_at=r.get("disabledAt"),
            rate_limit=r.get("rateLimit"),
            ordering=r.get("ordering") or "none",
            created_at=int(r["createdAt"]),
            updated_at=int(r["updatedAt"]),
            version=int(r["version"]),
        )
