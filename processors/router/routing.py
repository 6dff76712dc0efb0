"""The join: one decoded event + the account's webhooks -> delivery tasks (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from hookline.payloads import build_payload
from hookline.records import DeliveryTask, Trigger
from hookline.webhooks import Webhook

__all__ = ["tasks_for"]


def tasks_for(
    event: Mapping[str, Any], webhooks: Iterable[Webhook], now_ms: int, *, trigger: Trigger = "automatic"
) -> list[DeliveryTask]:
    """A task for every webhook of the event's account that is active and subscribed to its type.

    The JSON body is built once per event and shared by every task; tasks come in webhook id order.
    A replay (``trigger="replay"``) passes its one webhook: same body, same message id as the routing.
    """
    event_type = event["type"]
    wanted = [w for w in webhooks if w.account_id == event["accountId"] and w.wants(event_type)]
    if not wanted:
        return []
    body = build_payload(event)
    return [
        DeliveryTask.for_webhook(
            w,
            event_id=event["eventId"],
            event_type=event_type,
            occurred_at=event["occurredAt"],
            payload=body,
            now_ms=now_ms,
            trigger=trigger,
        )
        for w in sorted(wanted, key=lambda w: w.id)
    ]
