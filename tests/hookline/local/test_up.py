"""The README's run command: `hookline up` brings the pipeline up and the demo deliveries arrive verified,
on a screen without error-looking lines when nothing is wrong."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hookline.local.kafka import LocalKafka
from hookline.local.ports import free_port
from hookline.settings import Settings, load_settings
from tests.support import REPO

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

EVENTS = 12

# What a reader takes for trouble: failures, refused connections, tracebacks, ERROR log lines,
# librdkafka's own log lines ("%3|1796402022.553|FAIL|..."), and terminal control codes (a
# spinner's backspaces and cursor escapes) that a log file or a pipe shows as garbage.
ERROR_LOOKING = re.compile(r"(?i:failed|connection refused|traceback)|\bERROR\b|%\d\|\d+\.\d+\||[\x1b\x08]")


def error_looking(text: str) -> list[str]:
    return [line for line in text.splitlines() if ERROR_LOOKING.search(line)]


def up_env(home: Path, **settings: str) -> dict[str, str]:
    """The environment of a `hookline up`: the caller's, without any HOOKLINE_* of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")}
    env.update(
        HOOKLINE_HOME=str(home),
        HOOKLINE_API_PORT=str(free_port()),
        HOOKLINE_ROUTER_METRICS_PORT=str(free_port()),
        HOOKLINE_DELIVER_METRICS_PORT=str(free_port()),
        HOOKLINE_LOGSINK_METRICS_PORT=str(free_port()),
        HOOKLINE_HEALTH_METRICS_PORT=str(free_port()),
        **settings,
    )
    return env


def run_up_and_check_the_screen(env: dict[str, str], home: Path) -> str:
    args = [sys.executable, "-m", "hookline.cli", "up", "--exit-after-demo", "--events", str(EVENTS),
            "--receiver-port", str(free_port()), "--timeout", "90"]  # fmt: skip
    proc = subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    verified = set(re.findall(r"VERIFIED \S+\s+(msg_\S+) \d+ bytes, both signatures valid", out))
    assert len(verified) >= EVENTS, out[-4000:]
    assert f"all {EVENTS} demo deliveries arrived with valid signatures" in out
    assert "REJECTED" not in out
    # Nothing alarming on the screen, nor in the log files it leaves under its home (the broker's
    # log when it started one; its data directory holds Kafka's binary segment files, *.log too).
    assert error_looking(out) == [], "\n".join(error_looking(out))
    segments = LocalKafka(load_settings(env)).data
    for log in (p for p in home.rglob("*.log") if not p.is_relative_to(segments)):
        noisy = error_looking(log.read_text(errors="replace"))
        assert noisy == [], f"{log}:\n" + "\n".join(noisy)
    # The demo credentials stay on disk only, readable by the owner alone.
    up_env_file = home / "up.env"
    assert up_env_file.stat().st_mode & 0o077 == 0
    # Nothing secret in the output apart from the demo API key the banner shows on purpose.
    secrets = dict(line.split("=", 1) for line in up_env_file.read_text().splitlines())
    assert secrets["HOOKLINE_RECEIVER_SECRET"] not in out
    assert secrets["HOOKLINE_SECRET_KEY"] not in out
    return out


def test_up_on_a_running_broker_prints_verified_demo_deliveries_and_no_errors(
    settings: Settings, tmp_path: Path
):
    env = up_env(
        tmp_path / "home",
        HOOKLINE_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
        HOOKLINE_TOPIC_PREFIX=settings.topic_prefix,
        HOOKLINE_TOPIC_PARTITIONS=str(settings.topic_partitions),
    )
    assert "using the broker at" in run_up_and_check_the_screen(env, tmp_path / "home")


def test_up_starting_its_own_broker_like_make_run_prints_no_errors(tmp_path: Path):
    """A new user's first run: no broker anywhere, so `hookline up` starts one, creates every topic
    on it and starts the roles at once, the moment a fresh broker is most easily caught unready."""
    port = free_port()
    env = up_env(
        tmp_path / "home",
        HOOKLINE_KAFKA_LIBS=str(REPO / ".hookline" / "kafka-libs"),
        HOOKLINE_KAFKA_PORT=str(port),
        HOOKLINE_KAFKA_CONTROLLER_PORT=str(free_port()),
        HOOKLINE_KAFKA_BOOTSTRAP=f"127.0.0.1:{port}",
        HOOKLINE_KAFKA_HEAP="512m",
    )
    try:
        out = run_up_and_check_the_screen(env, tmp_path / "home")
        assert "starting Apache Kafka" in out and "stopped the local broker" in out
    finally:
        LocalKafka(load_settings(env)).stop()  # whatever a failed run left behind
