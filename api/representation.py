"""The JSON a client sees: a webhook the way systeme.io's public API shows one (camelCase).

The secret is not part of this shape; the create response adds it once, when it was generated.
The pydantic models exist for the OpenAPI document only; responses are built as plain dicts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field

from hookline import timestamps
from hookline.signing import SECRET_MAX_LENGTH, SECRET_MIN_LENGTH
from hookline.webhooks import EVENT_TYPES, Webhook

__all__ = [
    "ErrorBody",
    "WebhookCreate",
    "WebhookCreated",
    "WebhookList",
    "WebhookOut",
    "WebhookPatch",
    "present",
    "rfc3339",
]

if TYPE_CHECKING:
    EventName: TypeAlias = str
else:
    # Subscripting with the tuple spells out its six names, so pydantic documents them as an enum;
    # a type checker cannot read a Literal made from a variable, hence plain str for it.
    EventName = Literal[EVENT_TYPES]


def rfc3339(millis: int | None) -> str | None:
    """Format epoch milliseconds as RFC 3339 (the kernel's format); None stays None (JSON null)."""
    return None if millis is None else timestamps.rfc3339(millis)


def present(webhook: Webhook) -> dict[str, Any]:
    """The public representation of ``webhook`` — never its secret."""
    return {
        "id": webhook.id,
        "name": webhook.name,
        "url": webhook.url,
        "subscriptions": [
            {"event": s.event, "disabledAt": rfc3339(s.disabled_at), "disabledReason": s.disabled_reason}
            for s in webhook.subscriptions
        ],
        "active": webhook.active,
        "disabledReason": webhook.disabled_reason,
        "disabledAt": rfc3339(webhook.disabled_at),
        "rateLimit": webhook.rate_limit,
        "ordering": webhook.ordering,
        "createdAt": rfc3339(webhook.created_at),
        "updatedAt": rfc3339(webhook.updated_at),
    }


# -- OpenAPI documentation models ---------------------------------------------------------------


_RATE_LIMIT = (
    "Requests per second hookline sends to this webhook at most, 1 to 10000 (evenly spaced; tasks"
    " beyond it wait, none is dropped); null: no limit."
)
_ORDERING = (
    'Delivery order. "none" (default): messages are sent concurrently and a retry may overtake a later'
    " message. \"contact\": the messages about one contact (the event's contact, a sale's buyer) are"
    " sent one at a time in the order the events were published; the next waits until the previous one"
    " was delivered, finally failed or skipped, and a failing one holds up only its own contact."
)


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WebhookCreate(_Doc):
    name: str = Field(min_length=1, max_length=255, description="Printable characters, no line breaks.")
    url: str = Field(max_length=2048, description="Absolute https URL of a public host.")
    subscriptions: list[EventName] = Field(min_length=1, description="The events that trigger this webhook.")
    secret: str | None = Field(
        default=None,
        min_length=SECRET_MIN_LENGTH,
        max_length=SECRET_MAX_LENGTH,
        description="Signing secret; omit it to have one generated (returned once, in this response).",
    )
    active: bool = True
    rateLimit: int | None = Field(default=None, ge=1, le=10_000, description=_RATE_LIMIT)
    ordering: Literal["none", "contact"] | None = Field(default="none", description=_ORDERING)


class WebhookPatch(_Doc):
    """JSON merge-patch (RFC 7396): absent fields stay; ``subscriptions`` replaces the list."""

    name: str | None = Field(default=None, min_length=1, max_length=255)
    url: str | None = Field(default=None, max_length=2048)
    subscriptions: list[EventName] | None = Field(default=None, min_length=1)
    secret: str | None = Field(
        default=None,
        min_length=SECRET_MIN_LENGTH,
        max_length=SECRET_MAX_LENGTH,
        description="Rotates the secret.",
    )
    active: bool | None = None
    rateLimit: int | None = Field(
        default=None, ge=1, le=10_000, description=_RATE_LIMIT + " In a patch, null removes the limit."
    )
    ordering: Literal["none", "contact"] | None = Field(
        default=None, description=_ORDERING + ' In a patch, null sets "none".'
    )


class SubscriptionOut(BaseModel):
    event: EventName
    disabledAt: str | None = Field(description="RFC 3339 time the platform disabled it, or null.")
    disabledReason: str | None


class WebhookOut(BaseModel):
    id: str
    name: str
    url: str
    subscriptions: list[SubscriptionOut]
    active: bool
    disabledReason: str | None = Field(description="Why the platform disabled the webhook, or null.")
    disabledAt: str | None = Field(
        default=None, description="RFC 3339 time the platform disabled the webhook, or null."
    )
    rateLimit: int | None = Field(default=None, description=_RATE_LIMIT)
    ordering: Literal["none", "contact"] = Field(default="none", description=_ORDERING)
    createdAt: str
    updatedAt: str


class WebhookCreated(WebhookOut):
    secret: str | None = Field(
        default=None, description="The generated secret, present only when none was given. Shown once."
    )


class WebhookList(BaseModel):
    items: list[WebhookOut]
    hasMore: bool = Field(description="Pass the last item's id as startingAfter for the next page.")


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. url_not_https.")
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail
