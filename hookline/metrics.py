"""Every business metric hookline exports, built against an injected registry.

Names use base units and ``_total`` for counters; labels are bounded enums — never a URL,
webhook id, account id or error text. Dashboards and alert rules use these names only.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from hookline.policy import ERROR_CLASSES as _POLICY_ERROR_CLASSES
from hookline.webhooks import EVENT_TYPES as _EVENT_TYPES
from schemas.codec import REASONS as CODEC_REASONS

__all__ = [
    "ApiMetrics",
    "ConfigViewMetrics",
    "DeliveryMetrics",
    "HealthMetrics",
    "LogSinkMetrics",
    "RouterMetrics",
    "metric_names",
    "status_class",
]

NS = "hookline"

#: Bounded label values.
OUTCOMES = ("delivered", "failed", "skipped", "dead_lettered", "deferred")
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx", "none")
DEFER_REASONS = ("backlog", "breaker", "rate_limit")
#: Where a task its webhook's rate limit (or a Retry-After pause) delayed waited.
RATE_LIMITED_WHERE = ("memory", "deferred")
#: Where a task of an ordered webhook was held behind its contact's lane head (or dropped, stale).
LANE_HELD_WHERE = ("memory", "parked", "stale")
BREAKER_TRANSITIONS = ("opened", "closed")
REPLAY_OUTCOMES = ("done", "canceled", "failed", "stopped")
WEBHOOK_EVENT_TYPES = ("webhook.failing", "webhook.disabled", "webhook.recovered")
#: Every error class, plus "none" for an attempt without one (delivered or skipped).
ERROR_CLASSES = ("none", *_POLICY_ERROR_CLASSES)
EVENT_TYPES = _EVENT_TYPES

# Event-to-delivery latency spans seconds to hours (retries wait up to a day).
E2E_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
    900,
    1800,
    3600,
    7200,
    21600,
    43200,
    86400,
    172800,
)


def attempt_buckets(timeout: float) -> tuple[float, ...]:
    """Attempt latency buckets whose last finite bound is the attempt timeout."""
    base = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
    return (*[b for b in base if b < timeout], timeout)


def consumer_lag_gauge(registry: CollectorRegistry) -> Gauge:
    """``hookline_consumer_lag_records{role}``: every consuming role reports its lag under one name."""
    return Gauge(
        f"{NS}_consumer_lag_records",
        "Records behind the end of the assigned partitions.",
        ["role"],
        registry=registry,
    )


@dataclass
class RouterMetrics:
    registry: CollectorRegistry

    def __post_init__(self) -> None:
        r = self.registry
        self.events_consumed = Counter(
            f"{NS}_router_events_consumed_total",
            "Event records read from the event topics.",
            ["event_type"],
            registry=r,
        )
        self.tasks_routed = Counter(
            f"{NS}_router_tasks_routed_total",
            "Delivery tasks produced (one per event and webhook).",
            ["event_type"],
            registry=r,
        )
        self.events_unmatched = Counter(
            f"{NS}_router_events_unmatched_total",
            "Events no webhook subscribes to.",
            ["event_type"],
            registry=r,
        )
        self.dead_lettered = Counter(
            f"{NS}_router_dead_lettered_total", "Event records sent to the DLQ.", ["reason"], registry=r
        )
        self.config_catch_up_failed = Counter(
            f"{NS}_router_config_catch_up_failed_total",
            "Events routed without the read-your-write check: the config topic's end offsets could not be"
            " read, or the view did not apply them in time (docs/architecture.md §4).",
            registry=r,
        )
        self.route_seconds = Histogram(
            f"{NS}_router_route_seconds",
            "Time to decode, join and produce one event.",
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1),
            registry=r,
        )
        self.consumer_lag = consumer_lag_gauge(r)
        self.replay_events_scanned = Counter(
            f"{NS}_router_replay_events_scanned_total",
            "Event records a replay read again (of every account; docs/architecture.md §7).",
            registry=r,
        )
        self.replay_tasks = Counter(
            f"{NS}_router_replay_tasks_total",
            "Delivery tasks replays produced and the broker acknowledged.",
            registry=r,
        )
        self.replays_ended = Counter(
            f"{NS}_router_replays_ended_total",
            "Replay runs that ended here: done, canceled (webhook off or deleted), failed (resumed later),"
            " stopped (partition revoked or shutdown).",
            ["outcome"],
            registry=r,
        )
        self.replays_running = Gauge(
            f"{NS}_router_replays_running",
            "Replays running in this router instance (at most its concurrency).",
            registry=r,
        )
        for outcome in REPLAY_OUTCOMES:
            self.replays_ended.labels(outcome)


@dataclass
class HealthMetrics:
    """The health processor's (inside the router process, docs/architecture.md §6)."""

    registry: CollectorRegistry

    def __post_init__(self) -> None:
        r = self.registry
        self.events = Counter(
            f"{NS}_health_webhook_events_total",
            "Operator events written to webhook-events (webhook.failing, .disabled, .recovered).",
            ["type"],
            registry=r,
        )
        self.results = Counter(
            f"{NS}_health_results_total", "Result records the health processor read.", registry=r
        )
        self.state_writes = Counter(
            f"{NS}_health_state_writes_total", "Streak changes written to the health table.", registry=r
        )
        self.failing = Gauge(
            f"{NS}_health_webhooks_failing",
            "Webhooks of this instance's partitions whose streak has crossed an alert threshold.",
            ["state"],
            registry=r,
        )
        for kind in WEBHOOK_EVENT_TYPES:
            self.events.labels(kind)
        for state in ("failing", "disabled"):
            self.failing.labels(state)


