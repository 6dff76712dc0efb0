"""The container image's install, run: exactly what the Dockerfile's build stage copies, made into a
wheel and installed into a fresh virtualenv, must answer `hookline --version` and `--help` and start
every role against a real broker.

Nothing of the repository may reach that install except through the wheel: the fresh virtualenv
borrows only the third-party packages of the virtualenv running the tests (one directory named in a
.pth file, so the editable install's own .pth finder there stays inactive), and every command runs in
a temporary directory rather than the repository, which would otherwise be on sys.path.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

from hookline.local.ports import free_port
from hookline.settings import Settings
from tests.deploy.conftest import REPO
from tests.deploy.test_image import instructions
from tests.support import Role, role_env

pytestmark = pytest.mark.slow

# role -> the setting naming the port its /readyz answers on
ROLES = {
    "api": "HOOKLINE_API_PORT",
    "router": "HOOKLINE_ROUTER_METRICS_PORT",
    "deliver": "HOOKLINE_DELIVER_METRICS_PORT",
    "logsink": "HOOKLINE_LOGSINK_METRICS_PORT",
    "health": "HOOKLINE_HEALTH_METRICS_PORT",
}


def build_stage_copies() -> list[tuple[list[str], str]]:
    """The COPY instructions of the stage that runs ``pip install .``: (sources in the build context,
    destination relative to the directory pip installs from; a directory's ends in "/")."""
    stages: list[list[tuple[str, str]]] = []
    for word, rest in instructions():
        if word == "FROM":
            stages.append([])
        elif stages:
            stages[-1].append((word, rest))
    (stage,) = [s for s in stages if any(w == "RUN" and re.search(r"pip install \.(\s|$)", r) for w, r in s)]
    workdir = PurePosixPath("/")
    copies: list[tuple[list[str], PurePosixPath]] = []
    for word, rest in stage:
        if word == "WORKDIR":
            workdir = workdir / rest
        elif word == "RUN" and "pip install" in rest:
            break
        elif word == "COPY":
            *sources, dest = rest.split()
            assert not any(s.startswith("--") for s in sources), (
                f"COPY {rest}: options this test cannot follow"
            )
            copies.append((sources, workdir / dest))
    out = []
    for sources, dest in copies:
        assert dest.is_relative_to(workdir), f"COPY to {dest}, outside {workdir} where pip installs"
        out.append((sources, dest.relative_to(workdir).as_posix() + ("/" if len(sources) > 1 else "")))
    return out


def copy_build_context(source: Path, target: Path) -> None:
    """Copy what the build stage copies from ``source`` into ``target``.

    A directory's contents go to its destination (Docker's rule); caches are left out, as the
    .dockerignore does.
    """
    for sources, dest in build_stage_copies():
        for name in sources:
            src = source / name
            if src.is_dir():
                shutil.copytree(
                    src,
                    target / dest,
                    dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
                )
            else:
                to = target / dest / src.name if dest.endswith("/") or dest == "." else target / dest
                to.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(src, to)


@dataclass(frozen=True)
class Install:
    venv: Path
    cwd: Path  # a temporary directory: the repository must not be the current directory
    env: dict[str, str]

    def run(self, program: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.venv / "bin" / program), *args],
            cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def hookline(self, *args: str) -> subprocess.CompletedProcess[str]:
        out = self.run("hookline", *args)
        assert out.returncode == 0, (
            f"hookline {' '.join(args)} exited {out.returncode}:\n{out.stderr[-3000:]}"
        )
        return out


@pytest.fixture(scope="module")
def install(tmp_path_factory: pytest.TempPathFactory) -> Install:
    tmp = tmp_path_factory.mktemp("install")
    ctx, dist, venv, cwd = tmp / "context", tmp / "dist", tmp / "venv", tmp / "cwd"
    ctx.mkdir()
    cwd.mkdir()
    copy_build_context(REPO, ctx)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(COLUMNS="200", PYTHONDONTWRITEBYTECODE="1")

    def run(*cmd: str) -> None:
        out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, f"{' '.join(cmd)}:\n{out.stdout[-2000:]}{out.stderr[-3000:]}"

    # Built in isolation as `pip install .` in the image builds it: the [build-system] requirement
    # is what builds the wheel, not whatever setuptools the test virtualenv holds.
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ctx))
    (wheel,) = dist.glob("hookline-*.whl")
    run(sys.executable, "-m", "venv", "--without-pip", str(venv))
    # Installed before the borrowed packages are visible, so pip sees no other hookline to replace.
    run(sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
        "install", "--no-deps", "--no-index", "-q", str(wheel))  # fmt: skip
    site = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        cwd=cwd, env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    borrowed = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (Path(site) / "test-dependencies.pth").write_text("".join(f"{d}\n" for d in sorted(borrowed)))
    return Install(venv, cwd, env)


