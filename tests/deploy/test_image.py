"""The container image, checked without a Docker engine: the Dockerfile read line by line, and
the build context it copies turned into a wheel the way its `pip install .` does."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from hookline.settings import load_settings
from tests.deploy.conftest import REPO

DOCKERFILE = (REPO / "Dockerfile").read_text()
PACKAGES = ("hookline", "schemas", "producers", "api", "processors")


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def test_base_image_is_python_311_slim_in_every_stage():
    # `docker build .` takes the ARG's default; `make image` passes a local base instead.
    steps = instructions()
    first_from = next(i for i, (word, _) in enumerate(steps) if word == "FROM")
    args = dict(rest.partition("=")[::2] for word, rest in steps[:first_from] if word == "ARG")
    assert args == {"BASE_IMAGE": "python:3.11-slim"}
    froms = [rest.split()[0] for word, rest in steps if word == "FROM"]
    assert len(froms) == 2 and all(f == "${BASE_IMAGE}" for f in froms)


def test_runs_as_a_numeric_non_root_user_with_the_hookline_entry_point():
    final = final_stage()
    (user,) = [rest for word, rest in final if word == "USER"]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "USER must be a numeric non-root uid (runAsNonRoot checks it)"
    assert next(i for i, (w, _) in enumerate(final) if w == "USER") > max(
        i for i, (w, _) in enumerate(final) if w == "RUN"
    ), "nothing may run as root after USER"
    (entry,) = [rest for word, rest in final if word == "ENTRYPOINT"]
    assert json.loads(entry) == ["hookline"]
    deployment = (REPO / "deploy" / "k8s" / "base" / "deliver.yaml").read_text()
    assert f"runAsUser: {uid}" in deployment


def test_installs_the_distribution_with_pip_and_exposes_every_role_port():
    assert any(
        word == "RUN" and "pip install" in rest and re.search(r"\s\.(\s|$)", rest)
        for word, rest in instructions()
    )
    exposed = {int(p) for word, rest in final_stage() if word == "EXPOSE" for p in rest.split()}
    s = load_settings({})
    assert exposed == {
        s.api_port,
        s.router_metrics_port,
        s.deliver_metrics_port,
        s.logsink_metrics_port,
        s.health_metrics_port,
    }
    env = " ".join(rest for word, rest in final_stage() if word == "ENV")
    assert "HOOKLINE_METRICS_HOST=0.0.0.0" in env and "HOOKLINE_API_HOST=0.0.0.0" in env


def copied_paths() -> list[str]:
    paths = []
    for word, rest in instructions():
        if word == "COPY" and "--from=" not in rest:
            *sources, _dest = rest.split()
            paths.extend(sources)
    return paths


def test_copies_pyproject_readme_and_every_package_and_dockerignore_lets_them_through():
    assert set(copied_paths()) == {"pyproject.toml", "README.md", *PACKAGES}
    ignore = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()]
    ignore = [line for line in ignore if line and not line.startswith("#")]
    assert ignore[0] == "**", ".dockerignore starts by excluding everything"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", *PACKAGES}


@pytest.mark.slow
def test_the_build_context_makes_a_wheel_with_every_package_and_data_file(tmp_path: Path):
    ctx = tmp_path / "context"
    ctx.mkdir()
    for path in copied_paths():  # what the Dockerfile copies, without caches
        src = REPO / path
        if src.is_dir():
            shutil.copytree(src, ctx / path, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(src, ctx / path)
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(ctx)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    (wheel,) = (tmp_path / "dist").glob("hookline-*.whl")
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        p.relative_to(ctx).as_posix()
        for package in PACKAGES
        for p in (ctx / package).rglob("*")
        if p.is_file()
    }
    assert expected - in_wheel == set(), "files a non-editable install (the image) would lack"
    entry = next(n for n in in_wheel if n.endswith("entry_points.txt"))
    assert "hookline = hookline.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()
