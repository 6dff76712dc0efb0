"""`hookline up` runs the log sink too, and every child it starts shares one log store."""

from __future__ import annotations

from pathlib import Path

from hookline.local._cmd_up import ROLES
from hookline.local.up import Pipeline
from hookline.settings import Secret, load_settings

LOCAL = {
    "HOOKLINE_SECRET_KEY": "k1:" + "A" * 43,
    "HOOKLINE_DEMO_API_KEY": "demo_key",
    "HOOKLINE_RECEIVER_SECRET": "whsec_x",
}


def test_up_runs_every_role_including_the_log_sink_and_the_health_processor() -> None:
    assert ROLES == ["api", "router", "deliver", "logsink", "health"]


def test_children_share_one_sqlite_store_under_home(tmp_path: Path) -> None:
    settings = load_settings({}, home=tmp_path / "home")
    env = Pipeline(settings)._env(LOCAL)
    store = (tmp_path / "home" / "logs.sqlite3").resolve()
    assert env["HOOKLINE_DATABASE_URL"] == f"sqlite:///{store}"  # sqlite:////abs/path: absolute
    assert env["HOOKLINE_DATABASE_URL"].startswith("sqlite:////")


def test_a_configured_store_is_left_alone(tmp_path: Path) -> None:
    settings = load_settings({}, home=tmp_path, database_url=Secret("postgresql://u:p@db:5432/logs"))
    env = Pipeline(settings)._env(LOCAL)
    assert env["HOOKLINE_DATABASE_URL"] == "postgresql://u:p@db:5432/logs"
