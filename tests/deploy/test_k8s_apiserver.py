"""The manifests meet a real Kubernetes API server (kube-apiserver v1.34.2 on etcd, loopback only): both
overlays pass a server-side dry run, the dev overlay is applied and reads back as written, and the
server refuses broken manifests. The steps are deploy/k8s/check/run.py's (`make k8s-check`).

The binaries take 4-6 minutes to build cold, so this test never builds them: `make k8s-tools` (and
.ci/run) does. Without them, or without etcd, it skips locally and fails in CI."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from tests.deploy.conftest import DEPLOY, load_script
from tests.support import skip_or_fail

pytestmark = pytest.mark.slow

Doc = dict[str, Any]


@pytest.fixture(scope="module")
def check() -> ModuleType:
    return load_script(DEPLOY / "k8s" / "check" / "run.py")


@pytest.fixture(scope="module")
def server(check: ModuleType) -> Iterator[Any]:
    try:
        tools, crds = check.prepare(build=False, progress=lambda _line: None)
        etcd = check.find_etcd()
    except check.Missing as exc:
        skip_or_fail(f"{exc}; .ci/run prepares it")
    with check.ApiServer(tools, etcd) as server:
        check.install_crds(server, crds)
        yield server


@pytest.fixture(scope="module")
def rendered(check: ModuleType, kustomize: str) -> dict[str, list[Doc]]:
    return {overlay: check.render(kustomize, overlay) for overlay in check.OVERLAYS}


def test_a_namespace_that_does_not_exist_is_refused(check, server, rendered):
    """Why the README has the operator create the namespace first: the overlays do not create it."""
    docs = copy.deepcopy(rendered["dev"])
    for d in docs:
        d["metadata"]["namespace"] = "hookline-absent"
    with pytest.raises(check.CheckFailed, match='namespaces "hookline-absent" not found'):
        check.dry_run(server, docs)


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_overlay_passes_a_server_side_dry_run(check, server, rendered, overlay):
    docs = rendered[overlay]
    namespaces = {d["metadata"].get("namespace") for d in docs}
    assert len(namespaces) == 1 and None not in namespaces
    check.ensure_namespace(server, *namespaces)
    returned = {check.key(d): d for d in check.dry_run(server, docs)}
    assert set(returned) == {check.key(d) for d in docs}
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "KafkaTopic", "PodMonitor", "PrometheusRule"} <= kinds
    assert ("ScaledObject" in kinds) == (overlay == "prod")
    # What the dry run returns is what the server would store: the fields we set, as we set them.
    assert [p for d in docs for p in check.differences(d, returned[check.key(d)])] == []


def test_dev_overlay_applies_and_reads_back_as_written(check, server, rendered):
    docs = rendered["dev"]
    check.ensure_namespace(server, "hookline-dev")
    assert set(check.apply(server, docs).values()) == {"created"}
    read = {check.key(d): d for d in check.read_back(server, docs)}
    assert set(read) == {check.key(d) for d in docs}
    assert [
        f"{d['kind']}/{d['metadata']['name']}{p}"
        for d in docs
        for p in check.differences(d, read[check.key(d)])
    ] == []
    # kubectl says "configured" for every PodDisruptionBudget here; the server stores nothing new.
    assert check.reapply_changes(server, docs) == []


def test_the_api_server_refuses_broken_manifests(check, server, rendered):
    check.ensure_namespace(server, "hookline-dev")
    cases = check.broken_manifests(rendered["dev"])
    assert len(cases) == 4
    for what, doc, reason in cases:
        assert reason in check.refusal(server, doc), what


def test_whole_check_as_make_runs_it(check, server, kustomize):
    assert check.check(server, kustomize, progress=lambda _line: None) == []


def test_differences_finds_what_the_server_changed(check):
    wrote = {"spec": {"replicas": 1, "ports": [{"name": "http", "port": 80}], "cpu": "1", "empty": {}}}
    assert check.differences(wrote, copy.deepcopy(wrote)) == []
    added = {**copy.deepcopy(wrote), "status": {"x": 1}}  # fields the server adds are not differences
    assert check.differences(wrote, added) == []
    read: Doc = {
        "spec": {"replicas": "1", "ports": [{"name": "http", "port": 80}, {"port": 81}], "cpu": "1000m"}
    }
    assert check.differences(wrote, read) == [
        ".spec.replicas: wrote 1, read '1'",
        ".spec.ports: wrote 1 items, read back [{'name': 'http', 'port': 80}, {'port': 81}]",
        ".spec.cpu: wrote '1', read '1000m'",
        ".spec.empty: wrote an object, read back absent",
    ]
