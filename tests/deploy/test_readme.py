"""The README's Kubernetes section and metrics table say what the code and manifests do."""

from __future__ import annotations

import dataclasses
import re

from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from hookline import metrics
from hookline.metrics import metric_names
from tests.deploy.conftest import DEPLOY, REPO

README = (REPO / "README.md").read_text()


def families(names: set[str]) -> set[str]:
    """Metric families of exported sample names: histograms without their _bucket/_sum/_count."""
    hist = {n.removesuffix("_bucket") for n in names if n.endswith("_bucket")}
    return hist | {
        n for n in names if not any(n == f"{h}{s}" for h in hist for s in ("_bucket", "_sum", "_count"))
    }


def defined() -> dict[str, tuple[str, tuple[str, ...]]]:
    """family -> (type, label names) for every metric of every metrics set in hookline.metrics."""
    out: dict[str, tuple[str, tuple[str, ...]]] = {}
    for obj in vars(metrics).values():
        if not (isinstance(obj, type) and dataclasses.is_dataclass(obj)):
            continue
        if "registry" not in {f.name for f in dataclasses.fields(obj)}:
            continue
        for m in vars(obj(CollectorRegistry())).values():
            if isinstance(m, MetricWrapperBase):
                name = m._name + ("_total" if m._type == "counter" else "")
                out[name] = (m._type, tuple(m._labelnames))
    return out


def table_rows() -> dict[str, tuple[str, tuple[str, ...]]]:
    m = re.search(r"<!-- metrics-table.*?-->\n(.*?)<!-- /metrics-table -->", README, re.S)
    assert m, "README lacks the metrics table markers"
    rows = {}
    for line in m.group(1).splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        name, kind, labels = cells[0].strip("`"), cells[1], cells[2]
        assert name not in rows, f"{name} listed twice"
        rows[name] = (kind, tuple(re.findall(r"`(\w+)`", labels)))
    return rows


def test_metrics_table_lists_every_family_of_metric_names():
    assert set(table_rows()) == families(metric_names())


def test_metrics_table_types_and_labels_match_the_metrics_module():
    assert table_rows() == defined()


def test_families_drop_only_histogram_suffixes():
    names = {"a_total", "h_bucket", "h_sum", "h_count", "g", "c_count_total"}
    assert families(names) == {"a_total", "h", "g", "c_count_total"}


def test_kubernetes_section_names_the_overlays_secrets_and_scaling():
    start = README.index("## Deploying on Kubernetes")
    section = README[start : README.index("\n## ", start + 1)]
    for overlay in (DEPLOY / "k8s" / "overlays").iterdir():
        assert f"overlays/{overlay.name}" in section
    for component in (DEPLOY / "k8s" / "components").iterdir():
        assert f"components/{component.name}" in section
    assert re.search(r"kubectl (-n \S+ )?create secret generic hookline-secrets", section)
    refs = set(re.findall(r"key: ([a-z-]+)", (DEPLOY / "k8s" / "base" / "api.yaml").read_text()))
    for key in refs | {"secret-key", "api-keys", "database-url"}:
        assert f"--from-literal={key}=" in section, key
    assert "kubectl apply -k" in section
    assert "Scaling" in section and "Dashboards" in section
