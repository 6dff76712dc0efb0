"""Dashboards and alert rules use only metric names (and label values) the metrics module defines."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from hookline import metrics
from hookline.metrics import metric_names
from tests.deploy.conftest import DEPLOY, load_script
from tests.deploy.promql import Query, alert_queries, dashboard_queries, label_matchers
from tests.deploy.promql import metric_names as names_in

#: Series Prometheus makes itself for every target; not ours to define.
PROMETHEUS_NAMES = {"up"}

#: Labels whose values are bounded enums in hookline.metrics.
BOUNDED = {
    "outcome": set(metrics.OUTCOMES),
    "status_class": set(metrics.STATUS_CLASSES),
    "error_class": set(metrics.ERROR_CLASSES),
    "event_type": set(metrics.EVENT_TYPES),
    "role": {"api", "router", "deliver", "logsink"},
}

DASHBOARDS = sorted((DEPLOY / "grafana").glob("*.json"))
RULES = DEPLOY / "prometheus" / "rules.yml"


def all_queries() -> list[Query]:
    queries = [q for path in DASHBOARDS for q in dashboard_queries(path)]
    return queries + alert_queries(RULES)


def unknown_names(queries: list[Query], known: set[str]) -> dict[str, set[str]]:
    bad = {}
    for q in queries:
        missing = names_in(q.expr) - known - PROMETHEUS_NAMES
        if missing:
            bad[q.source] = missing
    return bad


def bad_label_values(queries: list[Query]) -> dict[str, list[str]]:
    bad: dict[str, list[str]] = {}
    for q in queries:
        for label, op, value in label_matchers(q.expr):
            allowed = BOUNDED.get(label)
            if allowed is None:
                continue
            values = value.split("|") if op in ("=~", "!~") else [value]
            wrong = [v for v in values if v not in allowed]
            if wrong:
                bad.setdefault(q.source, []).extend(f"{label}{op}{v!r}" for v in wrong)
    return bad


def test_there_are_dashboards_and_rules_to_check():
    assert {p.name for p in DASHBOARDS} >= {"overview.json", "delivery.json"}
    assert len(all_queries()) >= 40


def test_every_metric_name_in_dashboards_and_rules_exists_in_the_metrics_module():
    assert unknown_names(all_queries(), metric_names()) == {}


def test_every_bounded_label_value_in_dashboards_and_rules_is_one_the_metrics_module_lists():
    assert bad_label_values(all_queries()) == {}


def test_the_name_check_fails_on_a_name_the_module_does_not_define(tmp_path: Path):
    dash = json.loads(DASHBOARDS[0].read_text())
    dash["panels"].append(
        {
            "title": "typo",
            "targets": [
                {"refId": "A", "expr": 'sum(rate(hookline_delivery_total{outcome="delivered"}[5m]))'},
                {
                    "refId": "B",
                    "expr": "histogram_quantile(0.9, sum by (le) (rate(hookline_attempt_secs_bucket[1m])))",
                },
            ],
        }
    )
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(dash))
    bad = unknown_names(dashboard_queries(broken), metric_names())
    assert bad == {
        "broken.json: typo [A]": {"hookline_delivery_total"},
        "broken.json: typo [B]": {"hookline_attempt_secs_bucket"},
    }


def test_the_label_check_fails_on_a_value_outside_the_enum():
    queries = [
        Query("x", 'sum(rate(hookline_deliveries_total{outcome=~"delivered|sent",error_class="boom"}[5m]))')
    ]
    assert bad_label_values(queries) == {"x": ["outcome=~'sent'", "error_class='boom'"]}


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        ('up{job=~"hookline-.+"} == 0', {"up"}),
        (
            "sum by (role) (hookline_consumer_lag_records) > 1000 and sum by (role) (deriv(x_total[1m])) > 0",
            {"hookline_consumer_lag_records", "x_total"},
        ),
        ("histogram_quantile(0.99, sum by (le, route) (rate(a_bucket[$__rate_interval])))", {"a_bucket"}),
        (
            'sum(rate(a_total{outcome="delivered"}[5m])) / ignoring(outcome) group_left sum(b)',
            {"a_total", "b"},
        ),
        ('{__name__="hookline_config_webhooks"} offset 5m', {"hookline_config_webhooks"}),
        ('label_replace(up, "role", "$1", "job", "hookline-(.*)")', {"up"}),
        ("rate(a_total[5m:1m]) * 1e3 + inf", {"a_total"}),
        ("vector(1)", set()),
    ],
)
def test_names_are_read_from_promql(expr: str, names: set[str]):
    assert names_in(expr) == names


def test_generated_dashboards_are_up_to_date():
    build = load_script(DEPLOY / "grafana" / "build.py")
    for name, dash in build.DASHBOARDS.items():
        assert (DEPLOY / "grafana" / name).read_text() == build.render(dash), (
            f"deploy/grafana/{name} is stale: run `.venv/bin/python deploy/grafana/build.py`"
        )


def test_dashboards_are_valid_grafana_json_with_unique_ids_and_a_datasource_variable():
    uids = set()
    for path in DASHBOARDS:
        dash = json.loads(path.read_text())
        assert dash["uid"] not in uids
        uids.add(dash["uid"])
        assert [v["name"] for v in dash["templating"]["list"]] == ["datasource"]
        ids = [p["id"] for p in dash["panels"]]
        assert len(ids) == len(set(ids)), path.name
        for panel in dash["panels"]:
            g = panel["gridPos"]
            assert g["x"] >= 0 and g["x"] + g["w"] <= 24, (path.name, panel["title"])
            for target in panel.get("targets", []):
                assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
                assert not re.search(r"\$(?!__rate_interval|__range)\w+", target["expr"]), target["expr"]
