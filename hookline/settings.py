"""Typed, frozen settings read once from ``HOOKLINE_*`` environment variables.

Every field has a default and a one-line description (``hookline settings`` prints them).
Secrets are wrapped in :class:`Secret` so they never show in a ``repr`` or a log line.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_RETRY_SCHEDULE", "Secret", "Settings", "SettingsError", "load_settings"]

#: Standard Webhooks schedule after the first attempt: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h.
DEFAULT_RETRY_SCHEDULE: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)


class SettingsError(ValueError):
    """A ``HOOKLINE_*`` variable has a value that cannot be used."""


class Secret:
    """A string that does not print itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def _doc(text: str, default: Any) -> Any:
    if callable(default):
        return field(default_factory=default, metadata={"doc": text})
    return field(default=default, metadata={"doc": text})


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str = _doc("Kafka bootstrap servers, comma-separated.", "127.0.0.1:9092")
    topic_prefix: str = _doc("Prefix for every topic name (and consumer group).", "")
    topic_partitions: int = _doc(
        "Partitions of every topic `hookline topics create` makes (0 = each topic's own default).", 0
    )
    api_keys: Secret = _doc(
        "`account:key` pairs, comma-separated; keys are hashed when loaded.", lambda: Secret("")
    )
    secret_key: Secret = _doc(
        "Keys encrypting webhook secrets at rest: `[kid:]base64url32bytes`, comma-separated; first encrypts.",
        lambda: Secret(""),
    )
    allow_networks: tuple[str, ...] = _doc("CIDRs exempt from the outbound address check.", ())
    retry_schedule: tuple[float, ...] = _doc(
        "Retry delays in seconds after the first attempt, comma-separated.", DEFAULT_RETRY_SCHEDULE
    )
    retry_jitter: float = _doc("Relative jitter applied to every retry delay (0.2 = ±20 %).", 0.2)
    database_url: Secret = _doc(
        "Delivery log store: `sqlite:///path` or `postgresql://...`.", lambda: Secret("")
    )
    log_retention_days: int = _doc(
        "Days the log store keeps a message after its last attempt; 0 keeps forever.", 30
    )
    log_body_retention_days: int = _doc(
        "Days the log store keeps an attempt's request body, response headers and excerpt (its status,"
        " latency and error stay as long as the message); 0: as long as the message.",
        0,
    )
    retention_contact_events_days: float = _doc("Days Kafka keeps records of the contact-events topic.", 7.0)
    retention_sale_events_days: float = _doc("Days Kafka keeps records of the sale-events topic.", 7.0)
    retention_deliveries_days: float = _doc(
        "Days Kafka keeps delivery tasks (webhook-deliveries; retry tiers: at least this, or their delay"
        " plus a day).",
        7.0,
    )
    retention_results_days: float = _doc("Days Kafka keeps attempt results (webhook-results).", 7.0)
    retention_dlq_days: float = _doc("Days Kafka keeps dead letters (webhook-dlq).", 30.0)
    retention_webhook_events_days: float = _doc(
        "Days Kafka keeps webhook health events (webhook-events).", 30.0
    )
    home: Path = _doc("Working directory for the local broker, its jars, data and logs.", Path(".hookline"))
    kafka_libs: Path = _doc(
        "Cache of the broker's jars fetched by Maven (default: <home>/kafka-libs).", Path("")
    )
    kafka_port: int = _doc("Port of the local broker's client listener.", 9092)
    kafka_controller_port: int = _doc("Port of the local broker's KRaft controller listener.", 9093)
    kafka_heap: str = _doc("Java heap of the local broker.", "768m")
    kafka_jvm_options: str = _doc(
        "Garbage collector and JIT options of the local broker's JVM, separated by spaces; "
        "`-XX:+UseSerialGC -XX:TieredStopAtLevel=1` idles on less CPU (README: Where the CPU goes).",
        "-XX:+UseG1GC",
    )
    api_host: str = _doc("Interface the API and web page listen on.", "127.0.0.1")
    api_port: int = _doc("Port of the API and web page.", 8080)
    api_auth_failure_limit: int = _doc(
        "Failed API-key checks one client address may make per window before it gets 429 (0 = no limit).", 20
    )
    api_auth_failure_window: float = _doc("Seconds over which failed API-key checks are counted.", 60.0)
    api_trusted_proxies: tuple[str, ...] = _doc(
        "Addresses of reverse proxies whose X-Forwarded-For names the client; empty: none.", ()
    )
    metrics_host: str = _doc(
        "Interface the roles' /metrics, /healthz, /readyz listen on (0.0.0.0 in pods).", "127.0.0.1"
    )
    router_metrics_port: int = _doc("Port for the router's /metrics, /healthz, /readyz.", 9102)
    deliver_metrics_port: int = _doc("Port for the delivery worker's /metrics, /healthz, /readyz.", 9103)
    logsink_metrics_port: int = _doc("Port for the log sink's /metrics, /healthz, /readyz.", 9104)
    health_metrics_port: int = _doc("Port for the health processor's /metrics, /healthz, /readyz.", 9105)
    max_webhooks_per_account: int = _doc("Cap on webhooks one account may own.", 100)
    connect_timeout: float = _doc("Seconds to establish a connection to a receiver.", 5.0)
    attempt_timeout: float = _doc("Total seconds one delivery attempt may take.", 15.0)
    deliver_concurrency: int = _doc("HTTP requests one delivery worker keeps in flight at most.", 256)
    deliver_webhook_concurrency: int = _doc("HTTP requests in flight to one webhook at most, per worker.", 16)
    deliver_max_buffered: int = _doc(
        "Tasks a delivery worker holds (waiting or in flight) before it pauses.", 5000
    )
    deliver_drain_timeout: float = _doc(
        "Seconds a delivery worker drains in-flight requests on SIGTERM.", 20.0
    )
    deliver_instance_id: str = _doc(
        "Static group member id of a delivery worker (e.g. the pod name); empty: none.", ""
    )
    breaker_failures: int = _doc(
        "Consecutive connection errors, timeouts or 5xx that open a webhook's circuit breaker (0 = off).", 10
    )
    breaker_probe_interval: float = _doc(
        "Seconds between the probe attempts an open breaker lets through.", 30.0
    )
    recover_max: int = _doc("Failed messages one recover call re-sends at most.", 10_000)
    disable_after_failures: int = _doc(
        "Consecutive failed messages that disable a webhook (alerts at 50/70/90 %; 0 = never).", 100
    )
    disable_after: float = _doc(
        "Seconds a failure streak (of at least 3 failed messages) may last before the webhook is disabled.",
        5 * 24 * 3600.0,
    )
    log_format: str = _doc("`json`, `text`, or `auto` (text on a terminal, JSON otherwise).", "auto")
    log_level: str = _doc("Root log level.", "INFO")

    def __post_init__(self) -> None:
        for net in self.allow_networks:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError as exc:
                raise SettingsError(f"HOOKLINE_ALLOW_NETWORKS: {net!r} is not a CIDR") from exc
        if any(d < 0 for d in self.retry_schedule):
            raise SettingsError("HOOKLINE_RETRY_SCHEDULE: delays must be >= 0")
        if not 0 <= self.retry_jitter < 1:
            raise SettingsError("HOOKLINE_RETRY_JITTER: must be in [0, 1)")
        if self.log_retention_days < 0:
            raise SettingsError("HOOKLINE_LOG_RETENTION_DAYS: must be >= 0")
        if self.log_body_retention_days < 0:
            raise SettingsError("HOOKLINE_LOG_BODY_RETENTION_DAYS: must be >= 0 (0 = as long as the message)")
        for f in dataclasses.fields(self):
            if f.name.startswith("retention_") and not 0 < getattr(self, f.name) <= 36500:
                raise SettingsError(
                    f"HOOKLINE_{f.name.upper()}: must be a number of days above 0 (at most 36500);"
                    " a topic that holds personal data needs a limit"
                )
        if self.api_auth_failure_limit < 0:
            raise SettingsError("HOOKLINE_API_AUTH_FAILURE_LIMIT: must be >= 0 (0 = no limit)")
        if self.breaker_failures < 0 or self.breaker_probe_interval <= 0:
            raise SettingsError("HOOKLINE_BREAKER_*: failures must be >= 0, the probe interval positive")
        if self.disable_after_failures < 0 or self.disable_after <= 0:
            raise SettingsError("HOOKLINE_DISABLE_AFTER*: failures must be >= 0, the age positive")
        if self.recover_max < 1:
            raise SettingsError("HOOKLINE_RECOVER_MAX: must be at least 1")
        if self.api_auth_failure_window <= 0:
            raise SettingsError("HOOKLINE_API_AUTH_FAILURE_WINDOW: must be positive")
        for proxy in self.api_trusted_proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError as exc:
                raise SettingsError(
                    f"HOOKLINE_API_TRUSTED_PROXIES: {proxy!r} is not an IP address or CIDR"
                ) from exc

    @property
    def kafka_libs_dir(self) -> Path:
        return self.kafka_libs if str(self.kafka_libs) not in ("", ".") else self.home / "kafka-libs"

    def topic(self, name: str) -> str:
        """Return the full name of a topic or group after the configured prefix."""
        return f"{self.topic_prefix}{name}"

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @classmethod
    def describe(cls) -> list[tuple[str, str, str]]:
        """(variable, default, description) for every field, in declaration order."""
        rows = []
        for f in dataclasses.fields(cls):
            default: Any = f.default
            if default is dataclasses.MISSING:
                factory: Any = f.default_factory
                default = factory()
            shown = _render(default)
            rows.append((f"HOOKLINE_{f.name.upper()}", shown, str(f.metadata["doc"])))
        return rows


def _render(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(_num(v) for v in value)
    if isinstance(value, Secret):
        return "(unset)" if not value else "**********"
    return str(value)


def _num(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _parse(f: dataclasses.Field[Any], raw: str) -> Any:
    name = f"HOOKLINE_{f.name.upper()}"
    kind = f.type
    try:
        if kind == "Secret":
            return Secret(raw.strip())
        if kind == "Path":
            return Path(raw)
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "tuple[str, ...]":
            return tuple(p.strip() for p in raw.split(",") if p.strip())
        if kind == "tuple[float, ...]":
            return tuple(float(p) for p in raw.split(",") if p.strip())
        return raw
    except ValueError as exc:
        raise SettingsError(f"{name}: cannot read {raw!r} as {kind}") from exc


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Read settings from ``environ`` (default: the process environment); ``overrides`` win."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Settings):
        raw = env.get(f"HOOKLINE_{f.name.upper()}")
        if raw is not None and raw != "":
            values[f.name] = _parse(f, raw)
    values.update(overrides)
    return Settings(**values)
