"""The exact account of one run (pure): what was published, what arrived, when.

For every event the broker acknowledged, each webhook of its account owes one delivery. Each owed
delivery is exactly one of:

- **delivered**: it arrived at the sink before the measurement window closed;
- **cut off**: it arrived after the window closed (while the bench drained the pipeline), so it is
  not counted in the run's throughput but it was not lost;
- **missing**: it never arrived before the drain deadline.

``published deliveries = delivered + cut off + missing`` is checked by counting each side
independently; arrivals nobody owed (``unexpected``) also void the run. Repeated arrivals of one
delivery are counted as ``duplicates`` (at-least-once allows them) and used once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Arrival", "Ledger", "percentile", "read_arrivals", "settle", "throughput_series"]


@dataclass(frozen=True, slots=True)
class Arrival:
    webhook: str
    seq: int
    t0: float
    t3: float

    @property
    def latency(self) -> float:
        return self.t3 - self.t0


def read_arrivals(path: Path, run: str) -> list[Arrival]:
    """Parse a sink dump (``webhook run seq t0 t3`` lines), keeping the lines of ``run``."""
    out = []
    for line in path.read_text().splitlines():
        webhook, r, seq, t0, t3 = line.split()
        if r == run:
            out.append(Arrival(webhook, int(seq), float(t0), float(t3)))
    return out


@dataclass
class Ledger:
    events_published: int
    expected_deliveries: int
    delivered: int
    cut_off: int
    missing: int
    duplicates: int
    unexpected: int
    events_not_published: int  # attempted or scheduled, never acknowledged by the broker

    @property
    def balanced(self) -> bool:
        return (
            self.delivered + self.cut_off + self.missing == self.expected_deliveries and self.unexpected == 0
        )

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "balanced": self.balanced}


def settle(
    published: Iterable[int],
    hooks_of: Callable[[int], Sequence[str]],
    arrivals: Sequence[Arrival],
    window_end: float,
    *,
    not_published: int = 0,
) -> tuple[Ledger, list[Arrival]]:
    """The ledger of a run, and the first arrival of every owed delivery (in arrival order)."""
    owed: set[tuple[int, str]] = set()
    events = 0
    for seq in published:
        events += 1
        for hook in hooks_of(seq):
            owed.add((seq, hook))
    seen: set[tuple[int, str]] = set()
    firsts: list[Arrival] = []
    delivered = cut_off = duplicates = unexpected = 0
    for a in sorted(arrivals, key=lambda a: a.t3):
        key = (a.seq, a.webhook)
        if key not in owed:
            unexpected += 1
            continue
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        firsts.append(a)
        if a.t3 <= window_end:
            delivered += 1
        else:
            cut_off += 1
    missing = sum(1 for key in owed if key not in seen)
    ledger = Ledger(
        events_published=events,
        expected_deliveries=len(owed),
        delivered=delivered,
        cut_off=cut_off,
        missing=missing,
        duplicates=duplicates,
        unexpected=unexpected,
        events_not_published=not_published,
    )
    return ledger, firsts


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of ``values`` by the nearest-rank method; None when empty."""
    if not values:
        return None
    s = sorted(values)
    rank = max(1, min(len(s), int(-(-q * len(s) // 1))))  # ceil(q * n), at least 1
    return s[rank - 1]


def throughput_series(
    times: Sequence[float], start: float, end: float, step: float
) -> list[tuple[float, float]]:
    """(seconds since ``start``, events/s) for each ``step``-wide bin of ``times`` in [start, end)."""
    bins = max(1, int((end - start) / step + 0.999))
    counts = [0] * bins
    for t in times:
        i = int((t - start) / step)
        if 0 <= i < bins:
            counts[i] += 1
    return [(round(i * step, 3), c / step) for i, c in enumerate(counts)]