@dataclass
class DeliveryMetrics:
    registry: CollectorRegistry
    attempt_timeout: float = 15.0

    def __post_init__(self) -> None:
        r = self.registry
        self.deliveries = Counter(
            f"{NS}_deliveries_total",
            "Delivery attempts by outcome, status class and error class.",
            ["outcome", "status_class", "error_class"],
            registry=r,
        )
        self.attempt_seconds = Histogram(
            f"{NS}_delivery_attempt_seconds",
            "Duration of one HTTP delivery attempt.",
            buckets=attempt_buckets(self.attempt_timeout),
            registry=r,
        )
        self.event_to_delivery_seconds = Histogram(
            f"{NS}_event_to_delivery_seconds",
            "From the event's occurrence to a successful delivery.",
            buckets=E2E_BUCKETS,
            registry=r,
        )
        self.attempt_number = Histogram(
            f"{NS}_delivery_attempt_number",
            "Attempt number of each finished message (delivered or DLQ).",
            buckets=(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 15, 20),
            registry=r,
        )
        self.in_flight = Gauge(f"{NS}_deliveries_in_flight", "HTTP requests currently in flight.", registry=r)
        self.duplicates_dropped = Counter(
            f"{NS}_delivery_duplicate_tasks_total",
            "Routed tasks dropped unsent because this worker had already taken the same message"
            " (a router that crashed routes its last commit interval again).",
            registry=r,
        )
        self.retries_scheduled = Counter(
            f"{NS}_retries_scheduled_total", "Tasks sent to a retry tier.", ["tier"], registry=r
        )
        self.dead_lettered = Counter(
            f"{NS}_delivery_dead_lettered_total", "Tasks sent to the DLQ.", ["reason"], registry=r
        )
        self.blocked_addresses = Counter(
            f"{NS}_blocked_addresses_total",
            "Attempts refused because the target address is not public.",
            registry=r,
        )
        self.webhooks_disabled = Counter(
            f"{NS}_webhooks_disabled_total", "Webhooks switched off by the platform.", ["reason"], registry=r
        )
        self.deferred = Counter(
            f"{NS}_delivery_deferred_total",
            "Tasks moved on unattempted: to the first retry tier because their webhook's backlog was"
            " full (reason=backlog), to their next attempt because its circuit breaker is open"
            " (reason=breaker), or to a retry tier until their webhook's rate limit lets them go"
            " (reason=rate_limit).",
            ["reason"],
            registry=r,
        )
        self.breaker_transitions = Counter(
            f"{NS}_delivery_breaker_transitions_total",
            "Circuit breakers of webhooks that opened or closed in this worker.",
            ["to"],
            registry=r,
        )
        self.breakers_open = Gauge(
            f"{NS}_delivery_breakers_open",
            "Webhooks whose circuit breaker is open in this worker.",
            registry=r,
        )
        self.rate_limited = Counter(
            f"{NS}_delivery_rate_limited_total",
            "Tasks their webhook's rate limit (or a Retry-After pause) delayed: waiting in memory for"
            " their turn (where=memory), or put back into a retry tier without a request (where=deferred).",
            ["where"],
            registry=r,
        )
        self.rate_limited_webhooks = Gauge(
            f"{NS}_delivery_rate_limited_webhooks",
            "Webhooks whose tasks wait for their rate limit, or paused by a Retry-After, in this worker.",
            registry=r,
        )
        self.lane_held = Counter(
            f"{NS}_delivery_lane_held_total",
            "Tasks of ordered webhooks held behind their contact's lane head: waiting in memory while it"
            " is in flight (where=memory), parked in a retry tier (where=parked), or a stale copy of a"
            " finished message dropped (where=stale).",
            ["where"],
            registry=r,
        )
        self.lanes_blocked = Gauge(
            f"{NS}_delivery_lanes_blocked",
            "Lanes (contacts of ordered webhooks) blocked behind a message not finished yet, as this"
            " worker's view of the lane topic sees them.",
            registry=r,
        )
        self.buffered = Gauge(
            f"{NS}_delivery_tasks_buffered",
            "Tasks a worker holds: queued for a slot or in flight.",
            registry=r,
        )
        self.consumer_lag = consumer_lag_gauge(r)
        # Series that exist from the start: rate() over a counter that appears mid-burst misses
        # that burst, and dashboards would show "no data" instead of zero.
        for outcome, status, error in _COMMON_DELIVERY_SERIES:
            self.deliveries.labels(outcome, status, error)
        self.consumer_lag.labels("deliver")
        for reason in DEFER_REASONS:
            self.deferred.labels(reason)
        for to in BREAKER_TRANSITIONS:
            self.breaker_transitions.labels(to)
        for where in RATE_LIMITED_WHERE:
            self.rate_limited.labels(where)
        for where in LANE_HELD_WHERE:
            self.lane_held.labels(where)


