"""Fixtures for the deployment tests: the external checkers (kustomize, promtool, prometheus).

A missing checker skips its tests on a developer machine (with the command that installs it) and
fails them in CI (``CI`` is true, 1 or yes: ``tests.support.in_ci``), where ``.ci/run`` installs every one
of them.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.support import skip_or_fail

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"

_INSTALL = {
    "kustomize": "go install sigs.k8s.io/kustomize/kustomize/v5@v5.8.2",
    "promtool": "apt-get install -y prometheus",
    "prometheus": "apt-get install -y prometheus",
    "podman": "apt-get install -y podman runc mmdebstrap",
}


def _go_bin() -> list[Path]:
    dirs = []
    if os.environ.get("GOBIN"):
        dirs.append(Path(os.environ["GOBIN"]))
    go = shutil.which("go")
    if go:
        try:
            gopath = subprocess.run([go, "env", "GOPATH"], capture_output=True, text=True, timeout=30).stdout
            dirs.extend(Path(p) / "bin" for p in gopath.strip().split(os.pathsep) if p)
        except (OSError, subprocess.SubprocessError):
            pass
    dirs.append(Path.home() / "go" / "bin")
    return dirs


def find_tool(name: str) -> str:
    """Path of ``name`` (PATH, then Go's bin directories), or fail in CI / skip elsewhere."""
    found = shutil.which(name)
    if not found:
        for d in _go_bin():
            if (d / name).is_file() and os.access(d / name, os.X_OK):
                found = str(d / name)
                break
    if found:
        return found
    skip_or_fail(f"`{name}` is not installed (install: {_INSTALL[name]}; .ci/run does)")


@pytest.fixture(scope="session")
def kustomize() -> str:
    return find_tool("kustomize")


@pytest.fixture(scope="session")
def promtool() -> str:
    return find_tool("promtool")


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    return find_tool("prometheus")


def load_script(path: Path) -> ModuleType:
    """Import a script of deploy/ (not a package) as a module."""
    name = "deploy_" + "_".join(path.relative_to(DEPLOY).with_suffix("").parts).replace("-", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module
