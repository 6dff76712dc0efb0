"""The replay state record (pure): what webhook-replays holds, and how a job moves it on."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from hookline.replays import Replay, Span


def replay(**changes: object) -> Replay:
    base = Replay(
        id="rpl_1",
        webhook_id="wh_1",
        account_id="acct-a",
        from_ms=1_000,
        to_ms=None,
        events=("CONTACT_CREATED", "SALE_NEW"),
        spans=(Span("contact-events", 0, 10, 20, 10), Span("sale-events", 2, 0, 5, 0)),
        created_at=2_000,
        updated_at=2_000,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_a_replay_round_trips_through_its_record() -> None:
    r = replay(to_ms=9_000, earliest_available_ms=1_500)
    assert Replay.decode(r.encode()) == r
    assert r.key == b"wh_1" and r.events_total == 15 and not r.done


def test_advanced_moves_positions_forward_only_and_adds_the_counters() -> None:
    r = replay().advanced(
        {("contact-events", 0): 15, ("sale-events", 2): 5}, scanned=10, produced=3, now_ms=3_000
    )
    assert [s.position for s in r.spans] == [15, 5]
    assert [s.finished for s in r.spans] == [False, True]
    assert (r.events_scanned, r.tasks_produced, r.updated_at) == (10, 3, 3_000)
    again = r.advanced({("contact-events", 0): 12}, scanned=0, produced=0, now_ms=4_000)
    assert again.spans[0].position == 15  # a position is never moved back


def test_finished_is_done_with_its_reason() -> None:
    r = replay().finished("canceled", 5_000, "webhook deleted")
    assert (r.done, r.status, r.reason, r.finished_at) == (True, "canceled", "webhook deleted", 5_000)
    assert Replay.decode(r.encode()) == r


@pytest.mark.parametrize(
    "value",
    [
        b"not json",
        orjson.dumps({**replay().to_record(), "status": "paused"}),
        orjson.dumps({k: v for k, v in replay().to_record().items() if k != "spans"}),
        orjson.dumps({**replay().to_record(), "spans": [["contact-events", 0, 1]]}),
    ],
)
def test_decode_refuses_what_is_not_a_replay(value: bytes) -> None:
    with pytest.raises((ValueError, KeyError, TypeError)):
        Replay.decode(value)
