"""What the management API accepts: pure checks of request bodies, no HTTP involved.

Each check raises :class:`~api.errors.InvalidRequest` with a stable code and a message
that names the field but never quotes a secret. The first problem found is reported.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from api.errors import InvalidRequest
from hookline.addresses import IPAddress, is_public_address, looks_internal_hostname, parse_host_literal
from hookline.signing import SecretError, hmac_key
from hookline.webhooks import EVENT_TYPES, ORDERINGS

__all__ = [
    "FIELDS",
    "MAX_BODY_BYTES",
    "MAX_NAME_LENGTH",
    "MAX_RATE_LIMIT",
    "MAX_URL_LENGTH",
    "UNLIMITED",
    "NewWebhook",
    "UrlRules",
    "WebhookChanges",
    "check_active",
    "check_name",
    "check_ordering",
    "check_rate_limit",
    "check_secret",
    "check_subscriptions",
    "check_url",
    "parse_create",
    "parse_json_object",
    "parse_limit",
    "parse_patch",
]

MAX_BODY_BYTES = 64 * 1024
MAX_NAME_LENGTH = 255
MAX_URL_LENGTH = 2048
DEFAULT_LIMIT = 10
MAX_LIMIT = 100
MAX_RATE_LIMIT = 10_000
#: In :class:`WebhookChanges`, a ``rate_limit`` that removes the limit (the API's ``"rateLimit": null``).
UNLIMITED = 0

#: Every field a client may send, in the order they are checked.
FIELDS = ("name", "url", "subscriptions", "secret", "active", "rateLimit", "ordering")
#: The attribute of :class:`NewWebhook` and :class:`WebhookChanges` that holds each field.
_ATTRS = {"rateLimit": "rate_limit"}
_REQUIRED = ("name", "url", "subscriptions")

_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")


@dataclass(frozen=True, slots=True)
class NewWebhook:
    name: str
    url: str
    subscriptions: tuple[str, ...]
    secret: str | None  # None: generate one
    active: bool = True
    rate_limit: int | None = None  # requests per second; None: unlimited
    ordering: str = "none"  # one of hookline.webhooks.ORDERINGS

    def __repr__(self) -> str:
        return (
            f"NewWebhook(name={self.name!r}, subscriptions={self.subscriptions!r}, active={self.active},"
            f" rate_limit={self.rate_limit}, ordering={self.ordering!r})"
        )


@dataclass(frozen=True, slots=True)
class WebhookChanges:
    """A validated merge-patch: None means "leave as it is"."""

    name: str | None = None
    url: str | None = None
    subscriptions: tuple[str, ...] | None = None
    secret: str | None = None
    active: bool | None = None
    rate_limit: int | None = None  # UNLIMITED removes the limit
    ordering: str | None = None

    def __repr__(self) -> str:
        changed = [f for f in FIELDS if getattr(self, _ATTRS.get(f, f)) is not None]
        return f"WebhookChanges({', '.join(changed)})"

    @property
    def empty(self) -> bool:
        return all(getattr(self, _ATTRS.get(f, f)) is None for f in FIELDS)


class UrlRules:
    """Which receiver URLs may be saved, given the networks allowed for development.

    Plain ``http`` and non-public hosts are accepted only for IP literals inside
    ``allow_networks`` (and ``localhost`` when loopback is allowed). Host names are judged by
    their spelling only; the delivery worker checks the address they resolve to.
    """

    __slots__ = ("_networks",)

    def __init__(self, allow_networks: Sequence[str] = ()) -> None:
        self._networks = tuple(ipaddress.ip_network(n, strict=False) for n in allow_networks)

    def allows(self, ip: IPAddress) -> bool:
        mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
        return any(ip in n or (mapped is not None and mapped in n) for n in self._networks)

    def allows_localhost(self) -> bool:
        return self.allows(ipaddress.IPv4Address("127.0.0.1")) or self.allows(ipaddress.IPv6Address("::1"))


# -- body and parameters -----------------------------------------------------------------------


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """Parse a request body that must be one JSON object."""
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidRequest("body_too_large", f"the request body exceeds {MAX_BODY_BYTES} bytes", status=413)
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest("invalid_json", "the request body is not valid UTF-8 JSON", status=400) from None
    if not isinstance(doc, dict):
        raise InvalidRequest("invalid_body", "the request body must be a JSON object", status=400)
    return doc


def parse_limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidRequest("invalid_limit", f"limit must be an integer from 1 to {MAX_LIMIT}", status=400)
    return int(raw)


# -- fields --------------------------------------------------------------------------------------


def _type_name(value: object) -> str:
    return {
        type(None): "null",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
    }.get(type(value), "an unsupported value")


def _expect(field: str, value: object, kind: type, what: str) -> None:
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise InvalidRequest("invalid_type", f"{field} must be {what}, not {_type_name(value)}")


def check_name(value: object) -> str:
    _expect("name", value, str, "a string")
    assert isinstance(value, str)
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidRequest("name_too_long", f"name must be at most {MAX_NAME_LENGTH} characters")
    if not value.strip():
        raise InvalidRequest("name_invalid", "name must not be empty or blank")
    if not value.isprintable():
        raise InvalidRequest(
            "name_invalid", "name must contain only printable characters (no control characters)"
        )
    return value


def check_url(value: object, rules: UrlRules) -> str:
    _expect("url", value, str, "a string")
    assert isinstance(value, str)
    if len(value) > MAX_URL_LENGTH:
        raise InvalidRequest("url_too_long", f"url must be at most {MAX_URL_LENGTH} characters")
    if not value:
        raise InvalidRequest("invalid_url", "url must not be empty")
    if not value.isprintable() or any(c.isspace() or c == "\\" for c in value):
        raise InvalidRequest(
            "invalid_url", "url must not contain whitespace, backslashes or control characters"
        )
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise InvalidRequest("invalid_url", "url is not a valid URL") from None
    if not parts.scheme or not value.lower().startswith(parts.scheme + "://") or not parts.netloc:
        raise InvalidRequest("invalid_url", "url must be absolute, such as https://example.com/hooks")
    if parts.scheme not in ("http", "https"):
        raise InvalidRequest("url_not_https", "url must use https")
    if "@" in parts.netloc:
        raise InvalidRequest("url_has_credentials", "url must not contain a user name or password")
    if parts.fragment or value.endswith("#"):
        raise InvalidRequest("invalid_url", "url must not contain a fragment (#...)")
    if port == 0:
        raise InvalidRequest("invalid_url", "url has an invalid port")
    host = parts.hostname or ""
    if not host:
        raise InvalidRequest("invalid_url", "url has no host")
    allowed = _check_host(host, rules)
    if parts.scheme == "http" and not allowed:
        raise InvalidRequest("url_not_https", "url must use https")
    return value


def _check_host(host: str, rules: UrlRules) -> bool:
    """Refuse a host that is or names a non-public address; return True when it is allow-listed."""
    literal = parse_host_literal(host)
    if literal is not None:
        if rules.allows(literal):
            return True
        if not is_public_address(literal):
            raise InvalidRequest("url_private_address", "url must not point to a private or reserved address")
        return False
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise InvalidRequest("invalid_url", "url has an invalid host name") from None
    labels = ascii_host.lower().removesuffix(".").split(".")
    if len(ascii_host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise InvalidRequest("invalid_url", "url has an invalid host name")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        # URL parsers read such a host as an IPv4 address, and this one is not a valid one.
        raise InvalidRequest("invalid_url", "url has an invalid IPv4 address")
    if looks_internal_hostname(host):
        local = labels[-1] == "localhost"
        if local and rules.allows_localhost():
            return True
        raise InvalidRequest("url_internal_hostname", "url must not name a host of an internal network")
    return False


def check_subscriptions(value: object) -> tuple[str, ...]:
    _expect("subscriptions", value, list, "an array of event names")
    assert isinstance(value, list)
    if not value:
        raise InvalidRequest("subscriptions_empty", "subscriptions must list at least one event")
    seen: set[str] = set()
    for item in value:
        _expect("each subscription", item, str, "an event name string")
        if item not in EVENT_TYPES:
            raise InvalidRequest(
                "subscription_unknown_event",
                f"subscriptions may only contain {', '.join(EVENT_TYPES)}",
            )
        if item in seen:
            raise InvalidRequest("subscription_duplicate", f"subscriptions lists {item} more than once")
        seen.add(item)
    return tuple(e for e in EVENT_TYPES if e in seen)


def check_secret(value: object) -> str:
    _expect("secret", value, str, "a string")
    assert isinstance(value, str)
    try:
        # The signer's own rule, so that every secret saved here can sign; its messages never
        # quote the value.
        hmac_key(value)
    except SecretError as exc:
        raise InvalidRequest("secret_invalid", str(exc)) from None
    return value


def check_active(value: object) -> bool:
    _expect("active", value, bool, "true or false")
    assert isinstance(value, bool)
    return value


def check_rate_limit(value: object) -> int:
    """Requests per second: a whole number from 1 to :data:`MAX_RATE_LIMIT` (JSON null, unlimited,
    is the caller's business)."""
    what = f"a whole number of requests per second from 1 to {MAX_RATE_LIMIT}"
    _expect("rateLimit", value, int, what)
    assert isinstance(value, int)
    if not 1 <= value <= MAX_RATE_LIMIT:
        raise InvalidRequest("rate_limit_out_of_range", f"rateLimit must be {what}")
    return value


def check_ordering(value: object) -> str:
    """The webhook's delivery order: one of :data:`hookline.webhooks.ORDERINGS` (JSON null, the
    default "none", is the caller's business)."""
    what = " or ".join(f'"{o}"' for o in ORDERINGS)
    _expect("ordering", value, str, what)
    assert isinstance(value, str)
    if value not in ORDERINGS:
        raise InvalidRequest(
            "ordering_invalid",
            f"ordering must be {what} (contact: one contact's messages in publish order), not {value[:40]!r}",
        )
    return value


# -- whole bodies --------------------------------------------------------------------------------


def _reject_unknown(body: Mapping[str, Any]) -> None:
    unknown = sorted(k for k in body if k not in FIELDS)
    if unknown:
        shown = unknown[0] if len(unknown[0]) <= 64 else unknown[0][:64] + "..."
        raise InvalidRequest("unknown_field", f"unknown field {shown!r}; allowed: {', '.join(FIELDS)}")


def parse_create(body: Mapping[str, Any], rules: UrlRules) -> NewWebhook:
    """Validate a ``POST /api/webhooks`` body."""
    _reject_unknown(body)
    for field in _REQUIRED:
        if field not in body:
            raise InvalidRequest("missing_field", f"{field} is required")
    name = check_name(body["name"])
    url = check_url(body["url"], rules)
    subscriptions = check_subscriptions(body["subscriptions"])
    # Optional fields may be sent as null, meaning "not given".
    secret = None if body.get("secret") is None else check_secret(body["secret"])
    active = True if body.get("active") is None else check_active(body["active"])
    rate_limit = None if body.get("rateLimit") is None else check_rate_limit(body["rateLimit"])
    ordering = "none" if body.get("ordering") is None else check_ordering(body["ordering"])
    return NewWebhook(name, url, subscriptions, secret, active, rate_limit, ordering)


def parse_patch(body: Mapping[str, Any], rules: UrlRules) -> WebhookChanges:
    """Validate a JSON merge-patch (RFC 7396) of a webhook; absent fields stay as they are."""
    _reject_unknown(body)
    for field in FIELDS:
        if field in body and body[field] is None and field not in ("rateLimit", "ordering"):
            # In a merge-patch null removes a member; these members of a webhook are required.
            raise InvalidRequest("invalid_type", f"{field} cannot be null (it cannot be removed)")
    rate_limit = None
    if "rateLimit" in body:  # null removes the limit
        rate_limit = UNLIMITED if body["rateLimit"] is None else check_rate_limit(body["rateLimit"])
    return WebhookChanges(
        name=check_name(body["name"]) if "name" in body else None,
        url=check_url(body["url"], rules) if "url" in body else None,
        subscriptions=check_subscriptions(body["subscriptions"]) if "subscriptions" in body else None,
        secret=check_secret(body["secret"]) if "secret" in body else None,
        active=check_active(body["active"]) if "active" in body else None,
        rate_limit=rate_limit,
        # null removes the member: the default, "none"
        ordering=None
        if "ordering" not in body
        else "none"
        if body["ordering"] is None
        else check_ordering(body["ordering"]),
    )
