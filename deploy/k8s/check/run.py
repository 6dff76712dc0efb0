"""`make k8s-check`: the manifests of deploy/k8s meet a real Kubernetes API server.

Builds kube-apiserver and kubectl from the wrapper module in deploy/k8s/apiserver (once; skipped while
the binaries are current), fetches the CRDs of the custom resources the manifests use, starts etcd and
kube-apiserver on loopback ports with their data in a temporary directory, then:

1. renders every overlay with kustomize and applies it with a server-side dry run into its namespace,
2. applies the dev overlay for real (``kubectl apply``, as the README tells an operator to) and reads
   every object back: each field we set must come back as we wrote it, and a second apply changes nothing,
3. sends broken manifests (unknown fields, wrong types) and expects the server to refuse each one.

The overlays' namespaces are created first, as an operator does before the first apply (README).
etcd and the API server are stopped at the end, always. ``prepare`` only builds and fetches (CI runs
it before the tests); tests/deploy/test_k8s_apiserver.py imports these functions.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import datetime
import fcntl
import hashlib
import ipaddress
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hookline.local.ports import free_port  # below the ephemeral range (docs/architecture.md §9, pitfall 16)

REPO = Path(__file__).resolve().parents[3]
K8S = REPO / "deploy" / "k8s"
MODULE = K8S / "apiserver"
HOME = REPO / ".hookline" / "k8s"
BIN = HOME / "bin"
CRDS = HOME / "crds"

KUBERNETES = "v1.34.2"
BINARIES = {
    "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
    "kubectl": "k8s.io/kubernetes/cmd/kubectl",
}
#: CRDs from Go modules on the module proxy: (module, version, files in the module).
GO_CRDS = (
    ("github.com/kedacore/keda/v2", "v2.20.2", ("config/crd/bases/keda.sh_scaledobjects.yaml",)),
    (
        "github.com/prometheus-operator/prometheus-operator",
        "v0.85.0",
        (
            "example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml",
            "example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml",
        ),
    ),
)
#: Strimzi's KafkaTopic CRD, written by Strimzi's CRD generator from the io.strimzi:api classes (pom.xml).
STRIMZI_POM = Path(__file__).with_name("pom.xml")
STRIMZI_TOPIC = "io.strimzi.api.kafka.model.topic.KafkaTopic"
STRIMZI_ARGS = ("--yaml", "--crd-api-version", "v1", "--api-versions", "v1beta2,v1beta1,v1alpha1")
STRIMZI_ARGS += ("--storage-version", "v1beta2", "--target-kube", "1.16+")
OVERLAYS = ("dev", "prod")
FIELD_MANAGER = "hookline-check"
READY_TIMEOUT = 180.0  # seconds; the API server is ready in 2-20 s on an idle machine


class Missing(Exception):
    """A tool the check needs is not installed or not built (the message says how to get it)."""


class CheckFailed(Exception):
    """The API server refused or changed something it should have accepted as written."""


def say(message: str) -> None:
    print(f"[k8s-check] {message}", flush=True)


# -- tools ---------------------------------------------------------------------------------------


def go_binary() -> str:
    found = shutil.which("go") or (
        "/usr/local/go/bin/go" if os.access("/usr/local/go/bin/go", os.X_OK) else None
    )
    if not found:
        raise Missing("`go` is not installed (Go 1.24 or newer; .ci/run expects it in /usr/local/go)")
    return found


def _run(args: list[str], *, cwd: Path | None = None, timeout: float = 600, **kw: Any) -> str:
    out = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, **kw)
    if out.returncode != 0:
        raise CheckFailed(f"{' '.join(args[:4])} ... failed ({out.returncode}):\n{out.stderr[-4000:]}")
    return out.stdout


def find_kustomize() -> str:
    found = shutil.which("kustomize")
    if not found:
        gopath = _run([go_binary(), "env", "GOPATH"]).strip().split(os.pathsep)[0]
        candidate = Path(gopath) / "bin" / "kustomize"
        found = str(candidate) if os.access(candidate, os.X_OK) else None
    if not found:
        raise Missing("`kustomize` is not installed (go install sigs.k8s.io/kustomize/kustomize/v5@v5.8.2)")
    return found


def find_etcd() -> str:
    found = shutil.which("etcd")
    if not found:
        raise Missing("`etcd` is not installed (apt-get install etcd-server)")
    return found


def ldflags() -> str:
    """Stripped binaries that report the release they were built from (kubectl parses the server's)."""
    major, minor = KUBERNETES.removeprefix("v").split(".")[:2]
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        for var, value in (("gitVersion", KUBERNETES), ("gitMajor", major), ("gitMinor", minor)):
            flags.append(f"-X {pkg}.{var}={value}")
        flags.append(f"-X {pkg}.gitTreeState=clean")
    return " ".join(flags)


def _binaries_stamp(go: str) -> str:
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum"):
        digest.update((MODULE / name).read_bytes())
    digest.update(ldflags().encode())
    digest.update(_run([go, "version"]).encode())
    return digest.hexdigest()


def binaries(*, build: bool, progress: Callable[[str], None] = say) -> dict[str, Path]:
    """Paths of kube-apiserver and kubectl, built into .hookline/k8s/bin unless present and current.

    With ``build=False`` a missing or stale build raises :class:`Missing` instead of building (4-6 min cold).
    """
    go = go_binary()
    paths = {name: BIN / name for name in BINARIES}
    stamp = BIN / "stamp"
    want = _binaries_stamp(go)
    current = stamp.is_file() and stamp.read_text() == want and all(p.is_file() for p in paths.values())
    if current:
        return paths
    if not build:
        raise Missing(
            "kube-apiserver and kubectl are not built or stale (`make k8s-tools` builds them, 4-6 min cold)"
        )
    BIN.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)
    env = {**os.environ, "GOFLAGS": "-mod=readonly -buildvcs=false"}
    started = time.monotonic()
    progress(f"building kube-apiserver and kubectl {KUBERNETES} (cold: 4-6 min on 2 cores, then seconds)")
    progress("listing the packages (downloads the modules when they are not cached)")
    pkgs = _run([go, "list", "-deps", *BINARIES.values()], cwd=MODULE, env=env, timeout=1800).split()
    cmd = [go, "build", "-v", "-ldflags", ldflags(), "-o", str(BIN) + "/", *BINARIES.values()]
    proc = subprocess.Popen(cmd, cwd=MODULE, env=env, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    last, tail = 0.0, []
    for built, line in enumerate(proc.stderr, 1):
        tail = [*tail[-40:], line.rstrip()]
        if time.monotonic() - last >= 30:
            last = time.monotonic()
            elapsed = int(time.monotonic() - started)
            progress(f"  {elapsed // 60}m{elapsed % 60:02d}s: compiled {built} of <= {len(pkgs)} packages")
    if proc.wait() != 0:
        raise CheckFailed("go build failed:\n" + "\n".join(tail))
    stamp.write_text(want)
    progress(f"built {', '.join(BINARIES)} in {time.monotonic() - started:.0f} s into {BIN}")
    return paths


# -- CRDs ----------------------------------------------------------------------------------------


def _crd_sources() -> str:
    return json.dumps([GO_CRDS, STRIMZI_POM.read_text(), STRIMZI_TOPIC, STRIMZI_ARGS], sort_keys=True)


def crds(*, progress: Callable[[str], None] = say) -> list[Path]:
    """The CRD files of ScaledObject, PodMonitor, PrometheusRule and KafkaTopic under .hookline/k8s/crds
    (fetched once: KEDA's and prometheus-operator's from their Go modules, Strimzi's generated)."""
    stamp = CRDS / "stamp"
    files = [CRDS / Path(f).name for _m, _v, fs in GO_CRDS for f in fs] + [
        CRDS / "kafka.strimzi.io_kafkatopics.yaml"
    ]
    if stamp.is_file() and stamp.read_text() == _crd_sources() and all(f.is_file() for f in files):
        return files
    CRDS.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)
    go = go_binary()
    for module, version, paths in GO_CRDS:
        progress(f"fetching the CRDs of {module}@{version} (go mod download)")
        info = json.loads(
            _run([go, "mod", "download", "-json", f"{module}@{version}"], cwd=CRDS, timeout=900)
        )
        for rel in paths:
            shutil.copyfile(Path(info["Dir"]) / rel, CRDS / Path(rel).name)
    mvn, java = shutil.which("mvn"), shutil.which("java")
    if not (mvn and java):
        raise Missing("Maven and Java are needed for Strimzi's KafkaTopic CRD (apt-get install maven)")
    progress("generating Strimzi's KafkaTopic CRD (mvn dependency:copy-dependencies, then its CRD generator)")
    jars = HOME / "strimzi-jars"
    shutil.rmtree(jars, ignore_errors=True)
    _run(
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(STRIMZI_POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={jars}",
        ],
        timeout=900,
    )
    out = CRDS / "kafka.strimzi.io_kafkatopics.yaml"
    _run(
        [
            java,
            "-cp",
            f"{jars}/*",
            "io.strimzi.crdgenerator.CrdGenerator",
            *STRIMZI_ARGS,
            f"{STRIMZI_TOPIC}={out}",
        ]
    )
    stamp.write_text(_crd_sources())
    return files


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One preparation at a time (make k8s-check and the test may run together)."""
    HOME.mkdir(parents=True, exist_ok=True)
    with open(HOME / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def prepare(
    *, build: bool = True, progress: Callable[[str], None] = say
) -> tuple[dict[str, Path], list[Path]]:
    with _locked():
        return binaries(build=build, progress=progress), crds(progress=progress)


# -- etcd and the API server -----------------------------------------------------------------------


def _die_with_parent() -> None:
    """Children are killed when this process dies, however it dies (Linux prctl PR_SET_PDEATHSIG); SIGKILL
    because a kube-apiserver still starting up does not finish its graceful shutdown on SIGTERM once its
    etcd is gone."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


