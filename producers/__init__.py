"""What upstream services and account owners use to put data into hookline.

Names whose modules pull in confluent-kafka or the Avro codec load on first use, so importing a
light submodule (the ``hookline`` CLI imports every command module to build its parser) stays
cheap and does not need them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from producers.events import (
    Cancellation,
    Contact,
    ContactField,
    Customer,
    Event,
    EventType,
    Funnel,
    FunnelStep,
    InvalidEvent,
    Order,
    PricePlan,
    Tag,
    contact_created,
    contact_opt_in,
    contact_tag_added,
    contact_tag_removed,
    sale_canceled,
    sale_new,
)

if TYPE_CHECKING:
    from producers.publisher import EventPublisher, PublishError, Receipt

__all__ = [
    "Cancellation",
    "Contact",
    "ContactField",
    "Customer",
    "Event",
    "EventPublisher",
    "EventType",
    "Funnel",
    "FunnelStep",
    "InvalidEvent",
    "Order",
    "PricePlan",
    "PublishError",
    "Receipt",
    "Tag",
    "contact_created",
    "contact_opt_in",
    "contact_tag_added",
    "contact_tag_removed",
    "sale_canceled",
    "sale_new",
]

# name -> module that defines it, imported on first access
_LAZY = {
    "EventPublisher": "producers.publisher",
    "PublishError": "producers.publisher",
    "Receipt": "producers.publisher",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'producers' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
