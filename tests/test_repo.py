"""Repository-level checks: README in sync, layout rules of STYLE.md, CLI wiring."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from hookline._cmd_settings import markdown_table
from hookline.cli import COMMANDS, build_parser

REPO = Path(__file__).resolve().parent.parent


def test_readme_settings_table_matches_the_settings_object():
    readme = (REPO / "README.md").read_text()
    m = re.search(r"<!-- settings-table.*?-->\n(.*?)<!-- /settings-table -->", readme, re.S)
    assert m, "README lacks the settings table markers"
    assert m.group(1) == markdown_table(), (
        "README settings table is stale: run `hookline settings --markdown`"
    )


def test_readme_first_screen_has_the_two_commands():
    first_screen = "\n".join((REPO / "README.md").read_text().splitlines()[:40])
    assert "make run" in first_screen and "make test" in first_screen


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_imports_flow_one_way():
    rules = {
        "schemas": {"faust", "httpx", "hookline", "producers", "processors"},
        "hookline": {"faust", "httpx", "producers", "processors"},
        "producers": {"processors", "faust"},
        "processors": {"producers"},
    }
    for package, forbidden in rules.items():
        for path in (REPO / package).rglob("*.py"):
            bad = _imports(path) & forbidden
            assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"


def test_every_command_has_a_parser_and_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == set(COMMANDS)  # type: ignore[arg-type]
    for name, (_module, help_text) in COMMANDS.items():
        assert help_text and sub.choices[name].description == help_text  # type: ignore[index]


def test_ruff_and_mypy_are_clean():
    import subprocess
    import sys

    bin_dir = Path(sys.executable).parent
    ruff = subprocess.run([str(bin_dir / "ruff"), "check", "."], cwd=REPO, capture_output=True, text=True)
    assert ruff.returncode == 0, ruff.stdout[-3000:]
    mypy = subprocess.run([str(bin_dir / "mypy")], cwd=REPO, capture_output=True, text=True)
    assert mypy.returncode == 0, mypy.stdout[-3000:]