def _write_credentials(d: Path) -> None:
    """A self-signed serving certificate for 127.0.0.1 and the service-account signing key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID

    def pem(key: Any) -> bytes:
        return bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hookline-check-apiserver")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (d / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "tls.key").write_bytes(pem(key))
    (d / "sa.key").write_bytes(pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)))


@dataclass
class ApiServer:
    """etcd and kube-apiserver on loopback ports, data in a temporary directory; ``with`` stops both."""

    tools: dict[str, Path]
    etcd: str

    def __post_init__(self) -> None:
        self.dir = Path()
        self.token = secrets.token_hex(16)
        self.port = 0
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> ApiServer:
        for attempt in range(1, 4):
            try:
                self.start()
                return self
            except CheckFailed as exc:  # a port taken between choosing and binding it: choose again
                self.stop()
                if "address already in use" not in str(exc) or attempt == 3:
                    raise
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.dir / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent
        )
        log.close()
        self.procs.append(proc)
        return proc

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.dir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def _wait(self, what: str, proc: subprocess.Popen[bytes], probe: Callable[[], bool]) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise CheckFailed(f"{what} exited ({proc.returncode}):\n{self.log_tail(what)}")
            if probe():
                return
            time.sleep(0.2)
        raise CheckFailed(f"{what} not ready after {READY_TIMEOUT:.0f} s:\n{self.log_tail(what)}")

    def start(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="hookline-k8s-check-"))
        client, peer, self.port = free_port(), free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{client}"
        etcd = self._spawn(
            "etcd",
            [
                self.etcd,
                "--name=check",
                f"--data-dir={self.dir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=check=http://127.0.0.1:{peer}",
                "--log-level=warn",
            ],
        )
        self._wait("etcd", etcd, lambda: self._get(f"{etcd_url}/health") == 200)
        _write_credentials(self.dir)
        (self.dir / "tokens.csv").write_text(f'{self.token},admin,admin,"system:masters"\n')
        apiserver = self._spawn(
            "kube-apiserver",
            [
                str(self.tools["kube-apiserver"]),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.port}",
                f"--cert-dir={self.dir / 'certs'}",
                f"--tls-cert-file={self.dir / 'tls.crt'}",
                f"--tls-private-key-file={self.dir / 'tls.key'}",
                f"--token-auth-file={self.dir / 'tokens.csv'}",
                "--authorization-mode=AlwaysAllow",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-signing-key-file={self.dir / 'sa.key'}",
                f"--service-account-key-file={self.dir / 'sa.key'}",
                "--service-cluster-ip-range=10.0.0.0/24",
            ],
        )
        url = f"https://127.0.0.1:{self.port}"
        self._wait("kube-apiserver", apiserver, lambda: self._get(f"{url}/readyz") == 200)
        (self.dir / "kubeconfig").write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {
                            "name": "check",
                            "cluster": {"server": url, "certificate-authority": str(self.dir / "tls.crt")},
                        }
                    ],
                    "users": [{"name": "admin", "user": {"token": self.token}}],
                    "contexts": [{"name": "check", "context": {"cluster": "check", "user": "admin"}}],
                    "current-context": "check",
                }
            )
        )
        version = json.loads(self.kubectl("version", "-o", "json"))["serverVersion"]["gitVersion"]
        if version != KUBERNETES:
            raise CheckFailed(f"the API server reports {version}, not {KUBERNETES}")

    def _get(self, url: str) -> int:
        context = (
            ssl.create_default_context(cafile=str(self.dir / "tls.crt")) if url.startswith("https") else None
        )
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=5, context=context) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code
        except (OSError, ssl.SSLError):
            return 0

    def stop(self) -> None:
        for proc in reversed(self.procs):  # the API server first, then its store
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=30)
        self.procs.clear()
        if self.dir.name.startswith("hookline-k8s-check-"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def run_kubectl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        base = [str(self.tools["kubectl"]), f"--kubeconfig={self.dir / 'kubeconfig'}"]
        base.append(f"--cache-dir={self.dir / 'kubectl-cache'}")
        return subprocess.run([*base, *args], input=stdin, capture_output=True, text=True, timeout=300)

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        out = self.run_kubectl(*args, stdin=stdin)
        if out.returncode != 0:
            raise CheckFailed(f"kubectl {' '.join(args)}:\n{out.stderr.strip()}")
        return out.stdout


# -- the checks ------------------------------------------------------------------------------------


Doc = dict[str, Any]


def install_crds(server: ApiServer, files: list[Path]) -> list[str]:
    names = []
    for f in files:
        server.kubectl("apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "-f", str(f))
        names.append(yaml.safe_load(f.read_text())["metadata"]["name"])
    server.kubectl("wait", "--for=condition=Established", "--timeout=120s", *(f"crd/{n}" for n in names))
    return names


def render(kustomize: str, overlay: str) -> list[Doc]:
    out = _run([kustomize, "build", str(K8S / "overlays" / overlay)], timeout=120)
    return [d for d in yaml.safe_load_all(out) if d]


def dump(docs: list[Doc]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False)


def key(doc: Doc) -> tuple[str, str, str]:
    return doc["kind"], doc["metadata"].get("namespace", ""), doc["metadata"]["name"]


def ensure_namespace(server: ApiServer, name: str) -> None:
    """What an operator does before the first apply (README: the namespace holds the Secret and Kafka)."""
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    server.kubectl("apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "-f", "-", stdin=dump([ns]))


def _items(output: str) -> list[Doc]:
    obj = json.loads(output)
    return list(obj["items"]) if obj.get("kind") == "List" else [obj]


def dry_run(server: ApiServer, docs: list[Doc]) -> list[Doc]:
    """Every object through `kubectl apply --server-side --dry-run=server`; the objects as the server
    would store them. Raises CheckFailed with the server's reasons when it refuses any."""
    args = (
        "apply",
        "--server-side",
        "--dry-run=server",
        f"--field-manager={FIELD_MANAGER}",
        "-o",
        "json",
        "-f",
        "-",
    )
    returned = _items(server.kubectl(*args, stdin=dump(docs)))
    missing = {key(d) for d in docs} - {key(d) for d in returned}
    if missing:
        raise CheckFailed(f"the dry run returned no object for {sorted(missing)}")
    return returned


