"""Replays: a webhook's events re-routed from the event topics (docs/architecture.md §7, issue 13).

- :class:`Replay`: the state of one replay as the compacted ``webhook-replays`` topic holds it (key =
  webhook id, so a webhook's latest replay is what the topic keeps): the window, the event types,
  per partition of the event topics the offsets to read (``start`` to ``end``, fixed when the API
  accepted it) and the position reached, the counters and the status. JSON, like the other state
  topics (``webhook-lanes``).
- :func:`plan`: the partitions' offsets for a window, from the broker's offsets-for-times.
- :class:`ReplayView`: every webhook's latest replay, read from the beginning without a group (the
  config view's machinery); the API answers from it.

The router runs replays (``processors/router/replay.py``); the API starts them and shows them.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from hookline.configview import ConfigView
from hookline.settings import Settings
from hookline.topics import CONTACT_EVENTS, REPLAYS, SALE_EVENTS

__all__ = ["EVENT_TOPICS", "Replay", "ReplayView", "Span", "Status", "new_replay_id", "plan"]

log = logging.getLogger(__name__)

#: The topics a replay reads, as :mod:`hookline.topics` names them (without the prefix).
EVENT_TOPICS = (CONTACT_EVENTS, SALE_EVENTS)

#: ``running`` until every span is read; ``canceled`` when the webhook was deleted or switched off.
Status = Literal["running", "done", "canceled"]


def new_replay_id() -> str:
    return "rpl_" + os.urandom(16).hex()


@dataclass(frozen=True, slots=True)
class Span:
    """One partition of an event topic: read ``[start, end)``; ``position`` is the next offset to read."""

    topic: str  # without the prefix
    partition: int
    start: int
    end: int
    position: int

    @property
    def finished(self) -> bool:
        return self.position >= self.end


@dataclass(frozen=True, slots=True)
class Replay:
    """One replay of one webhook and how far it got (the value on ``webhook-replays``)."""

    id: str
    webhook_id: str
    account_id: str
    from_ms: int  # events published (record timestamp) at or after this ...
    to_ms: int | None  # ... and before this; None: up to the end offsets when it was accepted
    events: tuple[str, ...]  # the event types to send
    spans: tuple[Span, ...]
    created_at: int
    updated_at: int
    #: Set when the topics no longer hold every event of the window (retention deleted some): the
    #: earliest publish time still available in a partition that lost events.
    earliest_available_ms: int | None = None
    events_scanned: int = 0
    tasks_produced: int = 0
    status: Status = "running"
    reason: str | None = None  # why it was canceled
    finished_at: int | None = None

    @property
    def key(self) -> bytes:
        return self.webhook_id.encode()

    @property
    def done(self) -> bool:
        return self.status != "running"

    @property
    def events_total(self) -> int:
        """The records of the event topics the replay reads (of every account and type)."""
        return sum(s.end - s.start for s in self.spans)

    def advanced(
        self, positions: Mapping[tuple[str, int], int], scanned: int, produced: int, now_ms: int
    ) -> Replay:
        """This replay with its spans at ``positions`` and ``scanned``/``produced`` more counted."""
        spans = tuple(
            dataclasses.replace(
                s, position=max(s.position, positions.get((s.topic, s.partition), s.position))
            )
            for s in self.spans
        )
        return dataclasses.replace(
            self,
            spans=spans,
            events_scanned=self.events_scanned + scanned,
            tasks_produced=self.tasks_produced + produced,
            updated_at=now_ms,
        )

    def finished(self, status: Status, now_ms: int, reason: str | None = None) -> Replay:
        return dataclasses.replace(self, status=status, reason=reason, finished_at=now_ms, updated_at=now_ms)

    def to_record(self) -> dict[str, Any]:
        return {
            "v": 1,
            "id": self.id,
            "webhookId": self.webhook_id,
            "accountId": self.account_id,
            "from": self.from_ms,
            "to": self.to_ms,
            "events": list(self.events),
            "spans": [[s.topic, s.partition, s.start, s.end, s.position] for s in self.spans],
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "earliestAvailable": self.earliest_available_ms,
            "eventsScanned": self.events_scanned,
            "tasksProduced": self.tasks_produced,
            "status": self.status,
            "reason": self.reason,
            "finishedAt": self.finished_at,
        }

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> Replay:
        status = r["status"]
        if status not in ("running", "done", "canceled"):
            raise ValueError(f"unknown replay status {status!r}")
        return cls(
            id=str(r["id"]),
            webhook_id=str(r["webhookId"]),
            account_id=str(r["accountId"]),
            from_ms=int(r["from"]),
            to_ms=None if r["to"] is None else int(r["to"]),
            events=tuple(str(e) for e in r["events"]),
            spans=tuple(Span(str(t), int(p), int(a), int(b), int(c)) for t, p, a, b, c in r["spans"]),
            created_at=int(r["createdAt"]),
            updated_at=int(r["updatedAt"]),
            earliest_available_ms=None if r["earliestAvailable"] is None else int(r["earliestAvailable"]),
            events_scanned=int(r["eventsScanned"]),
            tasks_produced=int(r["tasksProduced"]),
            status=status,
            reason=r["reason"],
            finished_at=None if r["finishedAt"] is None else int(r["finishedAt"]),
        )

    def encode(self) -> bytes:
        return orjson.dumps(self.to_record())

    @classmethod
    def decode(cls, value: bytes) -> Replay:
        """The replay in ``value``; raise ValueError (or KeyError, TypeError) for anything else."""
        return cls.from_record(orjson.loads(value))


def plan(
    admin: AdminClient, settings: Settings, from_ms: int, to_ms: int | None, *, timeout: float = 10.0
) -> tuple[list[Span], int | None]:
    """The spans of the event topics that hold the window ``[from_ms, to_ms)``, and the earliest time
    still available when retention already deleted some of it (else None).

    ``end`` is the high watermark now (or, with ``to_ms``, the first offset at or after it, if lower):
    events published after this call are never part of the replay. ``start`` is the first offset whose
    timestamp is at or after ``from_ms`` (broker's offsets-for-times). Partitions with nothing to read
    are left out.
    """
    names = [settings.topic(t) for t in EVENT_TOPICS]
    md = admin.list_topics(timeout=timeout)
    tps = []
    for name in names:
        tmd = md.topics.get(name)
        if tmd is None or tmd.error is not None:
            raise LookupError(f"event topic {name!r} is missing; run `hookline topics create`")
        tps += [TopicPartition(name, p) for p in sorted(tmd.partitions)]

    def offsets(spec: Any) -> dict[tuple[str, int], Any]:
        futures = admin.list_offsets({tp: spec for tp in tps}, request_timeout=timeout)
        return {(tp.topic, tp.partition): f.result() for tp, f in futures.items()}

    latest = offsets(OffsetSpec.latest())  # type: ignore[no-untyped-call]
    earliest = offsets(OffsetSpec.earliest())  # type: ignore[no-untyped-call]
    at_from = offsets(OffsetSpec.for_timestamp(from_ms))
    at_to = offsets(OffsetSpec.for_timestamp(to_ms)) if to_ms is not None else None
    spans: list[Span] = []
    lost_until: int | None = None
    for name, unprefixed in zip(names, EVENT_TOPICS, strict=True):
        for tp in (tp for tp in tps if tp.topic == name):
            key = (name, tp.partition)
            low, end = int(earliest[key].offset), int(latest[key].offset)
            if at_to is not None and int(at_to[key].offset) >= 0:
                end = min(end, int(at_to[key].offset))
            found = int(at_from[key].offset)
            start = max(low, found if found >= 0 else end)
            if low > 0 and found == low and start < end:
                # The first record kept is already in the window: what retention deleted before it may
                # have been too. Its timestamp is the earliest time this partition still covers.
                ts = int(at_from[key].timestamp)
                if ts > from_ms:
                    lost_until = ts if lost_until is None else max(lost_until, ts)
            if start < end:
                spans.append(Span(unprefixed, tp.partition, start, end, start))
    return spans, lost_until


class ReplayView(ConfigView):
    """Every webhook's latest replay on ``webhook-replays``, read from the beginning without a group
    (the config view's machinery: readiness, ``wait_applied_async``, ``catch_up_async``)."""

    def __init__(
        self, settings: Settings, *, poll_timeout: float = 0.05, client_id: str = "hookline-replays"
    ) -> None:
        super().__init__(settings, poll_timeout=poll_timeout, client_id=client_id)
        self._topic = settings.topic(REPLAYS)
        self._replays: dict[str, Replay] = {}

    def latest(self, webhook_id: str) -> Replay | None:
        """The webhook's latest replay, if it ever had one."""
        return self._replays.get(webhook_id)

    def replays(self) -> Sequence[Replay]:
        return list(self._replays.values())

    def _apply(self, key: bytes | None, value: bytes | None, partition: int, offset: int) -> None:
        if key:
            webhook_id = key.decode("utf-8", "replace")
            if value is None:
                self._replays.pop(webhook_id, None)
            else:
                try:
                    replay = Replay.decode(value)
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                    self._bad_record()
                    log.error("replay view: undecodable replay at %s/%d: %s", partition, offset, exc)
                else:
                    if replay.webhook_id == webhook_id:
                        self._replays[webhook_id] = replay
                    else:
                        self._bad_record()
                        log.error("replay view: key/webhook mismatch at %s/%d", partition, offset)
        self._positions[partition] = offset + 1