def test_the_install_holds_the_copied_packages_and_nothing_else_of_the_repository(install: Install):
    copied = [name for sources, _ in build_stage_copies() for name in sources]
    packages = [name for name in copied if (REPO / name / "__init__.py").is_file()]
    assert "hookline" in packages
    probe = (
        "import importlib, importlib.util, sys\n"
        "print(*(importlib.import_module(name).__file__ for name in sys.argv[1:]))\n"
        "print(importlib.util.find_spec('benchmarks'), importlib.util.find_spec('tests'))\n"
    )
    out = install.run("python", "-c", probe, *packages)
    assert out.returncode == 0, out.stderr
    files, missing = out.stdout.splitlines()
    for f in files.split():
        assert Path(f).is_relative_to(install.venv), f"{f} is not the installed copy"
    assert missing == "None None", "the repository's own packages leak into the install"


def test_version_and_help_offer_every_role_and_no_bench(install: Install):
    assert re.fullmatch(r"hookline \S+\n", install.hookline("--version").stdout)
    commands = re.findall(r"^ {4}(\w+) ", install.hookline("--help").stdout, re.MULTILINE)
    assert set(ROLES) <= set(commands), commands
    assert "bench" not in commands, "bench needs the benchmarks package, which the image does not copy"


def test_every_command_the_install_offers_answers_help(install: Install):
    commands = re.findall(r"^ {4}(\w+) ", install.hookline("--help").stdout, re.MULTILINE)
    assert commands
    for command in commands:
        assert f"usage: hookline {command}" in install.hookline(command, "--help").stdout


class InstalledRole(Role):
    """A role run by the install's own console script, from the install's directory."""

    def __init__(self, install: Install, role: str, env: dict[str, str], log_path: Path) -> None:
        super().__init__([role], env, log_path)
        self.install = install

    def start(self) -> InstalledRole:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(self.install.venv / "bin" / "hookline"), *self.args],
                env=self.env, cwd=self.install.cwd, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        return self


@pytest.fixture
def roles(install: Install, settings: Settings, tmp_path: Path) -> Iterator[dict[str, tuple[Role, int]]]:
    ports = {role: free_port() for role in ROLES}
    env = {
        **install.env,
        **role_env(settings),
        "HOOKLINE_SECRET_KEY": "k1:" + "A" * 43,
        "HOOKLINE_API_KEYS": "acct:install-test-key",
        "HOOKLINE_DATABASE_URL": f"sqlite:///{tmp_path / 'logs.sqlite3'}",
        "HOOKLINE_ALLOW_NETWORKS": "127.0.0.0/8",
        **{ROLES[role]: str(port) for role, port in ports.items()},
    }
    started = {role: (InstalledRole(install, role, env, tmp_path / f"{role}.log").start(), port)
               for role, port in ports.items()}  # fmt: skip
    try:
        yield started
    finally:
        for role, _ in started.values():
            role.kill()


@pytest.mark.kafka
def test_every_role_starts_from_the_install_and_stops_cleanly_on_sigterm(roles: dict[str, tuple[Role, int]]):
    for role, port in roles.values():
        role.wait_ready(port, timeout=120)
    for role, _ in roles.values():
        role.kill(signal.SIGTERM)
    for name, (role, _) in roles.items():
        assert role.proc is not None
        try:
            code = role.proc.wait(60)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{name} did not stop within 60 s of SIGTERM:\n{role.log_tail()}") from None
        log = role.log_path.read_text(errors="replace")
        assert "Traceback" not in log, role.log_tail()
        if name == "api":
            # uvicorn shuts down gracefully, then raises the SIGTERM again to end with its status; as a
            # container's PID 1 that signal is ignored and it exits 0 (tests/deploy/test_image_run.py).
            assert code == -signal.SIGTERM and "Finished server process" in log, f"api: {code}\n{log}"
        else:
            assert code == 0, f"{name} exited {code}:\n{role.log_tail()}"