def refusal(server: ApiServer, doc: Doc) -> str:
    """The server's reason for refusing ``doc`` in a server-side dry run; CheckFailed if it accepts it."""
    args = ("apply", "--server-side", "--dry-run=server", f"--field-manager={FIELD_MANAGER}", "-f", "-")
    out = server.run_kubectl(*args, stdin=dump([doc]))
    if out.returncode == 0:
        raise CheckFailed(f"the API server accepted a broken {'/'.join(key(doc))}: {out.stdout.strip()}")
    return out.stderr.strip()


def apply(server: ApiServer, docs: list[Doc]) -> dict[tuple[str, str, str], str]:
    """`kubectl apply -f -` (client-side, as the README's `kubectl apply -k`): each object's verdict
    (created, configured, unchanged)."""
    out = server.kubectl("apply", f"--field-manager={FIELD_MANAGER}", "-f", "-", stdin=dump(docs))
    lines = out.splitlines()
    if len(lines) != len(docs):
        raise CheckFailed(f"kubectl apply answered {len(lines)} lines for {len(docs)} objects:\n{out}")
    return {key(doc): line.rsplit(" ", 1)[-1] for line, doc in zip(lines, docs, strict=True)}


def read_back(server: ApiServer, docs: list[Doc]) -> list[Doc]:
    return _items(server.kubectl("get", "-o", "json", "-f", "-", stdin=dump(docs)))


