"""A replay request's body (pure): the window and the events, each mistake with its own code."""

from __future__ import annotations

from typing import Any

import pytest

from api.errors import InvalidRequest
from api.replays import parse_replay, present_replay
from hookline.replays import Replay

NOW = 1_717_200_000_000  # 2024-06-01T00:00:00Z


def test_a_window_with_and_without_an_end() -> None:
    assert parse_replay({"from": "2024-05-31T23:00:00Z"}, NOW) == (NOW - 3_600_000, None, None)
    got = parse_replay(
        {
            "from": "2024-05-31T23:00:00+02:00",
            "to": "2024-06-01T00:00:00Z",
            "events": ["SALE_NEW", "CONTACT_CREATED"],
        },
        NOW,
    )
    assert got == (NOW - 3 * 3_600_000, NOW, ("CONTACT_CREATED", "SALE_NEW"))  # in the product's order


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "from_required"),
        ({"from": None}, "from_required"),
        ({"from": 1717200000}, "invalid_type"),
        ({"from": "yesterday"}, "invalid_from"),
        ({"from": "2024-05-31"}, "invalid_from"),  # a date is not a time
        ({"from": "2024-05-31T23:00:00"}, "invalid_from"),  # no offset
        ({"from": "2024-05-31T23:00:00Z", "to": "2024-13-01T00:00:00Z"}, "invalid_to"),
        ({"from": "2024-05-31T23:00:00Z", "to": "2024-05-31T22:00:00Z"}, "invalid_window"),
        ({"from": "2024-05-31T23:00:00Z", "to": "2024-05-31T23:00:00Z"}, "invalid_window"),
        ({"from": "2024-06-02T00:00:00Z"}, "invalid_window"),  # in the future
        ({"from": "2024-05-31T23:00:00Z", "events": []}, "invalid_type"),
        ({"from": "2024-05-31T23:00:00Z", "events": "SALE_NEW"}, "invalid_type"),
        ({"from": "2024-05-31T23:00:00Z", "events": ["SALE_NEW", 3]}, "invalid_type"),
        ({"from": "2024-05-31T23:00:00Z", "events": ["CONTACT_DELETED"]}, "invalid_event_type"),
        ({"from": "2024-05-31T23:00:00Z", "events": ["sale_new"]}, "invalid_event_type"),
        ({"from": "2024-05-31T23:00:00Z", "since": "2024-05-31T23:00:00Z"}, "unknown_field"),
    ],
)
def test_each_mistake_has_its_code(body: dict[str, Any], code: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_replay(body, NOW)
    assert (caught.value.status, caught.value.code) == (422, code)


def test_the_answer_says_when_the_window_starts_before_what_is_kept() -> None:
    kept = Replay("rpl_1", "wh", "acct", NOW - 10_000, None, ("SALE_NEW",), (), NOW, NOW)
    assert present_replay(kept)["earliestAvailable"] is None and present_replay(kept)["notice"] is None
    cut = present_replay(Replay("rpl_1", "wh", "acct", NOW - 10_000, None, (), (), NOW, NOW, NOW - 5_000))
    assert cut["earliestAvailable"] == "2024-05-31T23:59:55.000Z"
    assert cut["notice"].startswith("events published before 2024-05-31T23:59:55.000Z are no longer kept")