_COMMON_DELIVERY_SERIES = (
    ("delivered", "2xx", "none"),
    ("failed", "4xx", "http_4xx"),
    ("failed", "5xx", "http_5xx"),
    ("failed", "none", "timeout"),
    ("failed", "none", "connect"),
    ("skipped", "none", "none"),
    ("dead_lettered", "5xx", "http_5xx"),
)


@dataclass
class ConfigViewMetrics:
    registry: CollectorRegistry

    def __post_init__(self) -> None:
        r = self.registry
        self.webhooks = Gauge(f"{NS}_config_webhooks", "Webhooks in this process's config view.", registry=r)
        self.bad_records = Counter(
            f"{NS}_config_bad_records_total",
            "Config records the view refused: undecodable, without a key, or keyed by another id.",
            registry=r,
        )


#: Why the log sink dead-letters a record: the codec's reasons, a tombstone, or a row the database refused.
LOGSINK_DLQ_REASONS = (*CODEC_REASONS, "tombstone", "store_rejected")


@dataclass
class LogSinkMetrics:
    registry: CollectorRegistry

    def __post_init__(self) -> None:
        r = self.registry
        self.results_stored = Counter(
            f"{NS}_logsink_results_stored_total",
            "Result records written to the log store as new attempts.",
            registry=r,
        )
        self.results_duplicate = Counter(
            f"{NS}_logsink_results_duplicate_total",
            "Result records already in the log store (a re-read of the topic).",
            registry=r,
        )
        self.dead_lettered = Counter(
            f"{NS}_logsink_dead_lettered_total", "Result records sent to the DLQ.", ["reason"], registry=r
        )
        self.batch_write_seconds = Histogram(
            f"{NS}_logsink_batch_write_seconds",
            "Time to write one batch of results to the log store (one transaction).",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.batch_records = Histogram(
            f"{NS}_logsink_batch_records",
            "Result records per batch written.",
            buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000),
            registry=r,
        )
        self.store_errors = Counter(
            f"{NS}_logsink_store_errors_total",
            "Batch writes that failed because the log store was unavailable (retried).",
            registry=r,
        )
        self.purged_messages = Counter(
            f"{NS}_logsink_purged_messages_total", "Messages deleted by the retention purge.", registry=r
        )
        self.expired_bodies = Counter(
            f"{NS}_logsink_expired_bodies_total",
            "Attempts whose request body and response excerpt the body retention removed.",
            registry=r,
        )
        self.store_up = Gauge(
            f"{NS}_logsink_store_up", "1 while the log store answered the last write or ping.", registry=r
        )
        self.consumer_lag = consumer_lag_gauge(r)
        for reason in LOGSINK_DLQ_REASONS:
            self.dead_lettered.labels(reason)