def reapply_changes(server: ApiServer, docs: list[Doc]) -> list[str]:
    """The objects a second `kubectl apply` of the same manifests changes (their resourceVersion moves).

    kubectl's own verdict is not the test: it reports every PodDisruptionBudget as "configured" because
    policy/v1 replaces the whole selector in a strategic merge patch, though the server stores nothing new.
    """
    before = {key(d): d["metadata"]["resourceVersion"] for d in read_back(server, docs)}
    apply(server, docs)
    after = {key(d): d["metadata"]["resourceVersion"] for d in read_back(server, docs)}
    return sorted("/".join(k) for k in before if after.get(k) != before[k])


_ABSENT = object()


def differences(wrote: Any, read: Any, where: str = "") -> list[str]:
    """Where ``read`` does not hold what ``wrote`` set: every key and list item we wrote, with the same
    value (fields the server adds, such as defaults, status and metadata, are not compared)."""
    if isinstance(wrote, dict):
        if not isinstance(read, dict):
            return [f"{where or '.'}: wrote an object, read back {_short(read)}"]
        return [d for k, v in wrote.items() for d in differences(v, read.get(k, _ABSENT), f"{where}.{k}")]
    if isinstance(wrote, list):
        if not isinstance(read, list) or len(read) != len(wrote):
            return [f"{where}: wrote {len(wrote)} items, read back {_short(read)}"]
        return [
            d
            for i, (w, r) in enumerate(zip(wrote, read, strict=True))
            for d in differences(w, r, f"{where}[{i}]")
        ]
    if read is _ABSENT:
        return [f"{where}: wrote {_short(wrote)}, absent when read back"]
    return (
        []
        if wrote == read and type(wrote) is type(read)
        else [f"{where}: wrote {_short(wrote)}, read {_short(read)}"]
    )


