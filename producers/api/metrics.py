"""The management API's metrics, built against an injected registry.

Labels are bounded: the route *template* (``/api/webhooks/{webhook_id}``), the method, the status
class, the write kind. Never an id, a URL, an account or an error text.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["ApiMetrics", "status_class"]

NS = "hookline"
METHODS = ("GET", "POST", "PATCH", "DELETE", "PUT", "HEAD", "OPTIONS")
WRITE_KINDS = ("create", "update", "delete")
WRITE_OUTCOMES = ("ok", "failed")


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status < 600 else "none"


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
        self.view_ready = Gauge(
            f"{NS}_api_config_view_ready",
            "1 once the API's config view has caught up with the topic.",
            registry=r,
        )
        for kind in WRITE_KINDS:
            for outcome in WRITE_OUTCOMES:
                self.writes.labels(kind, outcome)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        method = method if method in METHODS else "other"
        self.requests.labels(route, method, status_class(status)).inc()
        self.request_seconds.labels(route).observe(seconds)
