"""The webhook form of the web page: what the user typed, and the API's checks field by field.

The API reports the first problem of a JSON body; a form shows every field's problem at once, next
to that field, so each field is checked on its own with the API's own check functions (the same
codes and messages). What the user typed is kept as typed, to be shown again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from api.errors import InvalidRequest
from api.validation import (
    MAX_RATE_LIMIT,
    UNLIMITED,
    NewWebhook,
    UrlRules,
    WebhookChanges,
    check_name,
    check_ordering,
    check_rate_limit,
    check_secret,
    check_subscriptions,
    check_url,
)
from hookline.webhooks import Webhook

__all__ = ["EVENT_LABELS", "MAX_FORM_BYTES", "FieldErrors", "FormData", "WebhookForm", "parse_form"]

MAX_FORM_BYTES = 64 * 1024

FieldErrors = dict[str, str]


@dataclass(frozen=True, slots=True)
class FormData:
    """An ``application/x-www-form-urlencoded`` body: every value of every name, in order."""

    values: Mapping[str, Sequence[str]]

    def first(self, name: str) -> str:
        found = self.values.get(name)
        return found[0] if found else ""

    def all(self, name: str) -> list[str]:
        return list(self.values.get(name, ()))

    def has(self, name: str) -> bool:
        return name in self.values


def parse_form(body: bytes) -> FormData:
    """Parse a urlencoded body; undecodable bytes become U+FFFD (then fail the field checks)."""
    values: dict[str, list[str]] = {}
    text = body.decode("utf-8", "replace")
    for name, value in parse_qsl(text, keep_blank_values=True, max_num_fields=200):
        values.setdefault(name, []).append(value)
    return FormData(values)


@dataclass(slots=True)
class WebhookForm:
    """The create/edit form's fields as the user typed them."""

    name: str = ""
    url: str = ""
    secret: str = ""
    subscriptions: list[str] = field(default_factory=list)
    active: bool = True
    rate_limit: str = ""  # requests per second as typed; empty: no limit
    ordering: str = ""  # the checkbox's value: "contact" when checked, empty when not

    def __repr__(self) -> str:  # never the secret
        return f"WebhookForm(name={self.name!r}, subscriptions={self.subscriptions!r}, active={self.active})"

    @classmethod
    def from_form(cls, data: FormData) -> WebhookForm:
        return cls(
            name=data.first("name"),
            url=data.first("url").strip(),
            secret=data.first("secret"),
            subscriptions=data.all("subscriptions"),
            active=data.first("active") == "on",
            rate_limit=data.first("rate_limit").strip(),
            ordering=data.first("ordering"),
        )

    @classmethod
    def from_webhook(cls, hook: Webhook) -> WebhookForm:
        return cls(
            name=hook.name,
            url=hook.url,
            subscriptions=[s.event for s in hook.subscriptions],
            active=hook.active,
            rate_limit="" if hook.rate_limit is None else str(hook.rate_limit),
            ordering="" if hook.ordering == "none" else hook.ordering,
        )

    def checked(self, event: str) -> bool:
        return event in self.subscriptions

    def _check(self, rules: UrlRules, *, secret_optional: bool) -> tuple[dict[str, Any], FieldErrors]:
        values: dict[str, Any] = {}
        errors: FieldErrors = {}

        def run(name: str, check: Callable[[], Any]) -> None:
            try:
                values[name] = check()
            except InvalidRequest as exc:
                errors[name] = _sentence(exc.message)

        run("name", lambda: check_name(self.name))
        run("url", lambda: check_url(self.url, rules))
        # Unknown or repeated values can only come from a tampered form; the API's check says so.
        run("subscriptions", lambda: check_subscriptions(self.subscriptions))
        run("rate_limit", lambda: _rate_limit(self.rate_limit))
        # Only "contact" (checked) or nothing comes from the page; anything else was tampered with.
        run("ordering", lambda: check_ordering(self.ordering or "none"))
        if self.secret or not secret_optional:
            run("secret", lambda: check_secret(self.secret))
        else:
            values["secret"] = None
        return values, errors

    def to_new(self, rules: UrlRules) -> tuple[NewWebhook | None, FieldErrors]:
        """The webhook to create, or the message for each field in error. An empty secret is generated."""
        values, errors = self._check(rules, secret_optional=True)
        if errors:
            return None, errors
        return NewWebhook(
            values["name"],
            values["url"],
            values["subscriptions"],
            values["secret"],
            self.active,
            values["rate_limit"],
            values["ordering"],
        ), {}

    def to_changes(self, rules: UrlRules) -> tuple[WebhookChanges | None, FieldErrors]:
        """Every field as a merge-patch (an empty secret keeps the current one), or the field errors."""
        values, errors = self._check(rules, secret_optional=True)
        if errors:
            return None, errors
        return (
            WebhookChanges(
                name=values["name"],
                url=values["url"],
                subscriptions=values["subscriptions"],
                secret=values["secret"],
                active=self.active,
                rate_limit=UNLIMITED if values["rate_limit"] is None else values["rate_limit"],
                ordering=values["ordering"],
            ),
            {},
        )


def _rate_limit(typed: str) -> int | None:
    """The form's rate limit: empty is no limit, else the API's check of a whole number."""
    if not typed:
        return None
    if not typed.isascii() or not typed.isdigit():
        raise InvalidRequest(
            "invalid_type",
            f"rate limit must be a whole number of requests per second from 1 to {MAX_RATE_LIMIT}",
        )
    return check_rate_limit(int(typed))


def _sentence(message: str) -> str:
    """The API's message, capitalised for display next to a field ("url must use https" -> "URL ...")."""
    if message.startswith("url "):
        message = "URL " + message[4:]
    elif message.startswith("rateLimit "):
        message = "rate limit " + message[10:]
    elif message.startswith("subscriptions must list at least one event"):
        return "Choose at least one event."
    return message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")


#: A label for each of the events the form lists (it lists ``EVENT_TYPES``, in that order).
EVENT_LABELS: dict[str, str] = {
    "CONTACT_CREATED": "Contact created",
    "CONTACT_TAG_ADDED": "Tag added to a contact",
    "CONTACT_TAG_REMOVED": "Tag removed from a contact",
    "CONTACT_OPT_IN": "Contact opted in (form)",
    "SALE_NEW": "New sale",
    "SALE_CANCELED": "Sale canceled or refunded",
}