def _short(value: Any) -> str:
    text = "absent" if value is _ABSENT else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def broken_manifests(docs: list[Doc]) -> list[tuple[str, Doc, str]]:
    """(what is wrong, the broken object, a text the server's refusal must contain), built from ``docs``."""

    def first(kind: str) -> Doc:
        return copy.deepcopy(next(d for d in docs if d["kind"] == kind))

    unknown = first("Deployment")
    unknown["spec"]["template"]["spec"]["containers"][0]["bogusField"] = 1
    wrong_type = first("Deployment")
    wrong_type["spec"]["replicas"] = "three"
    topic = first("KafkaTopic")
    topic["spec"]["partitions"] = "twelve"
    monitor = first("PodMonitor")
    monitor["spec"]["podMetricsEndpoints"][0]["scrapeEvery"] = "30s"
    return [
        ("an unknown field in a Deployment", unknown, "bogusField"),
        ("a string for a Deployment's replicas", wrong_type, "spec.replicas"),
        ("a string for a KafkaTopic's partitions (Strimzi's CRD schema)", topic, "spec.partitions"),
        ("an unknown field in a PodMonitor (prometheus-operator's CRD schema)", monitor, "scrapeEvery"),
    ]


def check(server: ApiServer, kustomize: str, progress: Callable[[str], None] = say) -> list[str]:
    """Every check of the module docstring; the problems found (empty: all passed)."""
    problems: list[str] = []
    rendered = {overlay: render(kustomize, overlay) for overlay in OVERLAYS}
    for overlay, docs in rendered.items():
        namespaces = {d["metadata"]["namespace"] for d in docs if d["metadata"].get("namespace")}
        for ns in sorted(namespaces):
            ensure_namespace(server, ns)
        try:
            dry_run(server, docs)
            progress(
                f"overlay {overlay}: the server-side dry run accepted all {len(docs)} objects in {namespaces}"
            )
        except CheckFailed as exc:
            problems.append(f"overlay {overlay}: {exc}")
    dev = rendered["dev"]
    apply(server, dev)
    read = {key(d): d for d in read_back(server, dev)}
    mismatches = []
    for doc in dev:
        found = read.get(key(doc))
        diffs = differences(doc, found) if found else [": not found"]
        mismatches += [f"{'/'.join(key(doc))}{d}" for d in diffs]
    problems += mismatches
    again = reapply_changes(server, dev)
    if again:
        problems.append(f"overlay dev: applying it a second time changed {again}")
    if not again and not mismatches:
        progress(
            f"overlay dev: applied {len(dev)} objects; each reads back as written; reapplying changes none"
        )
    for what, doc, reason in broken_manifests(dev):
        try:
            refused = refusal(server, doc)
        except CheckFailed as exc:
            problems.append(str(exc))
            continue
        if reason not in refused:
            problems.append(f"{what}: refused, but the reason does not name {reason!r}: {refused}")
        else:
            progress(f"refused as it should: {what}: {refused.rsplit('): ', 1)[-1]}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", nargs="?", choices=("prepare", "check"), default="check")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks: stop the servers
    started = time.monotonic()
    try:
        tools, files = prepare()
        if args.step == "prepare":
            say(f"ready: {', '.join(str(p) for p in tools.values())} and {len(files)} CRDs")
            return 0
        kustomize = find_kustomize()
        with ApiServer(tools, find_etcd()) as server:
            ready = time.monotonic() - started
            say(f"kube-apiserver {KUBERNETES} ready on 127.0.0.1:{server.port} after {ready:.0f} s")
            say(f"installed CRDs {', '.join(install_crds(server, files))}")
            problems = check(server, kustomize)
    except (Missing, CheckFailed) as exc:
        say(f"FAILED: {exc}")
        return 1
    for p in problems:
        say(f"PROBLEM: {p}")
    say(f"{'FAILED' if problems else 'passed'} in {time.monotonic() - started:.0f} s")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
