"""A live, in-memory view of the compacted webhook-config topic.

Every role that needs configs (the API for reads, the router for the join, the workers for the
current state of a webhook) runs one. It reads every partition from the beginning without a
consumer group — like a GlobalTable, but without Faust's assignor traps (docs/architecture.md §9) — and
applies updates and tombstones as they arrive.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from hookline.clients import common_config, consumer_config
from hookline.metrics import ConfigViewMetrics
from hookline.settings import Settings
from hookline.topics import CONFIG
from hookline.webhooks import Webhook
from schemas.codec import CodecError, decode

__all__ = ["ConfigView"]

log = logging.getLogger(__name__)


class ConfigView:
    """Consume the config topic in a background thread; serve lookups by id and by account."""

    def __init__(
        self,
        settings: Settings,
        *,
        poll_timeout: float = 0.1,
        metrics: ConfigViewMetrics | None = None,
        client_id: str = "hookline-configs",
    ) -> None:
        self._metrics = metrics
        self._client_id = client_id  # the broker's request log and quotas tell the roles' views apart
        self._settings = settings
        self._topic = settings.topic(CONFIG)
        self._poll_timeout = poll_timeout
        self._by_id: dict[str, Webhook] = {}
        self._by_account: dict[str, dict[str, Webhook]] = {}
        self._positions: dict[int, int] = {}  # partition -> next offset to read
        self._targets: dict[int, int] | None = None  # high watermarks at start: "caught up" line
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self.bad_records = 0
        self.error: BaseException | None = None
        self._synced_ms = 0.0  # every config record written before this (epoch ms) is applied
        self._sync_lock: asyncio.Lock | None = None
        self._admin: AdminClient | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> ConfigView:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="config-view", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> ConfigView:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- waiting --------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """True once every record that existed when the view started has been applied."""
        return self._ready.is_set()

    def wait_ready(self, timeout: float = 30.0) -> bool:
        return self._ready.wait(timeout)

    async def wait_ready_async(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while not self._ready.is_set():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def wait_applied_async(self, partition: int, offset: int, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while self._positions.get(partition, 0) <= offset:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    async def catch_up_async(self, written_before_ms: float, timeout: float = 5.0) -> bool:
        """Make sure every config record written before ``written_before_ms`` has been applied.

        The router calls this with an event's timestamp: a config change the API confirmed before
        the event was published then always takes part in that event's routing. One watermark
        request covers every event older than it, so under load this costs almost nothing.
        """
        if written_before_ms <= self._synced_ms:
            return True
        if self._sync_lock is None:
            self._sync_lock = asyncio.Lock()
        async with self._sync_lock:
            if written_before_ms <= self._synced_ms:
                return True
            started_ms = time.time() * 1000
            try:
                ends = await self._end_offsets_async()
            except Exception as first:
                # A client that asked a broker which has since lost the partition's leadership keeps
                # getting FENCED_LEADER_EPOCH / NOT_LEADER for a while (after a broker restart: up to
                # 45 s, every event routed without this guarantee); a new client asks the new leader.
                self._admin = None
                log.info("config view: end offsets failed (%s); asking again with a new client", first)
                try:
                    ends = await self._end_offsets_async()
                except Exception:
                    self._admin = None
                    log.warning("config view: could not read the config topic's end offsets", exc_info=True)
                    return False
            for partition, end in ends.items():
                if end > 0 and not await self.wait_applied_async(partition, end - 1, timeout):
                    return False
            self._synced_ms = max(self._synced_ms, started_ms)
            return True

    def catch_up(self, timeout: float = 5.0) -> bool:
        """Block until every config record written before this call is applied; False on timeout or
        when the end offsets cannot be read. For threads (the router's replay jobs); asyncio code
        uses :meth:`catch_up_async`."""
        deadline = time.monotonic() + timeout
        try:
            ends = self._end_offsets()
        except Exception:
            self._admin = None  # as in catch_up_async: the next call asks with a new client
            log.warning("config view: could not read the config topic's end offsets", exc_info=True)
            return False
        for partition, end in ends.items():
            while self._positions.get(partition, 0) < end:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.005)
        return True

    def _end_offsets(self) -> dict[int, int]:
        return {p: int(f.result().offset) for p, f in self._ask_end_offsets().items()}

    async def _end_offsets_async(self) -> dict[int, int]:
        # Awaited on the loop: the admin client's own thread completes the futures, so no executor
        # thread is woken for each event the router routes (docs/architecture.md §6).
        futures = self._ask_end_offsets()
        got = await asyncio.gather(*(asyncio.wrap_future(f) for f in futures.values()))
        return {p: int(r.offset) for p, r in zip(futures, got, strict=True)}

    def _ask_end_offsets(self) -> dict[int, Any]:
        """Ask the broker for the config partitions' end offsets; one future per partition."""
        if self._admin is None:
            self._admin = AdminClient({**common_config(self._settings), "client.id": self._client_id})
        parts = sorted(self._targets or {})
        specs = {TopicPartition(self._topic, p): OffsetSpec.latest() for p in parts}  # type: ignore[no-untyped-call]
        futures = self._admin.list_offsets(specs, request_timeout=5)
        return {tp.partition: f for tp, f in futures.items()}

    # -- lookups --------------------------------------------------------------------------------
    def get(self, webhook_id: str) -> Webhook | None:
        return self._by_id.get(webhook_id)

    def for_account(self, account_id: str) -> list[Webhook]:
        """The account's webhooks, ordered by (created_at, id)."""
        hooks = list(self._by_account.get(account_id, {}).values())
        hooks.sort(key=lambda w: (w.created_at, w.id))
        return hooks

    def subscribers(self, account_id: str, event_type: str) -> list[Webhook]:
        """The account's webhooks that are active and subscribed to ``event_type``."""
        return [w for w in self._by_account.get(account_id, {}).values() if w.wants(event_type)]

    def __len__(self) -> int:
        return len(self._by_id)

    def lag(self) -> int:
        """Records between what was applied and the high watermarks seen at start (0 when ready)."""
        if self._targets is None:
            return -1
        return sum(max(0, t - self._positions.get(p, 0)) for p, t in self._targets.items())

    # -- the consumer thread --------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._consume()
        except BaseException as exc:  # surfaced through .error and readiness, never silent
            self.error = exc
            log.exception("config view stopped")

    def _consume(self) -> None:
        conf: dict[str, Any] = consumer_config(
            self._settings,
            None,
            **{"enable.auto.commit": False, "group.id": "hookline-config-view", "client.id": self._client_id},
        )
        consumer = Consumer(conf)
        try:
            parts, targets = self._partitions_and_ends(consumer)
            self._targets = targets
            consumer.assign([TopicPartition(self._topic, p, OFFSET_BEGINNING) for p in parts])
            self._check_ready()
            while not self._stop.is_set():
                # Wait for one record, then take whatever else is already fetched without waiting:
                # a write is applied as soon as it arrives, not when a batch fills up.
                msgs = consumer.consume(1, self._poll_timeout)
                if not msgs:
                    self._check_ready()
                    continue
                msgs += consumer.consume(1000, 0)
                for msg in msgs:
                    err = msg.error()
                    if err is not None:
                        if err.code() != KafkaError._PARTITION_EOF:
                            log.warning("config view: consume error %s", err)
                        continue
                    self._apply(msg.key(), msg.value(), int(msg.partition() or 0), int(msg.offset() or 0))
                self._check_ready()
        finally:
            consumer.close()

    def _partitions_and_ends(self, consumer: Consumer) -> tuple[list[int], dict[int, int]]:
        """The topic's partitions and their high watermarks; retried while leaders settle."""
        deadline = time.monotonic() + 60
        while True:
            try:
                md = consumer.list_topics(self._topic, timeout=10)
                tmd = md.topics.get(self._topic)
                if tmd is None or tmd.error is not None:
                    raise LookupError(
                        f"config topic {self._topic!r} is missing; run `hookline topics create`"
                    )
                parts = sorted(tmd.partitions)
                targets = {
                    p: consumer.get_watermark_offsets(TopicPartition(self._topic, p), timeout=10)[1]
                    for p in parts
                }
                return parts, targets
            except (KafkaException, LookupError) as exc:
                # Right after topic creation a partition may have no leader yet.
                if time.monotonic() > deadline or self._stop.is_set():
                    raise
                log.info("config view: waiting for the config topic (%s)", exc)
                time.sleep(0.5)

    def _check_ready(self) -> None:
        if not self._ready.is_set() and self._targets is not None and self.lag() == 0:
            self._ready.set()
            log.info("config view ready: %d webhooks", len(self._by_id))

    def _apply(self, key: bytes | None, value: bytes | None, partition: int, offset: int) -> None:
        webhook_id = key.decode("utf-8", "replace") if key else None
        hook: Webhook | None = None
        if value is not None:
            try:
                hook = Webhook.from_record(decode(value, "WebhookConfig"))
            except (CodecError, KeyError, TypeError, ValueError) as exc:
                self._bad_record()
                log.error("config view: undecodable config at %s/%d: %s", partition, offset, exc)
                hook = None
                value = None
                webhook_id = None  # never let a bad record delete a good config
            else:
                if webhook_id != hook.id:
                    self._bad_record()
                    log.error("config view: key/id mismatch at %s/%d", partition, offset)
                    hook, webhook_id = None, None
        if webhook_id is not None:
            old = self._by_id.get(webhook_id)
            if hook is None:
                self._by_id.pop(webhook_id, None)
                if old is not None:
                    self._by_account.get(old.account_id, {}).pop(webhook_id, None)
            elif old is None or hook.version >= old.version:
                self._by_id[webhook_id] = hook
                if old is not None and old.account_id != hook.account_id:
                    self._by_account.get(old.account_id, {}).pop(webhook_id, None)
                self._by_account.setdefault(hook.account_id, {})[webhook_id] = hook
        self._positions[partition] = offset + 1
        if self._metrics is not None:
            self._metrics.webhooks.set(len(self._by_id))

    def _bad_record(self) -> None:
        self.bad_records += 1
        if self._metrics is not None:
            self._metrics.bad_records.inc()
