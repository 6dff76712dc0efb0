"""The kustomize tree under deploy/k8s: every overlay and component combination renders, every
standard object validates offline against the Kubernetes schema, custom resources carry their
required fields, and the Deployments are what issue 6 asks for (probes on the role's port,
security context, resources, Secrets referenced and never inlined, a drain-safe grace period)."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from hookline.settings import Settings, load_settings
from hookline.topics import CONFIG, DELIVERIES, all_topics
from tests.deploy.conftest import DEPLOY, load_script

K8S = DEPLOY / "k8s"
COMPONENTS = ("keda", "strimzi", "podmonitors", "grafana-dashboards")
OVERLAYS = {"dev": {"strimzi", "podmonitors", "grafana-dashboards"}, "prod": set(COMPONENTS)}
ROLES = ("api", "router", "deliver", "logsink", "health")
#: Kubernetes versions the standard objects are validated against: the oldest we claim, the newest bundled.
K8S_VERSIONS = ("1.28.0", kubernetes_validate.latest_version())
#: Settings that are secrets: only ever from a Secret, never a ConfigMap or a literal value.
SECRET_SETTINGS = {
    f"HOOKLINE_{name.upper()}" for name, f in Settings.__dataclass_fields__.items() if f.type == "Secret"
}
SECRET_KEYS = {
    "HOOKLINE_SECRET_KEY": "secret-key",
    "HOOKLINE_API_KEYS": "api-keys",
    "HOOKLINE_DATABASE_URL": "database-url",
}
#: Which role needs which secret (least privilege: the router needs none).
ROLE_SECRETS = {
    "api": {"HOOKLINE_API_KEYS", "HOOKLINE_SECRET_KEY", "HOOKLINE_DATABASE_URL"},
    "router": set(),
    "deliver": {"HOOKLINE_SECRET_KEY"},
    "logsink": {"HOOKLINE_DATABASE_URL"},
    "health": set(),
}
STANDARD_GROUPS = {"v1", "apps/v1", "policy/v1", "autoscaling/v2", "networking.k8s.io/v1", "batch/v1"}


def role_port(role: str, s: Settings) -> int:
    return s.api_port if role == "api" else getattr(s, f"{role}_metrics_port")


# -- building ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Combo:
    base: str  # "base", "overlays/dev", "overlays/prod"
    extra: tuple[str, ...]  # components added on top

    @property
    def components(self) -> set[str]:
        return set(self.extra) | OVERLAYS.get(self.base.split("/")[-1], set())

    def __str__(self) -> str:
        return "+".join([self.base, *self.extra])


def combos() -> list[Combo]:
    out = []
    for base in ("base", "overlays/dev", "overlays/prod"):
        missing = [c for c in COMPONENTS if c not in OVERLAYS.get(base.split("/")[-1], set())]
        for n in range(len(missing) + 1):
            out.extend(Combo(base, extra) for extra in itertools.combinations(missing, n))
    return out


COMBOS = combos()


@cache
def _build(kustomize: str, combo: Combo, workdir: Path) -> tuple[dict[str, Any], ...]:
    if combo.extra:
        root = workdir / re.sub(r"[^a-z0-9]+", "-", str(combo))
        root.mkdir(parents=True, exist_ok=True)
        rel = Path("../" * len(root.relative_to("/").parts)) / K8S.relative_to("/")
        (root / "kustomization.yaml").write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "kustomize.config.k8s.io/v1beta1",
                    "kind": "Kustomization",
                    "resources": [str(rel / combo.base)],
                    "components": [str(rel / "components" / c) for c in combo.extra],
                }
            )
        )
    else:
        root = K8S / combo.base
    out = subprocess.run([kustomize, "build", str(root)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"kustomize build {combo} failed:\n{out.stderr}"
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kustomize")


@pytest.fixture(scope="module")
def build(kustomize: str, workdir: Path):
    def _b(combo: Combo) -> tuple[dict[str, Any], ...]:
        return _build(kustomize, combo, workdir)

    return _b


def of_kind(docs: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def by_name(docs: Iterable[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in of_kind(docs, kind)}


def config_data(docs: Iterable[dict[str, Any]]) -> dict[str, str]:
    (cm,) = [d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"].startswith("hookline-config")]
    return dict(cm["data"])


# -- checks (plain functions, so the negative tests can run them on broken documents) -------------


def schema_errors(doc: dict[str, Any]) -> list[str]:
    errors = []
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']} (k8s {version}): {exc.message}")
    return errors


def custom_resource_errors(doc: dict[str, Any], deployments: dict[str, dict[str, Any]]) -> list[str]:
    """Required fields of the custom resources we ship (their CRDs are not bundled for offline checks)."""
    kind, name, spec = doc["kind"], doc["metadata"]["name"], doc.get("spec") or {}
    errors = []

    def need(cond: bool, what: str) -> None:
        if not cond:
            errors.append(f"{kind}/{name}: {what}")

    if kind == "ScaledObject":
        need(doc["apiVersion"] == "keda.sh/v1alpha1", "apiVersion keda.sh/v1alpha1")
        target = spec.get("scaleTargetRef", {}).get("name")
        need(target in deployments, f"scaleTargetRef.name {target!r} is a Deployment of the build")
        need(isinstance(spec.get("triggers"), list) and len(spec["triggers"]) > 0, "at least one trigger")
        for t in spec.get("triggers", []):
            need(bool(t.get("type")) and isinstance(t.get("metadata"), dict), "trigger type and metadata")
            need(
                all(isinstance(v, str) for v in t.get("metadata", {}).values()),
                "trigger metadata values are strings",
            )
        lo, hi = spec.get("minReplicaCount"), spec.get("maxReplicaCount")
        need(isinstance(lo, int) and lo >= 1, "minReplicaCount >= 1 (a worker always runs)")
        partitions = {t.name: t.partitions for t in all_topics(load_settings({}))}[DELIVERIES]
        need(
            isinstance(hi, int) and lo is not None and lo <= hi <= partitions,
            f"maxReplicaCount <= {partitions} partitions of {DELIVERIES}",
        )
    elif kind == "KafkaTopic":
        need(doc["apiVersion"] == "kafka.strimzi.io/v1beta2", "apiVersion kafka.strimzi.io/v1beta2")
        need(bool(doc["metadata"].get("labels", {}).get("strimzi.io/cluster")), "label strimzi.io/cluster")
        need(isinstance(spec.get("partitions"), int) and spec["partitions"] >= 1, "spec.partitions >= 1")
        need(isinstance(spec.get("replicas"), int) and spec["replicas"] >= 1, "spec.replicas >= 1")
        need(all(isinstance(v, str) for v in spec.get("config", {}).values()), "config values are strings")
        need(re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) is not None, "DNS-1123 name")
    elif kind == "PodMonitor":
        need(doc["apiVersion"] == "monitoring.coreos.com/v1", "apiVersion monitoring.coreos.com/v1")
        selector = spec.get("selector", {}).get("matchLabels") or {}
        need(bool(selector), "spec.selector.matchLabels")
        endpoints = spec.get("podMetricsEndpoints") or []
        need(len(endpoints) > 0, "spec.podMetricsEndpoints")
        pods = [
            d
            for d in deployments.values()
            if selector and selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        need(len(pods) == 1, "selects the pods of exactly one Deployment")
        ports = {
            p["name"] for d in pods for c in d["spec"]["template"]["spec"]["containers"] for p in c["ports"]
        }
        for ep in endpoints:
            need(ep.get("port") in ports, f"endpoint port {ep.get('port')!r} is a named container port")
            need(ep.get("path", "/metrics") == "/metrics", "path /metrics")
    elif kind == "PrometheusRule":
        need(doc["apiVersion"] == "monitoring.coreos.com/v1", "apiVersion monitoring.coreos.com/v1")
        groups = spec.get("groups") or []
        need(len(groups) > 0, "spec.groups")
        for g in groups:
            need(bool(g.get("name")) and len(g.get("rules") or []) > 0, "every group has a name and rules")
            for r in g.get("rules") or []:
                need(
                    bool(r.get("alert") or r.get("record")) and bool(r.get("expr")),
                    "every rule has alert and expr",
                )
    else:
        errors.append(f"{kind}/{name}: unexpected custom resource")
    return errors


def inlined_secrets(docs: Iterable[dict[str, Any]]) -> list[str]:
    """Secret material in the rendered manifests: Secret objects, literal values of secret settings,
    secret settings in ConfigMaps, and anything that looks like a key or a password in a URL."""
    found = []
    looks_secret = re.compile(r"whsec_|://[^/\s:@]+:[^/\s@]+@|-----BEGIN|^[A-Za-z0-9_-]{43}=?$")
    for doc in docs:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] == "Secret":
            found.append(f"{name}: Secret objects do not belong in the manifests")
        if doc["kind"] == "ConfigMap":
            for key, value in (doc.get("data") or {}).items():
                if key in SECRET_SETTINGS:
                    found.append(f"{name}: {key} in a ConfigMap")
                if looks_secret.search(value) and not key.endswith(".json"):
                    found.append(f"{name}: {key} looks like a secret")
        pod = doc.get("spec", {}).get("template", {}).get("spec") if doc["kind"] == "Deployment" else None
        for c in (pod or {}).get("containers", []):
            for env in c.get("env", []):
                if env["name"] in SECRET_SETTINGS and "valueFrom" not in env:
                    found.append(f"{name}: {env['name']} has a literal value")
                if env["name"] in SECRET_SETTINGS and "secretKeyRef" not in env.get("valueFrom", {}):
                    found.append(f"{name}: {env['name']} is not from a Secret")
                if isinstance(env.get("value"), str) and looks_secret.search(env["value"]):
                    found.append(f"{name}: {env['name']} looks like a secret")
    return found


def deployment_errors(doc: dict[str, Any], config: dict[str, str]) -> list[str]:
    name = doc["metadata"]["name"]
    role = name.removeprefix("hookline-")
    errors = []

    def need(cond: bool, what: str) -> None:
        if not cond:
            errors.append(f"{name}: {what}")

    s = load_settings(config)
    pod = doc["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    need(c["args"] == [role], f"args [{role!r}]")
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    port_name = "http" if role == "api" else "metrics"
    need(ports.get(port_name) == role_port(role, s), f"container port {port_name} = {role_port(role, s)}")
    for probe, path in (
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", "/healthz"),
    ):
        get = (c.get(probe) or {}).get("httpGet") or {}
        need(
            get.get("path") == path and get.get("port") in (port_name, role_port(role, s)),
            f"{probe} GET {path} on the role's port",
        )
    res = c.get("resources") or {}
    for kind in ("requests", "limits"):
        need({"cpu", "memory"} <= set(res.get(kind) or {}), f"resources.{kind} for cpu and memory")
    psc, csc = pod.get("securityContext") or {}, c.get("securityContext") or {}
    need(psc.get("runAsNonRoot") is True or csc.get("runAsNonRoot") is True, "runAsNonRoot")
    need((psc.get("runAsUser") or csc.get("runAsUser") or 0) != 0, "a non-zero runAsUser")
    need(
        (psc.get("seccompProfile") or csc.get("seccompProfile") or {}).get("type") == "RuntimeDefault",
        "seccompProfile RuntimeDefault",
    )
    need(csc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem")
    need(csc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation false")
    need(
        csc.get("capabilities", {}).get("drop") == ["ALL"] and not csc["capabilities"].get("add"), "drop ALL"
    )
    need(pod.get("automountServiceAccountToken") is False, "no service account token")
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
    empty = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
    need(mounts.get(str(s.home)) in empty, f"an emptyDir at HOOKLINE_HOME ({s.home})")
    need(mounts.get("/tmp") in empty, "an emptyDir at /tmp")
    grace = pod.get("terminationGracePeriodSeconds", 30)
    need(
        grace >= s.deliver_drain_timeout + 20,
        f"terminationGracePeriodSeconds ({grace}) > drain deadline + 20 s",
    )
    refs = [e["configMapRef"]["name"] for e in c.get("envFrom", []) if "configMapRef" in e]
    need(any(r.startswith("hookline-config") for r in refs), "envFrom the hookline ConfigMap")
    secrets = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in c.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    need(set(secrets) == ROLE_SECRETS.get(role, set()), f"secrets {sorted(ROLE_SECRETS.get(role, set()))}")
    for var, ref in secrets.items():
        need(
            ref == {"name": "hookline-secrets", "key": SECRET_KEYS[var]},
            f"{var} from hookline-secrets/{SECRET_KEYS[var]}",
        )
    return errors


# -- tests ---------------------------------------------------------------------------------------


def test_the_combinations_cover_every_overlay_and_component():
    assert {c.base for c in COMBOS} == {"base", "overlays/dev", "overlays/prod"}
    assert Combo("base", COMPONENTS) in COMBOS and Combo("base", ()) in COMBOS
    assert {d.name for d in (K8S / "components").iterdir()} == set(COMPONENTS)
    assert {d.name for d in (K8S / "overlays").iterdir()} == set(OVERLAYS)


@pytest.mark.parametrize("combo", COMBOS, ids=str)
def test_build_renders_and_validates(build, combo: Combo):
    docs = build(combo)
    deployments = by_name(docs, "Deployment")
    assert set(deployments) == {f"hookline-{r}" for r in ROLES}
    errors = []
    kinds = set()
    for doc in docs:
        kinds.add(doc["kind"])
        if doc["apiVersion"] in STANDARD_GROUPS:
            errors += schema_errors(doc)
        else:
            errors += custom_resource_errors(doc, deployments)
    config = config_data(docs)
    for doc in deployments.values():
        errors += deployment_errors(doc, config)
    errors += inlined_secrets(docs)
    assert errors == []
    assert kinds >= {"ServiceAccount", "ConfigMap", "Service", "Deployment", "PodDisruptionBudget"}
    assert ("ScaledObject" in kinds) == ("keda" in combo.components)
    assert ("KafkaTopic" in kinds) == ("strimzi" in combo.components)
    assert ("PodMonitor" in kinds) == ("podmonitors" in combo.components)
    assert ("PrometheusRule" in kinds) == ("podmonitors" in combo.components)
    dashboards = [
        d for d in of_kind(docs, "ConfigMap") if d["metadata"].get("labels", {}).get("grafana_dashboard")
    ]
    assert bool(dashboards) == ("grafana-dashboards" in combo.components)


def test_config_map_holds_valid_non_secret_settings_and_listens_on_all_interfaces(build):
    config = config_data(build(Combo("base", ())))
    known = {var for var, _default, _doc in Settings.describe()}
    assert set(config) <= known, f"unknown settings {set(config) - known}"
    assert not set(config) & SECRET_SETTINGS
    s = load_settings(config)  # every value parses
    assert s.metrics_host == "0.0.0.0" and s.api_host == "0.0.0.0"
    assert s.log_format == "json"
    assert s.deliver_drain_timeout == 20


def test_every_deployment_has_a_pdb_and_the_api_a_service(build):
    docs = build(Combo("base", ()))
    deployments = by_name(docs, "Deployment")
    pdbs = of_kind(docs, "PodDisruptionBudget")
    for name, dep in deployments.items():
        labels = dep["spec"]["template"]["metadata"]["labels"]
        matching = [p for p in pdbs if p["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert len(matching) == 1, name
        assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (svc,) = of_kind(docs, "Service")
    assert (
        svc["spec"]["selector"].items()
        <= deployments["hookline-api"]["spec"]["template"]["metadata"]["labels"].items()
    )
    assert [p["targetPort"] for p in svc["spec"]["ports"]] == ["http"]
    grace = deployments["hookline-deliver"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace == 45


def test_keda_scales_deliver_on_its_consumer_group_within_the_partitions(build):
    docs = build(Combo("overlays/prod", ()))
    (so,) = of_kind(docs, "ScaledObject")
    (trigger,) = so["spec"]["triggers"]
    config = config_data(docs)
    s = load_settings(config)
    from processors.deliver.app import GROUP

    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == s.topic(GROUP)
    assert trigger["metadata"]["topic"] == s.topic(DELIVERIES)
    assert trigger["metadata"]["bootstrapServers"] == s.kafka_bootstrap
    assert 1 <= so["spec"]["minReplicaCount"] <= so["spec"]["maxReplicaCount"] == 12
    # The HPA owns the replica count: the Deployment must not fight it on every apply.
    assert "replicas" not in by_name(docs, "Deployment")["hookline-deliver"]["spec"]


def test_strimzi_topics_are_exactly_the_topics_module(build):
    docs = build(Combo("base", ("strimzi",)))
    topics = {d["spec"]["topicName"]: d["spec"] for d in of_kind(docs, "KafkaTopic")}
    specs = {t.name: t for t in all_topics(load_settings({}))}
    assert set(topics) == set(specs)
    for name, spec in specs.items():
        assert topics[name]["partitions"] == spec.partitions, name
        assert topics[name]["config"] == spec.config, name
    assert topics[CONFIG]["config"]["cleanup.policy"] == "compact"
    dev = {
        d["spec"]["topicName"]: d["spec"]["replicas"]
        for d in of_kind(build(Combo("overlays/dev", ())), "KafkaTopic")
    }
    prod = {
        d["spec"]["topicName"]: d["spec"]["replicas"]
        for d in of_kind(build(Combo("overlays/prod", ())), "KafkaTopic")
    }
    assert set(dev.values()) == {1} and set(prod.values()) == {3}


def test_generated_strimzi_topics_are_up_to_date():
    script = load_script(K8S / "components" / "strimzi" / "topics.py")
    assert (K8S / "components" / "strimzi" / "topics.yaml").read_text() == script.render(), (
        "topics.yaml is stale: run `.venv/bin/python deploy/k8s/components/strimzi/topics.py`"
    )


def test_prometheus_rule_carries_exactly_the_alert_rules(build):
    docs = build(Combo("base", ("podmonitors",)))
    (rule,) = of_kind(docs, "PrometheusRule")
    assert (
        rule["spec"]["groups"] == yaml.safe_load((DEPLOY / "prometheus" / "rules.yml").read_text())["groups"]
    )
    script = load_script(K8S / "components" / "podmonitors" / "prometheusrule.py")
    assert (K8S / "components" / "podmonitors" / "prometheusrule.yaml").read_text() == script.render(), (
        "prometheusrule.yaml is stale: run deploy/k8s/components/podmonitors/prometheusrule.py"
    )


def test_podmonitors_name_jobs_as_the_rules_and_local_config_do(build):
    docs = build(Combo("base", ("podmonitors",)))
    jobs = set()
    for pm in of_kind(docs, "PodMonitor"):
        (ep,) = pm["spec"]["podMetricsEndpoints"]
        (relabel,) = [r for r in ep["relabelings"] if r.get("targetLabel") == "job"]
        jobs.add(relabel["replacement"])
    local = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert jobs == {f"hookline-{r}" for r in ROLES} == {j["job_name"] for j in local["scrape_configs"]}


def test_dashboards_config_map_carries_the_dashboard_files(build):
    docs = build(Combo("base", ("grafana-dashboards",)))
    (cm,) = [
        d for d in of_kind(docs, "ConfigMap") if d["metadata"].get("labels", {}).get("grafana_dashboard")
    ]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    files = {p.name: p.read_text() for p in (DEPLOY / "grafana").glob("*.json")}
    assert cm["data"] == files and set(files) == {"overview.json", "delivery.json"}


def test_overlays_differ_in_replicas_resources_image_and_namespace(build):
    dev, prod = build(Combo("overlays/dev", ())), build(Combo("overlays/prod", ()))
    assert {d["metadata"].get("namespace") for d in dev} == {"hookline-dev"}
    assert {d["metadata"].get("namespace") for d in prod} == {"hookline"}
    dev_deps, prod_deps = by_name(dev, "Deployment"), by_name(prod, "Deployment")
    assert {d["spec"]["replicas"] for d in dev_deps.values()} == {1}
    assert (
        prod_deps["hookline-api"]["spec"]["replicas"] >= 2
        and prod_deps["hookline-router"]["spec"]["replicas"] >= 2
    )
    image = {n: d["spec"]["template"]["spec"]["containers"][0]["image"] for n, d in prod_deps.items()}
    assert set(image.values()) == {"hookline:0.1.0"}
    assert {d["spec"]["template"]["spec"]["containers"][0]["image"] for d in dev_deps.values()} == {
        "hookline:dev"
    }
    cpu = lambda d: d["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"]  # noqa: E731
    assert cpu(dev_deps["hookline-deliver"]) != cpu(prod_deps["hookline-deliver"])


# -- the checks themselves can fail ----------------------------------------------------------------


def test_checks_catch_broken_manifests(build):
    import copy

    docs = build(Combo("overlays/prod", ()))
    config = config_data(docs)
    dep = copy.deepcopy(by_name(docs, "Deployment")["hookline-deliver"])
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    c["env"][0] = {"name": "HOOKLINE_SECRET_KEY", "value": "k1:" + "A" * 43}
    del c["readinessProbe"]
    c["securityContext"]["readOnlyRootFilesystem"] = False
    del c["resources"]["limits"]
    pod["terminationGracePeriodSeconds"] = 30
    errors = deployment_errors(dep, config)
    for what in (
        "readinessProbe",
        "readOnlyRootFilesystem",
        "resources.limits",
        "terminationGracePeriodSeconds",
        "secrets",
    ):
        assert any(what in e for e in errors), (what, errors)
    assert any("literal value" in e for e in inlined_secrets([dep]))
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}, "stringData": {"a": "b"}}
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "hookline-config"},
        "data": {"HOOKLINE_DATABASE_URL": "postgresql://hook:hunter2@db/hookline"},
    }
    found = inlined_secrets([secret, cm])
    assert len(found) == 3, found

    c["bogusField"] = 1  # strict schema validation rejects unknown fields
    assert schema_errors(dep)

    (so,) = copy.deepcopy(of_kind(docs, "ScaledObject"))
    so["spec"]["maxReplicaCount"] = 13
    so["spec"]["minReplicaCount"] = 0
    errs = custom_resource_errors(so, by_name(docs, "Deployment"))
    assert any("maxReplicaCount" in e for e in errs) and any("minReplicaCount" in e for e in errs)
    topic = copy.deepcopy(of_kind(docs, "KafkaTopic")[0])
    del topic["metadata"]["labels"]
    topic["spec"]["partitions"] = 0
    assert len(custom_resource_errors(topic, {})) == 2
    pm = copy.deepcopy(of_kind(docs, "PodMonitor")[0])
    pm["spec"]["podMetricsEndpoints"][0]["port"] = "nope"
    assert any("named container port" in e for e in custom_resource_errors(pm, by_name(docs, "Deployment")))
    (pr,) = copy.deepcopy(of_kind(docs, "PrometheusRule"))
    del pr["spec"]["groups"][0]["rules"][0]["expr"]
    assert any("expr" in e for e in custom_resource_errors(pr, {}))


def test_yaml_under_deploy_is_lint_clean():
    out = subprocess.run(
        [sys.executable, "-m", "yamllint", "-s", "-c", str(DEPLOY / ".yamllint.yml"), str(DEPLOY)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
