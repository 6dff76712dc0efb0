"""The join: one decoded event + the account's webhooks -> delivery task records (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from hookline.payloads import build_payload
from hookline.signing import message_id
from hookline.webhooks import Webhook

__all__ = ["tasks_for"]


def tasks_for(event: Mapping[str, Any], webhooks: Iterable[Webhook], now_ms: int) -> list[dict[str, Any]]:
    """A DeliveryTask record for every webhook that is active and subscribed to the event's type.

    The JSON body is built once per event and shared by every task.
    """
    event_type = event["type"]
    wanted = [w for w in webhooks if w.account_id == event["accountId"] and w.wants(event_type)]
    if not wanted:
        return []
    body = build_payload(event)
    return [
        {
            "messageId": message_id(event["eventId"], w.id),
            "eventId": event["eventId"],
            "webhookId": w.id,
            "accountId": w.account_id,
            "eventType": event_type,
            "eventOccurredAt": event["occurredAt"],
            "routedAt": now_ms,
            "configVersion": w.version,
            "payload": body,
            "attempt": 1,
            "dueAt": 0,
            "trigger": "automatic",
            "firstAttemptAt": None,
        }
        for w in sorted(wanted, key=lambda w: w.id)
    ]
