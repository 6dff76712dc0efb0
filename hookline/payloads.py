"""Build the JSON body a receiver gets for an event (docs/architecture.md §1), once, as exact bytes.

The router calls :func:`build_payload` once per event; the bytes travel inside the DeliveryTask
and are signed and sent as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from hookline.timestamps import rfc3339
from hookline.webhooks import EVENT_TYPES

__all__ = ["build_payload", "contact_of"]


def _contact(c: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": c["id"],
        "email": c["email"],
        "registeredAt": rfc3339(c["registeredAt"]),
        "locale": c.get("locale"),
        "sourceURL": c.get("sourceURL"),
        "unsubscribed": c.get("unsubscribed", False),
        "bounced": c.get("bounced", False),
        "needsConfirmation": c.get("needsConfirmation", False),
        "fields": [
            {"fieldName": f["fieldName"], "slug": f["slug"], "value": f.get("value")} for f in c["fields"]
        ],
        "tags": [{"id": t["id"], "name": t["name"]} for t in c["tags"]],
    }


def _sale(p: Mapping[str, Any]) -> dict[str, Any]:
    cu, o, pp = p["customer"], p["order"], p["pricePlan"]
    return {
        "customer": {
            "id": cu["id"],
            "email": cu["email"],
            "paymentProcessor": cu["paymentProcessor"],
            "sourceUrl": cu.get("sourceUrl"),
            "fields": dict(cu.get("fields") or {}),
        },
        "order": {"id": o["id"], "totalPrice": o["totalPrice"], "createdAt": rfc3339(o["createdAt"])},
        "pricePlan": {
            "id": pp["id"],
            "name": pp["name"],
            "innerName": pp.get("innerName"),
            "currency": pp["currency"],
            "type": pp["type"],
            "amount": pp["amount"],
        },
    }


def _contact_only(p: Mapping[str, Any]) -> dict[str, Any]:
    return {"contact": _contact(p["contact"])}


def _contact_and_tag(p: Mapping[str, Any]) -> dict[str, Any]:
    return {"contact": _contact(p["contact"]), "tag": {"id": p["tag"]["id"], "name": p["tag"]["name"]}}


def _opt_in(p: Mapping[str, Any]) -> dict[str, Any]:
    fs = p["funnelStep"]
    return {
        "contact": _contact(p["contact"]),
        "funnelStep": {
            "id": fs["id"],
            "name": fs["name"],
            "type": fs.get("type", "optin"),
            "funnel": {"id": fs["funnel"]["id"], "name": fs["funnel"]["name"]},
        },
    }


def _sale_canceled(p: Mapping[str, Any]) -> dict[str, Any]:
    doc = _sale(p)
    c = p["cancellation"]
    doc["cancellation"] = {
        "reason": c["reason"],
        "canceledAt": rfc3339(c["canceledAt"]),
        "originalOrderId": c.get("originalOrderId"),
    }
    return doc


#: The document of each event type's payload.
_DOCUMENTS: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    "CONTACT_CREATED": _contact_only,
    "CONTACT_TAG_ADDED": _contact_and_tag,
    "CONTACT_TAG_REMOVED": _contact_and_tag,
    "CONTACT_OPT_IN": _opt_in,
    "SALE_NEW": _sale,
    "SALE_CANCELED": _sale_canceled,
}
if set(_DOCUMENTS) != set(EVENT_TYPES):
    raise RuntimeError(
        f"hookline.payloads builds {sorted(_DOCUMENTS)}, but EVENT_TYPES is {sorted(EVENT_TYPES)}: "
        "give each event type one document"
    )


def payload_document(event_type: str, p: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON document (before serialization) for one event payload record."""
    build = _DOCUMENTS.get(event_type)
    if build is None:
        raise ValueError(f"unknown event type {event_type!r}")
    return build(p)


def build_payload(event: Mapping[str, Any]) -> bytes:
    """Serialize a decoded Event record's payload to the JSON bytes receivers get."""
    return orjson.dumps(payload_document(event["type"], event["payload"]))


def contact_of(body: bytes) -> str | None:
    """The contact a body is about: its ``contact.id``, or for a sale the buyer's ``customer.id``.

    None when the body is not a JSON object naming either (a log's prefix of a huge body, say).
    """
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if isinstance(doc, dict):
        for name in ("contact", "customer"):
            who = doc.get(name)
            if isinstance(who, dict) and who.get("id") is not None:
                return str(who["id"])
    return None
