"""Write the Grafana dashboards ``overview.json`` and ``delivery.json`` next to this file.

Run from the repository root after changing a panel: ``.venv/bin/python deploy/grafana/build.py``.
A test fails while the committed JSON differs from what this script writes; other tests check that
every metric name exists in :mod:`hookline.metrics`, that a real Prometheus, scraping a running
pipeline, answers every panel's queries, and that Grafana's published dashboard schema accepts the JSON
as it is, without the defaults Grafana would fill in (deploy/grafana/check, ``make grafana-check``).

Queries use Grafana's ``$__rate_interval`` and ``$__range``; the datasource is a dashboard variable,
so the same JSON works with any Prometheus datasource (and with the Grafana sidecar's ConfigMap).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DS = {"type": "prometheus", "uid": "${datasource}"}
ROLE_JOBS = 'job=~"hookline-(api|router|deliver|logsink|health)"'

# Options that Grafana's published dashboard schema requires of each panel type (deploy/grafana/check
# decodes the dashboards strictly against it), at the values Grafana writes for a new panel.
LEGEND = {"displayMode": "list", "placement": "bottom", "showLegend": True, "calcs": []}
TOOLTIP = {"mode": "single", "sort": "none"}
STAT_OPTIONS = {
    "graphMode": "area",
    "colorMode": "value",
    "justifyMode": "auto",
    "textMode": "auto",
    "wideLayout": True,
    "showPercentChange": False,
    "percentChangeColorMode": "standard",
    "orientation": "auto",
}
BARGAUGE_OPTIONS = {
    "displayMode": "gradient",
    "valueMode": "color",
    "namePlacement": "auto",
    "showUnfilled": True,
    "sizing": "auto",
    "minVizWidth": 8,
    "minVizHeight": 16,
    "maxVizHeight": 300,
    "legend": {**LEGEND, "showLegend": False},
    "orientation": "auto",
}
HEATMAP_OPTIONS = {
    "color": {
        "mode": "scheme",
        "scheme": "Oranges",
        "fill": "dark-orange",
        "scale": "exponential",
        "exponent": 0.5,
        "steps": 64,
        "reverse": False,
    },
    "showValue": "auto",
    "legend": {"show": True},
    "tooltip": {"mode": "single", "yHistogram": False, "showColorScale": False},
    "exemplars": {"color": "rgba(255,0,255,0.7)"},
}


@dataclass
class Target:
    expr: str
    legend: str = ""
    fmt: str = "time_series"  # or "heatmap" for bucket series


@dataclass
class Panel:
    title: str
    description: str
    targets: list[Target]
    kind: str = "timeseries"
    unit: str = "short"
    width: int = 12
    height: int = 8
    options: dict[str, Any] = field(default_factory=dict)
    field_defaults: dict[str, Any] = field(default_factory=dict)


@dataclass
class Row:
    title: str


def q(quantile: float, metric: str, window: str = "$__rate_interval") -> str:
    return f"histogram_quantile({quantile}, sum by (le) (rate({metric}_bucket[{window}])))"


def rate(selector: str, by: str = "", window: str = "$__rate_interval") -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({selector}[{window}]))"


ATTEMPTED = 'outcome=~"delivered|failed|dead_lettered"'


def success(window: str) -> str:
    """Delivered / attempted; skipped tasks made no request and do not count."""
    return (
        f'sum(rate(hookline_deliveries_total{{outcome="delivered"}}[{window}])) '
        f"/ sum(rate(hookline_deliveries_total{{{ATTEMPTED}}}[{window}]))"
    )


def overview() -> list[Panel | Row]:
    return [
        Row("Traffic"),
        Panel(
            "Events in",
            "Event records the routers read, by event type.",
            [Target(rate("hookline_router_events_consumed_total", "event_type"), "{{event_type}}")],
            unit="ops",
            width=8,
        ),
        Panel(
            "Tasks routed and unmatched events",
            "Delivery tasks produced (one per event and subscribed webhook), events no webhook wants, and "
            "events routed before the config view could confirm it had every earlier change.",
            [
                Target(rate("hookline_router_tasks_routed_total"), "tasks routed"),
                Target(rate("hookline_router_events_unmatched_total"), "events unmatched"),
                Target(rate("hookline_router_config_catch_up_failed_total"), "routed without catch-up"),
            ],
            unit="ops",
            width=8,
        ),
        Panel(
            "Deliveries out by outcome",
            "Finished attempts: delivered (2xx), failed (will be retried), dead_lettered (last attempt "
            "failed), skipped (webhook deleted, inactive or unsubscribed: no request).",
            [Target(rate("hookline_deliveries_total", "outcome"), "{{outcome}}")],
            unit="ops",
            width=8,
            options={"stacking": "normal"},
        ),
        Panel(
            "Success rate",
            "Delivered / attempted (skipped tasks excluded) over the selected range.",
            [Target(success("$__range"), "success rate")],
            kind="stat",
            unit="percentunit",
            width=6,
            field_defaults={
                "min": 0,
                "max": 1,
                "thresholds": {
                    "mode": "absolute",
                    "steps": [
                        {"color": "red", "value": None},
                        {"color": "orange", "value": 0.9},
                        {"color": "green", "value": 0.98},
                    ],
                },
            },
        ),
        Panel(
            "Success rate over time",
            "Delivered / attempted; the HooklineDeliverySuccessRateLow alert fires below 90 %.",
            [Target(success("$__rate_interval"), "success rate")],
            unit="percentunit",
            width=18,
            field_defaults={"min": 0, "max": 1},
        ),
        Row("Latency"),
        Panel(
            "Event to delivery (p50 / p95 / p99)",
            "From the event's occurrence to the receiver's 2xx, retries included.",
            [
                Target(q(p, "hookline_event_to_delivery_seconds"), f"p{int(p * 100)}")
                for p in (0.5, 0.95, 0.99)
            ],
            unit="s",
            width=8,
        ),
        Panel(
            "Attempt duration (p50 / p95 / p99)",
            "One HTTP attempt, connect to last byte; capped by HOOKLINE_ATTEMPT_TIMEOUT.",
            [
                Target(q(p, "hookline_delivery_attempt_seconds"), f"p{int(p * 100)}")
                for p in (0.5, 0.95, 0.99)
            ],
            unit="s",
            width=8,
        ),
        Panel(
            "Routing time (p50 / p99)",
            "Decode, join with the config view and produce the tasks of one event.",
            [Target(q(p, "hookline_router_route_seconds"), f"p{int(p * 100)}") for p in (0.5, 0.99)],
            unit="s",
            width=8,
        ),
        Row("Retries and dead letters"),
        Panel(
            "Retries scheduled by tier",
            "Tasks sent to a retry delay topic after a failed attempt.",
            [Target(rate("hookline_retries_scheduled_total", "tier"), "{{tier}}")],
            unit="ops",
            width=8,
        ),
        Panel(
            "Dead-lettered",
            "Records sent to webhook-dlq: by the delivery workers (retries exhausted) and by the router "
            "(unreadable events).",
            [
                Target(rate("hookline_delivery_dead_lettered_total", "reason"), "deliver: {{reason}}"),
                Target(rate("hookline_router_dead_lettered_total", "reason"), "router: {{reason}}"),
            ],
            unit="ops",
            width=8,
        ),
        Panel(
            "Dead-lettered in range",
            "Delivery tasks that went to the DLQ over the selected range.",
            [Target("sum(increase(hookline_delivery_dead_lettered_total[$__range]))", "tasks")],
            kind="stat",
            width=8,
        ),
        Row("Capacity"),
        Panel(
            "Requests in flight",
            "HTTP requests the delivery workers have open, per pod (cap: HOOKLINE_DELIVER_CONCURRENCY).",
            [Target("sum by (instance) (hookline_deliveries_in_flight)", "{{instance}}")],
            width=8,
        ),
        Panel(
            "Consumer lag per role",
            "Records behind the end of the assigned partitions, as each role's Kafka client reports it.",
            [Target("sum by (role) (hookline_consumer_lag_records)", "{{role}}")],
            width=8,
        ),
        Panel(
            "Pods up per role",
            "Targets that answered their last scrape.",
            [Target(f"sum by (job) (up{{{ROLE_JOBS}}})", "{{job}}")],
            kind="stat",
            width=8,
        ),
        Row("Log sink"),
        Panel(
            "Results written to the log store",
            "Result records stored as new attempts, and re-read ones already there (idempotent).",
            [
                Target(rate("hookline_logsink_results_stored_total"), "stored"),
                Target(rate("hookline_logsink_results_duplicate_total"), "duplicate"),
            ],
            unit="ops",
            width=8,
        ),
        Panel(
            "Log store batch write (p50 / p99)",
            "One transaction writing a batch of results.",
            [Target(q(p, "hookline_logsink_batch_write_seconds"), f"p{int(p * 100)}") for p in (0.5, 0.99)],
            unit="s",
            width=8,
        ),
        Panel(
            "Log store errors and dead letters",
            "Failed batch writes (retried) and result records the log sink could not store.",
            [
                Target(rate("hookline_logsink_store_errors_total"), "store errors"),
                Target(rate("hookline_logsink_dead_lettered_total", "reason"), "dlq: {{reason}}"),
            ],
            unit="ops",
            width=5,
        ),
        Panel(
            "Log store up",
            "1 while every log sink's store answered its last write or ping.",
            [Target("min(hookline_logsink_store_up)", "up")],
            kind="stat",
            width=3,
            field_defaults={
                "thresholds": {
                    "mode": "absolute",
                    "steps": [{"color": "red", "value": None}, {"color": "green", "value": 1}],
                }
            },
        ),
        Row("API"),
        Panel(
            "API requests by status class",
            "Management API requests (route templates, never ids).",
            [Target(rate("hookline_api_requests_total", "status_class"), "{{status_class}}")],
            unit="reqps",
            width=12,
        ),
        Panel(
            "API latency p99 by route",
            "Time to answer an API request.",
            [
                Target(
                    "histogram_quantile(0.99, sum by (le, route) "
                    "(rate(hookline_api_request_seconds_bucket[$__rate_interval])))",
                    "{{route}}",
                )
            ],
            unit="s",
            width=12,
        ),
    ]


def delivery() -> list[Panel | Row]:
    return [
        Row("Responses"),
        Panel(
            "Attempts by status class",
            "HTTP status class of each attempt's response; `none` when no response came (timeout, "
            "connection or TLS error, blocked address).",
            [Target(rate("hookline_deliveries_total", "status_class"), "{{status_class}}")],
            unit="ops",
            options={"stacking": "normal"},
        ),
        Panel(
            "Failed attempts by error class",
            "Why attempts failed: http_4xx / http_5xx (the receiver answered), timeout, connect, dns, tls, "
            "redirect (never followed), blocked_address.",
            [
                Target(
                    rate('hookline_deliveries_total{error_class!="none"}', "error_class"), "{{error_class}}"
                )
            ],
            unit="ops",
            options={"stacking": "normal"},
        ),
        Panel(
            "Outcome by status class",
            "Attempts over the selected range, by outcome and status class.",
            [
                Target(
                    "sum by (outcome, status_class) (increase(hookline_deliveries_total[$__range]))",
                    "{{outcome}} {{status_class}}",
                )
            ],
            kind="bargauge",
            width=12,
        ),
        Panel(
            "Blocked addresses",
            "Attempts refused because the receiver's address is not public (loopback, private, metadata...). "
            "Not sent.",
            [Target(rate("hookline_blocked_addresses_total"), "blocked")],
            unit="ops",
            width=6,
        ),
        Panel(
            "Webhooks disabled",
            "Webhooks the platform switched off over the selected range (410 Gone).",
            [Target("sum by (reason) (increase(hookline_webhooks_disabled_total[$__range]))", "{{reason}}")],
            kind="stat",
            width=6,
        ),
        Row("Attempts"),
        Panel(
            "Attempt number of finished messages",
            "How many attempts messages needed, counting delivered and dead-lettered ones, over the range.",
            [
                Target(
                    "sum by (le) (increase(hookline_delivery_attempt_number_bucket[$__range]))",
                    "{{le}}",
                    fmt="heatmap",
                )
            ],
            kind="bargauge",
            width=12,
            options={"displayMode": "gradient", "orientation": "vertical"},
        ),
        Panel(
            "Attempt duration distribution",
            "Heatmap of HTTP attempt durations.",
            [
                Target(
                    "sum by (le) (increase(hookline_delivery_attempt_seconds_bucket[$__rate_interval]))",
                    "{{le}}",
                    fmt="heatmap",
                )
            ],
            kind="heatmap",
            width=12,
        ),
        Panel(
            "Event to delivery distribution",
            "Heatmap of the time from event to successful delivery.",
            [
                Target(
                    "sum by (le) (increase(hookline_event_to_delivery_seconds_bucket[$__rate_interval]))",
                    "{{le}}",
                    fmt="heatmap",
                )
            ],
            kind="heatmap",
            width=12,
        ),
        Panel(
            "Retries scheduled by tier",
            "Failed attempts waiting in each retry delay topic.",
            [Target(rate("hookline_retries_scheduled_total", "tier"), "{{tier}}")],
            unit="ops",
            width=12,
        ),
        Panel(
            "Dead-lettered by reason",
            "Delivery tasks sent to webhook-dlq.",
            [Target(rate("hookline_delivery_dead_lettered_total", "reason"), "{{reason}}")],
            unit="ops",
            width=12,
        ),
        Panel(
            "Tasks held per worker",
            "Tasks a worker holds, queued for a slot or in flight (it pauses its consumer at "
            "HOOKLINE_DELIVER_MAX_BUFFERED).",
            [Target("sum by (instance) (hookline_delivery_tasks_buffered)", "{{instance}}")],
            width=12,
        ),
        Panel(
            "Deferred tasks",
            "Tasks moved, unattempted, to the first retry tier because their webhook's backlog was full "
            "(one slow receiver does not hold up the others).",
            [Target(rate("hookline_delivery_deferred_total"), "deferred")],
            unit="ops",
            width=12,
        ),
        Panel(
            "Rate-limited tasks",
            "Tasks their webhook's rateLimit (or a receiver's Retry-After pause) delayed: waiting in a "
            "worker's memory for their turn (memory), or put back into a retry tier without a request "
            "(deferred; never a failure, never an attempt used up).",
            [Target(rate("hookline_delivery_rate_limited_total", "where"), "{{where}}")],
            unit="ops",
            width=12,
        ),
        Panel(
            "Rate-limited webhooks",
            "Webhooks with tasks waiting for their rate limit, or paused by a Retry-After, per worker "
            "(the buckets are per worker: see README, Rate limit per webhook).",
            [Target("sum by (instance) (hookline_delivery_rate_limited_webhooks)", "{{instance}}")],
            width=12,
        ),
        Panel(
            "Ordered tasks held",
            'Tasks of webhooks with ordering "contact" held behind an earlier message of their contact: '
            "waiting in a worker's memory while it is in flight (memory), parked in the first retry tier "
            "while it waits for a retry (parked; a deferred result, ordering_held, never a failure), or a "
            "copy of a message already finished, dropped (stale).",
            [Target(rate("hookline_delivery_lane_held_total", "where"), "{{where}}")],
            unit="ops",
            width=12,
        ),
        Panel(
            "Blocked lanes",
            "Contacts of ordered webhooks whose next message waits for an earlier one not finished yet "
            "(being retried). Every worker reads the whole lane topic, so each reports every lane: the "
            "highest is the count. A number that stays up while the receiver answers 2xx needs a look "
            "(docs/architecture.md §6, Ordered delivery).",
            [Target("max(hookline_delivery_lanes_blocked)", "blocked lanes")],
            width=12,
        ),
        Panel(
            "Skipped tasks",
            "Tasks for webhooks deleted, deactivated or unsubscribed after the event was routed.",
            [Target(rate('hookline_deliveries_total{outcome="skipped"}'), "skipped")],
            unit="ops",
            width=12,
        ),
        Panel(
            "Failing and disabled webhooks",
            "Webhooks whose failure streak crossed an alert threshold (failing: 50-90 % of "
            "HOOKLINE_DISABLE_AFTER_FAILURES) or that the health processor disabled and that have "
            "not delivered or been re-enabled since (the health processor's table; runbook: webhook "
            "disabled).",
            [Target("sum by (state) (hookline_health_webhooks_failing)", "{{state}}")],
            width=12,
        ),
        Panel(
            "Webhook health events",
            "Operator events written to webhook-events: webhook.failing, webhook.disabled, "
            "webhook.recovered.",
            [Target(rate("hookline_health_webhook_events_total", "type"), "{{type}}")],
            unit="ops",
            width=12,
        ),
    ]


def _panel_json(panel: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
    targets = []
    for i, t in enumerate(panel.targets):
        target: dict[str, Any] = {
            "datasource": DS,
            "refId": chr(ord("A") + i),
            "expr": t.expr,
            "legendFormat": t.legend,
            "range": panel.kind not in ("stat", "bargauge"),
            "instant": panel.kind in ("stat", "bargauge"),
        }
        if t.fmt != "time_series":
            target["format"] = t.fmt
        targets.append(target)
    options: dict[str, Any] = {"legend": LEGEND, "tooltip": TOOLTIP}
    custom: dict[str, Any] = {}
    if panel.kind == "timeseries":
        custom = {"fillOpacity": 10, "lineWidth": 1, "showPoints": "never", "spanNulls": True}
        if "stacking" in panel.options:
            custom["stacking"] = {"mode": panel.options["stacking"], "group": "A"}
    elif panel.kind in ("stat", "bargauge"):
        options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}
        options.update(STAT_OPTIONS if panel.kind == "stat" else BARGAUGE_OPTIONS)
        options.update({k: v for k, v in panel.options.items() if k != "stacking"})
    elif panel.kind == "heatmap":
        options = {"calculate": False, "yAxis": {"unit": "s"}, "cellGap": 1, **HEATMAP_OPTIONS}
    return {
        "id": pid,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DS,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {
            "defaults": {"unit": panel.unit, "custom": custom, **panel.field_defaults},
            "overrides": [],
        },
        "options": options,
        "targets": targets,
    }


def dashboard(uid: str, title: str, description: str, items: list[Panel | Row]) -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    x = y = 0
    row_height = 0
    for pid, item in enumerate(items, start=1):
        if isinstance(item, Row):
            y += row_height
            x, row_height = 0, 0
            panels.append(
                {
                    "id": pid,
                    "type": "row",
                    "title": item.title,
                    "collapsed": False,
                    "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                    "panels": [],
                }
            )
            y += 1
            continue
        if x + item.width > 24:
            x, y = 0, y + row_height
            row_height = 0
        panels.append(_panel_json(item, pid, x, y))
        x += item.width
        row_height = max(row_height, item.height)
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["hookline"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "hide": 0,
                    "refresh": 1,
                    "regex": "",
                    "options": [],
                }
            ]
        },
        "annotations": {"list": []},
        "links": [
            {
                "title": "hookline dashboards",
                "type": "dashboards",
                "tags": ["hookline"],
                "asDropdown": False,
                "icon": "external link",
                "tooltip": "",
                "targetBlank": False,
                "includeVars": False,
                "keepTime": False,
            }
        ],
        "panels": panels,
    }


DASHBOARDS: dict[str, dict[str, Any]] = {
    "overview.json": dashboard(
        "hookline-overview",
        "hookline / Overview",
        "Events in, deliveries out, success rate, latency, retries, dead letters, in-flight work and lag.",
        overview(),
    ),
    "delivery.json": dashboard(
        "hookline-delivery",
        "hookline / Delivery detail",
        "Status and error classes, blocked addresses, disabled webhooks and attempt distributions.",
        delivery(),
    ),
}


def render(dash: dict[str, Any]) -> str:
    return json.dumps(dash, indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    for name, dash in DASHBOARDS.items():
        (HERE / name).write_text(render(dash))


if __name__ == "__main__":
    main()
