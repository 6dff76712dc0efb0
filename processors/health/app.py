"""The health processor: failure streaks per webhook from the results topic (docs/architecture.md §6).

A Faust agent over ``webhook-results`` keeps one :class:`~hookline.health.Streak` per webhook in a
table (``webhook-health``, changelog ``<app id>-webhook-health-changelog``, partitioned like the
results topic, so it scales with that topic's partitions and comes back after a restart or a
rebalance). It is a role of its own (``hookline health``, Faust app id ``hookline-health``): in the
router, Faust's table recovery on assignment could hold up routing after a restart (§6), and the
router must not depend on this table. The thresholds and the streak rules are pure
(:mod:`hookline.health`); this module does the I/O.

Ordering per result (at least once): the config that disables a webhook and each
alert are produced and acknowledged by the broker *before* the table entry that remembers them is
written; the table (changelog) is flushed before the results offset is committed. A crash can
therefore repeat an alert (with the same ``eventId``) only in the window between its acknowledgement
and the next commit, and never lose one. Every entry carries the offset of the last result applied,
so results re-read after a restart are not counted twice.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

import aiokafka
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from prometheus_client import CollectorRegistry

from hookline.configview import ConfigView
from hookline.health import (
    HealthPolicy,
    Observation,
    Streak,
    WebhookEvent,
    WebhookEventType,
    disabled_reason,
    observe,
    re_enabled,
)
from hookline.metrics import ConfigViewMetrics, HealthMetrics
from hookline.records import DeliveryResult
from hookline.settings import Settings
from hookline.topics import CONFIG, HEALTH_EVENTS, RESULTS, all_topics
from schemas.codec import CodecError, encode

__all__ = ["Health", "HealthApp"]

log = logging.getLogger("hookline.health")

#: Nothing waits on the health processor (an alert half a second later changes nothing), so its
#: consumer lets the broker gather results for up to FETCH_MAX_WAIT_MS per fetch instead of asking
#: again for every result, as the log sink does: at everyday rates one fetch (and one wake-up of
#: Faust's consumer thread) carries dozens of results instead of one (docs/architecture.md §6).
FETCH_MIN_BYTES = 1 << 20
FETCH_MAX_WAIT_MS = 500


class _PatientConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Faust passes neither setting to aiokafka; the consumer reads both when it starts its fetcher.
        consumer._fetch_min_bytes = FETCH_MIN_BYTES
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class _PatientConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _PatientConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _PatientTransport(faust_aiokafka.Transport):
    Consumer = _PatientConsumer


class Health:
    """The agent, its table and its topics, registered on a Faust app."""

    def __init__(self, app: faust.App, settings: Settings, view: ConfigView, metrics: HealthMetrics) -> None:
        s = settings
        self.view = view
        self.metrics = metrics
        self.policy = HealthPolicy(s.disable_after_failures, int(s.disable_after * 1000))
        partitions = next(t.partitions for t in all_topics(s) if t.name == RESULTS)
        self.table = app.Table(
            "webhook-health", default=None, partitions=partitions, key_type=bytes, value_type=bytes
        )
        results = app.topic(
            s.topic(RESULTS),
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            allow_empty=True,
        )
        self.events = app.topic(s.topic(HEALTH_EVENTS), key_serializer="raw", value_serializer="raw")
        self.configs = app.topic(s.topic(CONFIG), key_serializer="raw", value_serializer="raw")
        health = self

        @app.agent(results, name="webhook-health")
        async def webhook_health(stream: Any) -> None:
            if not await health.view.wait_ready_async(timeout=3600):
                raise RuntimeError("config view never became ready")
            async for event in stream.events():
                await health.handle(event.message)

        @app.timer(interval=15.0)  # type: ignore[untyped-decorator]
        async def _count_failing() -> None:
            health.count_failing()

    async def handle(self, msg: Any) -> None:
        """Apply one result record; never raise (an exception in an agent loses the record)."""
        self.metrics.results.inc()
        try:
            if msg.value is None:
                return
            try:
                result = DeliveryResult.decode(msg.value)
            except CodecError:
                return  # the log sink dead-letters undecodable results; health has nothing to learn
            key = result.webhook_id.encode()
            raw = self.table.get(key)
            state = Streak.from_bytes(raw)
            reenabled = state.alerted >= 100 and re_enabled(
                state, self.view.get(result.webhook_id), result.attempted_at
            )
            obs = Observation(
                msg.offset,
                result.outcome,
                result.attempt,
                result.trigger,
                result.attempted_at,
                result.error_class,
            )
            step = observe(state, obs, self.policy, reenabled=reenabled)
            if step.streak is None:
                return
            new = step.streak
            for pct in step.crossed:
                if pct >= 100:
                    reason = disabled_reason(new)
                    new = replace(new, disabled_version=await self.disable(result.webhook_id, reason))
                    await self.emit("webhook.disabled", new, result, pct, reason)
                else:
                    await self.emit("webhook.failing", new, result, pct)
            if step.recovered:
                await self.emit("webhook.recovered", state, result, 0)
            self.table[key] = new.to_bytes()
            self.metrics.state_writes.inc()
        except Exception:  # keep the agent alive; the next result for this webhook carries on
            log.exception("health: failed on result at %s/%s:%s", msg.topic, msg.partition, msg.offset)

    async def disable(self, webhook_id: str, reason: str) -> int | None:
        """Switch the webhook off through the config topic, as the worker does on 410 (§6)."""
        hook = self.view.get(webhook_id)
        if hook is None:
            return None
        if not hook.active:
            return hook.version  # already off (by its owner, or by us before a restart)
        off = hook.switched_off(reason=reason, now_ms=int(time.time() * 1000))
        await (await self.configs.send(key=off.id.encode(), value=encode("WebhookConfig", off.to_record())))
        return off.version

    async def emit(
        self,
        kind: WebhookEventType,
        streak: Streak,
        result: DeliveryResult,
        threshold: int,
        reason: str | None = None,
    ) -> None:
        event = WebhookEvent.of(
            kind,
            streak,
            webhook_id=result.webhook_id,
            account_id=result.account_id,
            now_ms=int(time.time() * 1000),
            threshold=threshold,
            disabled_reason=reason,
        )
        await (await self.events.send(key=event.key, value=event.encode()))
        self.metrics.events.labels(kind).inc()
        log.warning(
            "health: %s webhook %s of account %s (%d%%: %d failed messages, %d failed attempts, last %s)",
            kind,
            event.webhook_id,
            event.account_id,
            threshold,
            event.failed_messages,
            event.failed_attempts,
            event.last_error_class,
        )

    def count_failing(self) -> None:
        """Set the failing / disabled gauges from the streaks this instance holds."""
        failing = disabled = 0
        try:
            for raw in list(self.table.values()):
                alerted = Streak.from_bytes(raw).alerted
                if alerted >= 100:
                    disabled += 1
                elif alerted > 0:
                    failing += 1
        except Exception:  # a metric must never take the processor down
            log.debug("health: could not count streaks", exc_info=True)
            return
        self.metrics.failing.labels("failing").set(failing)
        self.metrics.failing.labels("disabled").set(disabled)


class HealthApp:
    """Composition root of the health role: its own Faust app, config view and metrics."""

    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.registry = registry or CollectorRegistry()
        self.view = ConfigView(
            settings, metrics=ConfigViewMetrics(self.registry), client_id="hookline-health-configs"
        )
        self.metrics = HealthMetrics(self.registry)
        self.assigned = False
        self.app = self._build_app()

    def _build_app(self) -> faust.App:
        s = self.settings
        datadir = s.home / "faust" / s.topic("health")
        datadir.mkdir(parents=True, exist_ok=True)
        brokers = ";".join(f"kafka://{b.strip()}" for b in s.kafka_bootstrap.split(","))
        app = faust.App(
            s.topic("hookline-health"),  # the changelog is named after it (hookline.topics)
            broker=brokers,
            broker_client_id="hookline-health",
            env_prefix="HOOKLINE_FAUST_",
            processing_guarantee="at_least_once",
            producer_acks=-1,
            broker_session_timeout=6.0,
            broker_heartbeat_interval=0.5,
            broker_commit_interval=0.5,
            broker_rebalance_timeout=20.0,
            consumer_auto_offset_reset="earliest",
            stream_wait_empty=True,
            web_enabled=False,
            web_tables_enabled=False,
            autodiscover=False,
            store="memory://",
            datadir=str(datadir),
            topic_partitions=1,
        )
        app.transport = _PatientTransport(app.conf.broker_consumer, app)  # before any topic or table
        self.health = Health(app, s, self.view, self.metrics)
        root = self

        @app.on_partitions_assigned.connect  # type: ignore[arg-type]  # faust's stub wants `signal=`
        async def _assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
            root.assigned = True

        @app.on_partitions_revoked.connect  # type: ignore[arg-type]
        async def _revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
            root.assigned = False

        return app

    def ready(self) -> bool:
        return self.view.ready and self.assigned
