"""The records a delivery worker writes, built from plain values (pure).

- a DeliveryResult per attempt and per skip (``webhook-results``);
- the task again, for its next attempt (a retry tier);
- a DeadLetter for an exhausted task or an input that cannot be read (``webhook-dlq``);
- the webhook's config, switched off after ``410 Gone`` (``webhook-config``).

Outcomes of a result record: ``delivered`` (2xx); ``failed`` (any other attempt; ``final`` says
whether another automatic attempt follows); ``dead_lettered`` (the last allowed attempt failed:
the task went to the DLQ, ``final`` is true); ``skipped`` (no request: the webhook is deleted,
inactive, or no longer subscribed; ``final`` is true).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from hookline.webhooks import Webhook

__all__ = [
    "EXCERPT_BYTES",
    "REQUEST_BODY_BYTES",
    "Exchange",
    "bounded_headers",
    "dead_letter_record",
    "disabled_config",
    "public_url",
    "result_record",
    "retry_task",
    "skipped_result",
]

#: The most of a response body a result record keeps; the sender stops reading there.
EXCERPT_BYTES = 16 * 1024
#: The most of the request body a result record keeps, so that a result always fits in a record.
REQUEST_BODY_BYTES = 256 * 1024
_MAX_HEADERS = 64
_MAX_HEADER_VALUE = 1024
_MAX_MESSAGE = 1000


def public_url(url: str) -> str:
    """``url`` without credentials, query and fragment: what a result record may show."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<invalid url>"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@dataclass(frozen=True, slots=True)
class Exchange:
    """One HTTP attempt as a result record shows it: the request sent, and the response or the error."""

    attempt_id: str
    attempted_at_ms: int
    url: str  # already stripped by public_url
    request_headers: Mapping[str, str]  # signatures already redacted
    latency: float
    status: int | None = None
    response_headers: Mapping[str, str] = field(default_factory=dict)
    excerpt: bytes = b""
    truncated: bool = False
    error_class: str | None = None
    error_message: str | None = None

    def header(self, name: str) -> str | None:
        """A response header by case-insensitive name."""
        lowered = name.lower()
        for key, value in self.response_headers.items():
            if key.lower() == lowered:
                return value
        return None


def bounded_headers(items: Any) -> dict[str, str]:
    """At most 64 headers, each value cut at 1 KiB; repeated names joined with ``, ``."""
    out: dict[str, str] = {}
    for key, value in items:
        if key in out:
            out[key] = (out[key] + ", " + value)[:_MAX_HEADER_VALUE]
        elif len(out) < _MAX_HEADERS:
            out[key] = value[:_MAX_HEADER_VALUE]
    return out


def result_record(
    task: Mapping[str, Any],
    exchange: Exchange,
    *,
    outcome: str,
    final: bool,
    next_retry_at_ms: int | None = None,
) -> dict[str, Any]:
    """The DeliveryResult of one attempt of ``task``."""
    return {
        "messageId": task["messageId"],
        "attemptId": exchange.attempt_id,
        "attempt": task["attempt"],
        "eventId": task["eventId"],
        "webhookId": task["webhookId"],
        "accountId": task["accountId"],
        "eventType": task["eventType"],
        "eventOccurredAt": task["eventOccurredAt"],
        "attemptedAt": exchange.attempted_at_ms,
        "url": exchange.url,
        "requestHeaders": dict(exchange.request_headers),
        "requestBody": task["payload"][:REQUEST_BODY_BYTES],
        "responseStatus": exchange.status,
        "responseHeaders": dict(exchange.response_headers),
        "responseBodyExcerpt": exchange.excerpt[:EXCERPT_BYTES],
        "responseBodyTruncated": exchange.truncated or len(exchange.excerpt) > EXCERPT_BYTES,
        "latencySeconds": float(exchange.latency),
        "outcome": outcome,
        "errorClass": exchange.error_class,
        "errorMessage": exchange.error_message[:_MAX_MESSAGE] if exchange.error_message else None,
        "nextRetryAt": next_retry_at_ms,
        "final": final,
        "trigger": task["trigger"],
    }


def skipped_result(
    task: Mapping[str, Any], *, attempt_id: str, now_ms: int, url: str, reason: str
) -> dict[str, Any]:
    """The DeliveryResult of a task that was not sent (``reason`` says why)."""
    exchange = Exchange(attempt_id, now_ms, url, {}, 0.0, error_message=reason)
    return result_record(task, exchange, outcome="skipped", final=True)


def retry_task(
    task: Mapping[str, Any], *, attempt: int, due_at_ms: int, first_attempt_at_ms: int
) -> dict[str, Any]:
    """``task`` again, for attempt ``attempt``, due at ``due_at_ms``."""
    out = dict(task)
    out["attempt"] = attempt
    out["dueAt"] = due_at_ms
    if out.get("firstAttemptAt") is None:
        out["firstAttemptAt"] = first_attempt_at_ms
    return out


def dead_letter_record(
    *,
    reason: str,
    detail: str,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    now_ms: int,
) -> dict[str, Any]:
    """A DeadLetter of the delivery stage; ``value`` is the consumed record's bytes, unchanged."""
    return {
        "stage": "deliver",
        "reason": reason,
        "detail": detail[:_MAX_MESSAGE],
        "sourceTopic": topic,
        "sourcePartition": partition,
        "sourceOffset": offset,
        "key": key,
        "value": value,
        "failedAt": now_ms,
    }


def disabled_config(webhook: Webhook, *, reason: str, now_ms: int) -> Webhook:
    """``webhook`` switched off by the platform: inactive, with ``reason``, one version later."""
    return dataclasses.replace(
        webhook, active=False, disabled_reason=reason, version=webhook.version + 1, updated_at=now_ms
    )
