"""Delivery tasks and results for tests (valid for the codec)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from hookline.records import DeliveryResult, DeliveryTask

__all__ = ["delivery_result", "delivery_task", "now_ms"]


def now_ms() -> int:
    return int(time.time() * 1000)


def delivery_task(**fields: Any) -> DeliveryTask:
    """A task of webhook ``wh`` of account ``a`` (message ``msg_1``); ``fields`` change it (snake_case)."""
    task = DeliveryTask(
        message_id="msg_1", event_id="e1", webhook_id="wh", account_id="a", event_type="SALE_NEW",
        event_occurred_at=1, routed_at=1, config_version=1, payload=b"{}",
    )
    return dataclasses.replace(task, **fields)


def delivery_result(
    account_id: str,
    webhook_id: str,
    message_id: str,
    attempt: int = 1,
    *,
    attempted_at: int | None = None,
    outcome: str = "delivered",
    final: bool | None = None,
    status: int | None = None,
    event_type: str = "SALE_NEW",
    trigger: str = "automatic",
    attempt_id: str | None = None,
    **fields: Any,
) -> DeliveryResult:
    """One attempt's result; ``status`` defaults from ``outcome`` (200, 503, or none for a skip)."""
    at = attempted_at if attempted_at is not None else now_ms()
    if status is None and outcome != "skipped":
        status = 200 if outcome == "delivered" else 503
    record: dict[str, Any] = {
        "messageId": message_id,
        "attemptId": attempt_id or f"{message_id}.{attempt}",
        "attempt": attempt,
        "eventId": f"evt-{message_id}",
        "webhookId": webhook_id,
        "accountId": account_id,
        "eventType": event_type,
        "eventOccurredAt": at - 1000,
        "attemptedAt": at,
        "url": "https://receiver.example/hook",
        "requestHeaders": {"Content-Type": "application/json", "X-Webhook-Event": event_type,
                           "X-Webhook-Signature": "***", "X-Webhook-Message-Id": message_id},
        "requestBody": b'{"order": {"id": 11}}',
        "responseStatus": status,
        "responseHeaders": {"content-type": "text/plain"} if status is not None else {},
        "responseBodyExcerpt": b"ok" if outcome == "delivered" else b"",
        "responseBodyTruncated": False,
        "latencySeconds": 0.042,
        "outcome": outcome,
        "errorClass": None if outcome in ("delivered", "skipped") else "http_5xx",
        "errorMessage": None,
        "nextRetryAt": None,
        "final": final if final is not None else outcome != "failed",
        "trigger": trigger,
    }
    record.update(fields)
    return DeliveryResult.from_record(record)
