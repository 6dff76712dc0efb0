"""Every topic hookline uses: names, partition counts and configs, in one place (docs/architecture.md §3)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from hookline.settings import Settings

__all__ = [
    "CONFIG",
    "CONTACT_EVENTS",
    "DELIVERIES",
    "DLQ",
    "HEALTH_CHANGELOG",
    "HEALTH_EVENTS",
    "LANES",
    "REPLAYS",
    "REPLICATED_FROM_BROKERS",
    "RESULTS",
    "SALE_EVENTS",
    "TopicSpec",
    "all_topics",
    "replication",
    "retry_topic",
]

CONTACT_EVENTS = "contact-events"
SALE_EVENTS = "sale-events"
CONFIG = "webhook-config"
DELIVERIES = "webhook-deliveries"
RESULTS = "webhook-results"
DLQ = "webhook-dlq"
HEALTH_EVENTS = "webhook-events"  # operator events about webhook health
LANES = "webhook-lanes"  # ordered delivery: each contact lane's state (processors/deliver/lanes.py)
REPLAYS = "webhook-replays"  # each webhook's latest replay and how far it got (hookline/replays.py)
#: The health role's table's changelog: Faust names it ``<app id>-<table>-changelog`` and would create
#: it itself; declared here so that deployments that create topics ahead (Strimzi) have it too.
HEALTH_CHANGELOG = "hookline-health-webhook-health-changelog"

_DAY_MS = 24 * 3600 * 1000

#: From this many brokers up (as the cluster's metadata reports them when the topics are created),
#: every topic gets three replicas and ``min.insync.replicas=2``.
REPLICATED_FROM_BROKERS = 3


@dataclass(frozen=True)
class TopicSpec:
    name: str  # without prefix
    partitions: int
    config: dict[str, str] = field(default_factory=dict)

    def full_name(self, settings: Settings) -> str:
        return settings.topic(self.name)


def retry_topic(delay_seconds: float) -> str:
    """Name of the delay tier for ``delay_seconds`` (``webhook-retry-5s``, ``webhook-retry-300s``)."""
    return f"webhook-retry-{delay_seconds:g}s".replace(".", "_")


def replication(brokers: int) -> tuple[int, dict[str, str]]:
    """The replication factor and the extra topic config for a cluster of ``brokers`` live brokers.

    Three brokers or more: 3 replicas, ``min.insync.replicas=2`` — with ``acks=all`` (every producer,
    hookline/clients.py) a write is acknowledged once two copies have it, so one broker may fail without
    losing or stopping anything and with two down writes stop instead of landing on a single copy.
    Fewer: the broker's own default (-1; one replica on the single local broker) and no extra config.
    """
    if brokers >= REPLICATED_FROM_BROKERS:
        return 3, {"min.insync.replicas": "2"}
    return -1, {}


def _keep(days: float) -> dict[str, str]:
    return {"retention.ms": str(round(days * _DAY_MS))}


def all_topics(settings: Settings) -> list[TopicSpec]:
    """The full topic set for these settings (retry tiers follow the retry schedule).

    Topics of the delete policy keep records for their ``HOOKLINE_RETENTION_*_DAYS`` setting
    (docs/data-retention.md says what each holds); the compacted ones keep their latest record per key.
    """
    s = settings
    specs = [
        TopicSpec(CONTACT_EVENTS, 6, _keep(s.retention_contact_events_days)),
        TopicSpec(SALE_EVENTS, 6, _keep(s.retention_sale_events_days)),
        TopicSpec(
            CONFIG,
            3,
            {
                "cleanup.policy": "compact",
                # Tombstones stay readable for a day, so a consumer that restarts within that
                # window still sees a delete instead of a resurrected webhook.
                "delete.retention.ms": str(_DAY_MS),
                "min.compaction.lag.ms": "60000",
                "segment.ms": str(6 * 3600 * 1000),
                "retention.ms": "-1",
            },
        ),
        TopicSpec(DELIVERIES, 12, _keep(s.retention_deliveries_days)),
        TopicSpec(RESULTS, 6, _keep(s.retention_results_days)),
        TopicSpec(DLQ, 3, _keep(s.retention_dlq_days)),
        TopicSpec(HEALTH_EVENTS, 3, _keep(s.retention_webhook_events_days)),
        # Partitioned like the results topic: the health agent's table is co-partitioned with it.
        TopicSpec(HEALTH_CHANGELOG, 6, {"cleanup.policy": "compact"}),
        TopicSpec(
            LANES, 6, {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000", "retention.ms": "-1"}
        ),
        # Keyed by webhook id: a webhook's latest replay; its partition decides which router runs it.
        TopicSpec(
            REPLAYS, 3, {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000", "retention.ms": "-1"}
        ),
    ]
    for delay in sorted(set(settings.retry_schedule)):
        # A tier must keep records at least as long as they wait in it, plus a day of slack.
        retention = max(int(delay * 1000) + _DAY_MS, round(s.retention_deliveries_days * _DAY_MS))
        specs.append(TopicSpec(retry_topic(delay), 6, {"retention.ms": str(retention)}))
    if settings.topic_partitions > 0:
        specs = [replace(s, partitions=settings.topic_partitions) for s in specs]
    return specs