METHODS = ("GET", "POST", "PATCH", "DELETE", "PUT", "HEAD", "OPTIONS")
WRITE_KINDS = ("create", "update", "delete")
WRITE_OUTCOMES = ("ok", "failed")
SEND_TRIGGERS = ("manual", "test", "recover")


def status_class(status: int | None) -> str:
    """The bounded ``status_class`` label of an HTTP status (``none`` without a usable one)."""
    if status is None or not 200 <= status <= 599:
        return "none"
    return f"{status // 100}xx"


@dataclass
class ApiMetrics:
    registry: CollectorRegistry

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            f"{NS}_api_requests_total",
            "API requests by route template, method and status class.",
            ["route", "method", "status_class"],
            registry=r,
        )
        self.request_seconds = Histogram(
            f"{NS}_api_request_seconds",
            "Time to answer an API request, by route template.",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.writes = Counter(
            f"{NS}_api_config_writes_total",
            "Webhook config writes produced to the config topic, by kind and outcome.",
            ["kind", "outcome"],
            registry=r,
        )
        self.auth_failures = Counter(
            f"{NS}_api_auth_failures_total", "Requests refused for a missing or unknown API key.", registry=r
        )
        self.auth_throttled = Counter(
            f"{NS}_api_auth_throttled_total",
            "Requests refused with 429 because their address presented too many unknown API keys.",
            registry=r,
        )
        self.view_ready = Gauge(
            f"{NS}_api_config_view_ready",
            "1 once the API's config view has caught up with the topic.",
            registry=r,
        )
        self.sends = Counter(
            f"{NS}_api_sends_total",
            "Redeliveries (manual), test sends and recovered messages produced to the delivery topic,"
            " by trigger and outcome.",
            ["trigger", "outcome"],
            registry=r,
        )
        self.log_store_errors = Counter(
            f"{NS}_api_log_store_errors_total",
            "Delivery log reads that failed because the log store was unreachable.",
            registry=r,
        )
        self.contact_erasures = Counter(
            f"{NS}_api_contact_erasures_total",
            "Contact erasures account owners asked for through the API (each recorded in the log store).",
            registry=r,
        )
        for kind in WRITE_KINDS:
            for outcome in WRITE_OUTCOMES:
                self.writes.labels(kind, outcome)
        for trigger in SEND_TRIGGERS:
            for outcome in WRITE_OUTCOMES:
                self.sends.labels(trigger, outcome)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        method = method if method in METHODS else "other"
        self.requests.labels(route, method, status_class(status)).inc()
        self.request_seconds.labels(route).observe(seconds)


def metric_names() -> set[str]:
    """Every sample name the roles can export (dashboards and rules are checked against it)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    names: set[str] = set()
    for build in (
        ApiMetrics,
        RouterMetrics,
        DeliveryMetrics,
        ConfigViewMetrics,
        LogSinkMetrics,
        HealthMetrics,
    ):
        reg = CollectorRegistry()
        build(reg)
        for fam in reg.collect():
            names.update(fam.name + sfx for sfx in suffixes.get(fam.type, ("",)))
    return names
