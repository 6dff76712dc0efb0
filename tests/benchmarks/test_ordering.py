"""The pure parts of ``hookline bench --only ordering`` (issue 12): shares, contacts, the order check."""

from __future__ import annotations

from collections import Counter

from benchmarks.ledger import Arrival
from benchmarks.ordering import ORDERED, check_order, mixed
from benchmarks.traffic import contact_ids


def test_mixed_gives_the_extra_account_one_event_in_every() -> None:
    accounts = [f"a{i}" for i in range(14)]
    out = mixed(accounts, "x", every=8)
    assert out == [*accounts[:7], "x", *accounts[7:], "x"]
    assert Counter(out)["x"] / len(out) == 1 / 8


def test_each_accounts_events_go_to_its_contacts_in_turn() -> None:
    accounts = ["a", "x", "b", "x"]  # "x" twice a cycle
    of = contact_ids(accounts, 3)
    xs = [of(seq) for seq in range(40) if accounts[seq % 4] == "x"]
    assert xs == [1, 2, 3] * 6 + [1, 2]
    assert [of(seq) for seq in range(0, 16, 4)] == [1, 2, 3, 1]  # "a": its own turn


def _arrivals(seqs: list[int]) -> list[Arrival]:
    return [Arrival(ORDERED, s, 0.0, float(i)) for i, s in enumerate(seqs)]


def test_check_order_accepts_publish_order_per_contact_and_a_repeat_right_after_itself() -> None:
    def contact(seq: int) -> int:
        return seq % 2

    # contacts interleave freely; 4 is delivered twice in a row (at least once)
    got = check_order(_arrivals([0, 1, 3, 2, 4, 4, 5, 6]), contact)
    assert got == {
        "arrivals": 8,
        "contacts": 2,
        "most_per_contact": 4,
        "out_of_order": 0,
        "repeated_right_after_itself": 1,
    }


def test_check_order_counts_an_overtaking_message_and_a_late_repeat() -> None:
    def contact(seq: int) -> int:
        return seq % 2

    assert check_order(_arrivals([2, 0, 4]), contact)["out_of_order"] == 1  # 2 overtook 0
    assert check_order(_arrivals([0, 2, 0]), contact)["out_of_order"] == 1  # 0 again after 2
