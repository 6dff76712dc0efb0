"""The six event names: hookline.webhooks.EVENT_TYPES is the source every other list must match."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hookline import metrics, payloads
from hookline.webhooks import EVENT_TYPES

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def _enums(node: Any) -> Iterator[dict[str, Any]]:
    """Every enum type declared anywhere inside an Avro schema."""
    if isinstance(node, dict):
        if node.get("type") == "enum":
            yield node
        for value in node.values():
            yield from _enums(value)
    elif isinstance(node, list):
        for item in node:
            yield from _enums(item)


def test_six_distinct_names() -> None:
    assert len(EVENT_TYPES) == len(set(EVENT_TYPES)) == 6
    assert all(name.isupper() and name.isidentifier() for name in EVENT_TYPES)


@pytest.mark.parametrize("path", sorted(SCHEMAS.glob("*.avsc")), ids=lambda p: p.name)
def test_avro_event_type_enums_list_the_same_names(path: Path) -> None:
    for enum in _enums(json.loads(path.read_text())):
        if enum["name"] == "EventType":
            assert tuple(enum["symbols"]) == EVENT_TYPES, path.name


def test_the_schemas_declare_the_enum() -> None:
    declared = [e for p in SCHEMAS.glob("*.avsc") for e in _enums(json.loads(p.read_text()))]
    assert any(e["name"] == "EventType" for e in declared)  # the check above looked at something


def test_metric_labels_are_the_names() -> None:
    assert metrics.EVENT_TYPES == EVENT_TYPES


def test_unknown_event_type_has_no_payload() -> None:
    with pytest.raises(ValueError, match="unknown event type"):
        payloads.payload_document("CONTACT_DELETED", {})
