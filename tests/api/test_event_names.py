"""The API's lists of events (OpenAPI enum, form labels) are the kernel's EVENT_TYPES."""

from __future__ import annotations

from typing import get_args

from api.forms import EVENT_LABELS
from api.representation import EventName, SubscriptionOut, WebhookCreate, WebhookPatch
from hookline.webhooks import EVENT_TYPES


def test_event_name_type_lists_the_six() -> None:
    assert get_args(EventName) == EVENT_TYPES


def test_openapi_documents_the_six_as_an_enum() -> None:
    create = WebhookCreate.model_json_schema()["properties"]["subscriptions"]["items"]
    assert create == {"enum": list(EVENT_TYPES), "type": "string"}
    patch = WebhookPatch.model_json_schema()["properties"]["subscriptions"]["anyOf"][0]["items"]
    assert patch == create
    assert SubscriptionOut.model_json_schema()["properties"]["event"]["enum"] == list(EVENT_TYPES)


def test_the_form_has_a_label_for_each_event_and_no_other() -> None:
    assert tuple(EVENT_LABELS) == EVENT_TYPES
    assert all(label.strip() for label in EVENT_LABELS.values())
