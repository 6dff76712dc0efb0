"""Just enough PromQL reading for the tests: metric names and label matchers of an expression,
and the queries of our dashboards and alert rules."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

__all__ = ["Query", "alert_queries", "dashboard_queries", "label_matchers", "metric_names", "substitute"]

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"(?<![\w:.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*\()")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right"}
    | {"inf", "nan", "atan2"}
)


def metric_names(expr: str) -> set[str]:
    """Every metric name ``expr`` selects (bare names and ``{__name__="..."}``)."""
    names = {value for label, op, value in label_matchers(expr) if label == "__name__" and op == "="}
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = re.sub(r"\b(?:group_left|group_right)\b", " ", text)
    for m in _IDENT.finditer(text):
        if m.group(1).lower() not in _KEYWORDS:
            names.add(m.group(1))
    return names


def label_matchers(expr: str) -> list[tuple[str, str, str]]:
    """``(label, operator, value)`` of every matcher inside ``{...}`` in ``expr``."""
    found = []
    for block in _MATCHERS.findall(expr):
        found.extend(_MATCHER.findall(block))
    return found


def substitute(expr: str, rate_interval: str = "1m", range_: str = "5m") -> str:
    """Replace Grafana's macros so Prometheus itself can run the query."""
    return (
        expr.replace("$__rate_interval", rate_interval)
        .replace("${__range}", range_)
        .replace("$__range", range_)
        .replace("$__interval", rate_interval)
    )


@dataclass(frozen=True)
class Query:
    source: str  # "overview.json: Events in [A]" or "rules.yml: HooklineRoleDown"
    expr: str


def dashboard_queries(path: Path) -> list[Query]:
    dash = json.loads(path.read_text())
    out = []
    panels = list(dash["panels"])
    while panels:
        panel = panels.pop(0)
        panels.extend(panel.get("panels", []))
        for target in panel.get("targets", []):
            out.append(Query(f"{path.name}: {panel['title']} [{target['refId']}]", target["expr"]))
    return out


def alert_queries(path: Path) -> list[Query]:
    doc = yaml.safe_load(path.read_text())
    out = []
    for group in doc["groups"]:
        for rule in group["rules"]:
            name = rule.get("alert") or rule.get("record")
            out.append(Query(f"{path.name}: {name}", rule["expr"].strip()))
    return out
