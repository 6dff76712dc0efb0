"""The dashboards pass Grafana's published dashboard schema (grafana-foundation-sdk, decoded strictly with
each panel plugin's own option types) and our dashboard rules: deploy/grafana/check (`make grafana-check`).

The checker is built on first use (about 40 s cold; .ci/run builds it before the tests). Without Go
this skips locally and fails in CI. Every kind of problem is shown failing on a broken copy.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.deploy.conftest import DEPLOY, load_script
from tests.support import skip_or_fail

Dash = dict[str, Any]


@pytest.fixture(scope="module")
def run() -> ModuleType:
    module = load_script(DEPLOY / "grafana" / "check" / "run.py")
    try:
        module.checker()
    except module.Missing as exc:
        skip_or_fail(f"{exc}; .ci/run builds the dashboard checker")
    return module


def test_both_dashboards_pass(run: ModuleType):
    names = {p.name for p in run.DASHBOARDS}
    assert names >= {"overview.json", "delivery.json"}
    result = run.check(run.DASHBOARDS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(result.stdout.splitlines()) == sorted(
        f"{p}: ok ({len(json.loads(p.read_text())['panels'])} panels)" for p in run.DASHBOARDS
    )


def panel(dash: Dash, title: str) -> dict[str, Any]:
    return next(p for p in dash["panels"] if p.get("title") == title)


def rename(d: dict[str, Any], old: str, new: str) -> None:
    d[new] = d.pop(old)


EVENTS = "Events in"  # a timeseries panel of overview.json
AT = f'panel "{EVENTS}" (panels[1])'
HARD_UID = {"type": "prometheus", "uid": "P1809F7CD0C75ACF3"}

#: (what is broken, how, a line the checker must print for it)
BROKEN: list[tuple[str, Callable[[Dash], None], str]] = [
    (
        "unknown panel field",
        lambda d: rename(panel(d, EVENTS), "fieldConfig", "fieldConfg"),
        f"{AT}: Panel: unexpected field 'fieldConfg'",
    ),
    (
        "gridPos.w a string",
        lambda d: panel(d, EVENTS)["gridPos"].update(w="8"),
        f"{AT}: gridPos.w: json: cannot unmarshal string into Go value of type uint32",
    ),
    (
        "unknown timeseries option",
        lambda d: panel(d, EVENTS)["options"].update(legned={"showLegend": False}),
        f"{AT}: options.Options: unexpected field 'legned'",
    ),
    (
        "hard-coded panel datasource",
        lambda d: panel(d, EVENTS).update(datasource=HARD_UID),
        f"{AT}: datasource is not ${{datasource}} of type prometheus",
    ),
    (
        "hard-coded target datasource",
        lambda d: panel(d, EVENTS)["targets"][0].update(datasource=HARD_UID),
        f"{AT}: targets[0]: datasource is not ${{datasource}} of type prometheus",
    ),
    (
        "stat option of the wrong type",
        lambda d: panel(d, "Success rate")["options"].update(wideLayout="yes"),
        'panel "Success rate" (panels[4]): options.wideLayout: json: cannot unmarshal string into Go value '
        "of type bool",
    ),
    (
        "unknown timeseries field config",
        lambda d: panel(d, EVENTS)["fieldConfig"]["defaults"]["custom"].update(fillOpacty=10),
        f"{AT}: fieldConfig.defaults.custom.GraphFieldConfig: unexpected field 'fillOpacty'",
    ),
    (
        "unknown field default",
        lambda d: panel(d, EVENTS)["fieldConfig"]["defaults"].update(unitt="s"),
        f"{AT}: fieldConfig.defaults.FieldConfig: unexpected field 'unitt'",
    ),
    (
        "unknown Prometheus query field",
        lambda d: panel(d, EVENTS)["targets"][0].update(exemplars=True),
        f"{AT}: targets[0].Dataquery: unexpected field 'exemplars'",
    ),
    (
        "schema constraint",
        lambda d: panel(d, EVENTS)["gridPos"].update(h=0),
        f"{AT}: gridPos.h: must be > 0",
    ),
    (
        "wider than the grid",
        lambda d: panel(d, EVENTS)["gridPos"].update(x=20),
        f"{AT}: gridPos x 20 + w 8 is wider than 24 columns",
    ),
    (
        "duplicate panel id",
        lambda d: panel(d, "Tasks routed and unmatched events").update(id=panel(d, EVENTS)["id"]),
        f'panel "Tasks routed and unmatched events" (panels[2]): id 2 is also the id of {AT}',
    ),
    (
        "no description",
        lambda d: panel(d, EVENTS).pop("description"),
        f"{AT}: needs a title and a description",
    ),
    (
        "no datasource variable",
        lambda d: d["templating"]["list"][0].update(query="loki"),
        'templating: no variable "datasource" of type datasource with query "prometheus"',
    ),
    (
        "counter outside rate",
        lambda d: panel(d, EVENTS)["targets"][0].update(
            expr='sum(hookline_router_events_consumed_total{x="a_total"}) + sum by (b_total) '
            "(rate(c_total[5m])) + irate(d_total[$__rate_interval]) + increase (e_total[1h])"
        ),
        f"{AT}: targets[0]: counter hookline_router_events_consumed_total outside rate(), irate() or "
        "increase()",
    ),
]


@pytest.mark.parametrize(("what", "breaks", "expected"), BROKEN, ids=[b[0] for b in BROKEN])
def test_the_checker_refuses_a_broken_dashboard(
    run: ModuleType, tmp_path: Path, what: str, breaks: Callable[[Dash], None], expected: str
):
    good = json.loads((DEPLOY / "grafana" / "overview.json").read_text())
    dash = copy.deepcopy(good)
    breaks(dash)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(dash))
    result = run.check([broken])
    assert result.returncode == 1, (what, result.stdout, result.stderr)
    # After a wrong type the rules cannot run either, and the checker says so in one more line.
    problems = [line for line in result.stdout.splitlines() if ": cannot check further: " not in line]
    assert problems == [f"{broken}: {expected}"]


def test_a_heatmap_is_checked_against_its_own_options(run: ModuleType, tmp_path: Path):
    """delivery.json's heatmaps: an option of another panel type is unknown to the heatmap plugin."""
    dash = json.loads((DEPLOY / "grafana" / "delivery.json").read_text())
    heatmap = next(p for p in dash["panels"] if p["type"] == "heatmap")
    heatmap["options"]["reduceOptions"] = {"calcs": ["lastNotNull"]}
    broken = tmp_path / "delivery.json"
    broken.write_text(json.dumps(dash))
    result = run.check([broken])
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f'{broken}: panel "{heatmap["title"]}" (panels[{dash["panels"].index(heatmap)}]): '
        "options.Options: unexpected field 'reduceOptions'"
    ]
