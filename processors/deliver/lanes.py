"""Ordered delivery per contact (``ordering: "contact"``, docs/architecture.md §6, *Ordered delivery*).

A *lane* is one contact of one ordered webhook. Its durable state, a :class:`Lane`, lives on the
compacted ``webhook-lanes`` topic (key ``<webhook id>/<contact id>``): the sequence of the last
message finished (``done``) and the messages waiting, head first (``pending``). A message's sequence
is the offset of its task on ``webhook-deliveries``: a webhook's tasks are all in one partition of
that topic, in the order the router routed them (the publish order of one account's events).

One writer per lane: the worker that owns the webhook's ``webhook-deliveries`` partition (the
*owner*). It writes while handling a new task (append it behind a blocked head, or record it done)
and a *release* record: a head that was retried from a retry tier may be finished by another worker
(the tiers are assigned topic by topic), which then writes a release record to
``webhook-deliveries`` under the webhook's key (its value starts with :data:`RELEASE`, never a
single-object Avro header), so the owner reads it in order with the new tasks and moves the lane on.
Every lane write is acknowledged before the record that caused it counts as done (its offset), and
before any task record it lets pass is written, so a SIGKILL or a rebalance never loses a blocked
lane: the next owner reads the view and re-reads the same records.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from hookline.configview import ConfigView
from hookline.metrics import DeliveryMetrics
from hookline.records import DeliveryTask
from hookline.settings import Settings
from hookline.topics import LANES
from processors.deliver.sink import RecordSink

__all__ = ["RELEASE", "Lane", "LaneSink", "LaneView", "Lanes", "contact_of", "lane_key"]

log = logging.getLogger("hookline.deliver")

#: The start of a release record's value on ``webhook-deliveries``; then ``<lane key>\n<message id>``.
RELEASE = b"hookline-lane-release\n"


def contact_of(task: DeliveryTask) -> str | None:
    """The contact a task is about: the payload's ``contact.id``, or a sale's buyer ``customer.id``.

    Every event type has one today; a payload without either (or not JSON) is not ordered.
    """
    try:
        doc = orjson.loads(task.payload)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    for name in ("contact", "customer"):
        who = doc.get(name)
        if isinstance(who, dict) and who.get("id") is not None:
            return str(who["id"])
    return None


def lane_key(webhook_id: str, contact: str) -> bytes:
    return f"{webhook_id}/{contact}".encode()


@dataclass(frozen=True, slots=True)
class Lane:
    """A lane's durable state: ``done`` the sequence of the last message finished, ``pending`` the
    messages waiting (message id, sequence), head first; ``version`` increases by one per write."""

    done: int = -1
    pending: tuple[tuple[str, int], ...] = ()
    version: int = 0

    @property
    def head(self) -> str | None:
        return self.pending[0][0] if self.pending else None

    def holds(self, message_id: str) -> bool:
        return any(m == message_id for m, _ in self.pending)

    def behind(self, message_id: str, seq: int) -> Lane:
        return Lane(self.done, (*self.pending, (message_id, seq)), self.version + 1)

    def finished(self, message_id: str, seq: int) -> Lane:
        rest = tuple(p for p in self.pending if p[0] != message_id)
        return Lane(max(self.done, seq), rest, self.version + 1)

    def encode(self) -> bytes:
        return orjson.dumps(
            {"v": self.version, "done": self.done, "pending": [list(p) for p in self.pending]}
        )

    @classmethod
    def decode(cls, value: bytes) -> Lane:
        doc = orjson.loads(value)
        return cls(int(doc["done"]), tuple((str(m), int(s)) for m, s in doc["pending"]), int(doc["v"]))


class LaneView(ConfigView):
    """Every lane on the compacted lane topic, read from the beginning without a group (the
    config view's machinery: readiness, ``catch_up_async``)."""

    def __init__(self, settings: Settings, *, poll_timeout: float = 0.05) -> None:
        super().__init__(settings, poll_timeout=poll_timeout, client_id="hookline-deliver-lanes")
        self._topic = settings.topic(LANES)
        self._lanes: dict[bytes, Lane] = {}

    def lane(self, key: bytes) -> Lane | None:
        return self._lanes.get(key)

    def blocked(self) -> int:
        """Lanes with a message waiting (a head not finished), as this view sees them."""
        return sum(1 for lane in self._lanes.values() if lane.pending)

    def _apply(self, key: bytes | None, value: bytes | None, partition: int, offset: int) -> None:
        if key:
            if value is None:
                self._lanes.pop(key, None)
            else:
                try:
                    self._lanes[key] = Lane.decode(value)
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                    self._bad_record()
                    log.error("lane view: undecodable lane at %s/%d: %s", partition, offset, exc)
        self._positions[partition] = offset + 1


@dataclass(eq=False)
class _Head:
    """The lane a task runs as head of, while it runs (see :class:`LaneSink`)."""

    lanes: Lanes
    key: bytes
    message_id: str
    seq: int | None  # its sequence when the owner runs it as a new task; None from a retry tier
    check: Callable[[], None]  # raises when its partition was revoked (see Lanes.run)
    parked: bool = False  # it wrote itself back into a retry tier: the lane stays blocked behind it


_HEAD: contextvars.ContextVar[_Head | None] = contextvars.ContextVar("hookline_lane_head", default=None)


class LaneSink:
    """The handler's sink: a lane head's first write into a retry tier (a retry, or a deferral by
    the backlog, breaker or rate limit) first makes the lane durably blocked behind it."""

    def __init__(self, sink: RecordSink, tiers: set[str]) -> None:
        self._sink = sink
        self._tiers = tiers

    async def send(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        head = _HEAD.get()
        if head is not None and topic in self._tiers and not head.parked:
            head.parked = True
            if head.seq is not None:
                head.check()
                await head.lanes.block_behind(head)
        await self._sink.send(topic, key, value)


@dataclass(eq=False)
class _Gate:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class Lanes:
    """The lanes of the ordered webhooks this worker handles tasks of."""

    def __init__(
        self,
        view: LaneView,
        sink: RecordSink,
        *,
        lanes_topic: str,
        deliveries_topic: str,
        metrics: DeliveryMetrics,
    ) -> None:
        self._view = view
        self._sink = sink
        self._topic = lanes_topic
        self._deliveries = deliveries_topic
        self._metrics = metrics
        self._mine: dict[bytes, Lane] = {}  # this worker's writes, until its view has them
        self._gates: dict[bytes, _Gate] = {}
        # The last head this worker finished per lane, until the owner moves the lane on: another copy
        # of it (a tier record re-read after a restart) is not sent again meanwhile.
        self._released: dict[bytes, str] = {}

    def current(self, key: bytes) -> Lane:
        seen = self._view.lane(key)
        mine = self._mine.get(key)
        if mine is not None:
            if seen is None or mine.version > seen.version:
                return mine
            del self._mine[key]
        return seen or Lane()

    async def _write(self, key: bytes, lane: Lane) -> None:
        if len(self._mine) >= 50_000:  # keep only the writes the view does not show yet
            self._mine = {k: v for k, v in self._mine.items() if v.version > self._version_seen(k)}
        self._mine[key] = lane
        await self._sink.send(self._topic, key, lane.encode())

    def _version_seen(self, key: bytes) -> int:
        seen = self._view.lane(key)
        return -1 if seen is None else seen.version

    async def block_behind(self, head: _Head) -> None:
        lane = self.current(head.key)
        if not lane.holds(head.message_id):
            assert head.seq is not None
            await self._write(head.key, lane.behind(head.message_id, head.seq))

    async def run(
        self,
        *,
        topic: str,
        offset: int,
        written_ms: int,
        received_ms: int,
        task: DeliveryTask,
        contact: str,
        attempt: Callable[[], Awaitable[None]],
        park: Callable[[str | None], Awaitable[None]],
        check: Callable[[], None],
    ) -> None:
        """Run ``attempt`` when ``task`` is its lane's turn; else park it (``park(reason)``, a
        reason the first time it waits, None when it goes back again) or drop a stale copy.

        ``check`` raises when the record's partition was revoked (or the worker stops): called before
        every lane write, so a task that waited in memory never writes a lane its new owner now keeps.
        """
        key = lane_key(task.webhook_id, contact)
        owner = topic == self._deliveries
        mid = task.message_id
        async with self._gate(key) as waited:
            if waited:
                self._metrics.lane_held.labels("memory").inc()
            check()
            # Every lane write made before this record was written (tier) or read (new) applies.
            synced = await self._catch_up(received_ms if owner else written_ms, tries=3 if owner else 1)
            lane = self.current(key)
            check()
            if owner:
                if offset <= lane.done:
                    log.info("ordered message=%s already finished (a re-read); not sent again", mid)
                    return
                if lane.pending and lane.head != mid:
                    if not lane.holds(mid):
                        await self._write(key, lane.behind(mid, offset))
                        self._metrics.lane_held.labels("parked").inc()
                        await park(f"ordered: waiting for message {lane.head} of contact {contact}")
                    else:
                        await park(None)  # re-read after a restart: it waits in its lane already
                    return
                # Free, or this message heads the lane already (a re-read after a crash: its tier copy
                # may never have been written, so it goes again; a copy in a tier is dropped later).
                head = _Head(self, key, mid, offset, check)
            else:
                if not synced:
                    await park(None)  # the view may not show its lane yet: come back later
                    return
                if not lane.holds(mid):
                    log.info("ordered message=%s is no longer in its lane (finished); dropped", mid)
                    self._metrics.lane_held.labels("stale").inc()
                    return
                if lane.head != mid:
                    await park(None)
                    return
                if self._released.get(key) == mid:
                    log.info("ordered message=%s was just finished here; this copy is dropped", mid)
                    self._metrics.lane_held.labels("stale").inc()
                    return
                head = _Head(self, key, mid, None, check)
            token = _HEAD.set(head)
            try:
                await attempt()
            finally:
                _HEAD.reset(token)
            if head.parked:
                return  # the lane waits for this message's next attempt
            check()  # revoked meanwhile: the next owner sends it again rather than two owners write
            if owner:
                await self._write(key, self.current(key).finished(mid, offset))
            else:
                await self._sink.send(self._deliveries, task.key, RELEASE + key + b"\n" + mid.encode())
                if len(self._released) >= 100_000:
                    self._released.clear()
                self._released[key] = mid

    async def release(self, value: bytes, received_ms: int) -> None:
        """The owner applies a release record: the lane's head is finished, the next one may go."""
        key, _, mid = value[len(RELEASE) :].rpartition(b"\n")
        message_id = mid.decode()
        async with self._gate(key):
            await self._catch_up(received_ms, tries=3)
            lane = self.current(key)
            if lane.head == message_id:
                seq = lane.pending[0][1]
                await self._write(key, lane.finished(message_id, seq))

    async def _catch_up(self, written_before_ms: int, *, tries: int) -> bool:
        """Apply every lane write made before ``written_before_ms``. The owner must (it writes
        from what it sees): after ``tries`` failures it stops the worker rather than guess."""
        for _ in range(tries):
            if await self._view.catch_up_async(written_before_ms):
                return True
        if tries > 1:
            raise RuntimeError("the lane view cannot catch up with the lane topic")
        return False

    def _gate(self, key: bytes) -> _GateContext:
        gate = self._gates.get(key)
        if gate is None:
            gate = self._gates[key] = _Gate()
        return _GateContext(self._gates, key, gate)


class _GateContext:
    """Hold a lane's lock (FIFO: tasks of one lane run in the order they came); the lock is dropped
    once nobody holds or waits for it. Yields whether the task had to wait."""

    def __init__(self, gates: dict[bytes, _Gate], key: bytes, gate: _Gate) -> None:
        self._gates, self._key, self._gate = gates, key, gate

    async def __aenter__(self) -> bool:
        gate = self._gate
        gate.users += 1
        waited = gate.lock.locked()
        try:
            await gate.lock.acquire()
        except BaseException:
            self._drop()
            raise
        return waited

    async def __aexit__(self, *exc: Any) -> None:
        self._gate.lock.release()
        self._drop()

    def _drop(self) -> None:
        self._gate.users -= 1
        if self._gate.users == 0:
            self._gates.pop(self._key, None)
