"""Repository-level checks: README in sync, layout rules of docs/architecture.md §2, CLI wiring."""

from __future__ import annotations

import ast
import re
import subprocess
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
    """Absolute imports of ``path``: each module named and every parent package of it."""
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module]
        else:
            continue
        for module in modules:
            parts = module.split(".")
            names.update(".".join(parts[: i + 1]) for i in range(len(parts)))
    return names


ROLES = ("api", "processors.router", "processors.deliver", "processors.logsink", "processors.health")

# package (a folder) -> modules it must never import
IMPORT_RULES: dict[str, set[str]] = {
    "schemas": {"faust", "httpx", "hookline", "producers", "api", "processors", "benchmarks"},
    # The kernel, local dev tooling included, imports no role and neither Faust nor httpx.
    "hookline": {"faust", "httpx", "producers", "api", "processors", "benchmarks"},
    # The event library upstream services import: the kernel and the schemas only.
    "producers": {"faust", "httpx", "api", "processors", "benchmarks"},
    "api": {"faust", "processors", "benchmarks"},
    "processors": {"api", "benchmarks"},
    **{role: set(ROLES) - {role} for role in ROLES if role.startswith("processors.")},
}


def test_imports_flow_one_way():
    checked = 0
    for package, forbidden in IMPORT_RULES.items():
        for path in (REPO / package.replace(".", "/")).rglob("*.py"):
            bad = _imports(path) & forbidden
            assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"
            checked += 1
    assert checked > 50  # the rules looked at the packages


def test_the_layout_names_each_role():
    """A newcomer finds every role from ``ls``: a folder each, the kernel holding none of them."""
    for folder in ("api", "producers", "schemas", "processors/router", "processors/deliver",
                   "processors/logsink", "processors/health", "hookline/local"):
        assert (REPO / folder / "__init__.py").is_file(), folder
    # No role modules left loose in the kernel or in processors/.
    assert sorted(p.name for p in (REPO / "processors").glob("*.py")) == ["__init__.py"]
    loose = {"up.py", "localkafka.py", "receiver.py", "router.py", "deliver.py", "worker.py"}
    assert not loose & {p.name for p in (REPO / "hookline").glob("*.py")}


def test_every_command_has_a_parser_and_help():
    for name, (_module, help_text) in COMMANDS.items():
        parser = build_parser(name)
        sub = next(a for a in parser._actions if a.dest == "command")
        assert set(sub.choices) == set(COMMANDS)  # type: ignore[arg-type]
        assert help_text and sub.choices[name].description == help_text  # type: ignore[index]
    assert "bench" in COMMANDS  # benchmarks is importable from the repository


def test_the_cli_imports_only_the_command_it_runs():
    """``hookline --help`` and ``--version`` import no role; a role's --help imports that role only."""
    import subprocess
    import sys

    probe = (
        "import sys, contextlib, io\n"
        "from hookline.cli import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(sys.argv[1:])\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )

    def top_level_modules(*argv: str) -> set[str]:
        out = subprocess.run([sys.executable, "-c", probe, *argv], cwd=REPO, capture_output=True,
                             text=True, check=True)
        return set(out.stdout.split())

    roles = {"api", "processors", "benchmarks", "faust", "httpx", "fastapi"}
    assert not top_level_modules("--help") & roles
    assert not top_level_modules("settings") & roles
    assert top_level_modules("router", "--help") & roles == {"processors"}


def test_ruff_and_mypy_are_clean():
    import subprocess
    import sys

    bin_dir = Path(sys.executable).parent
    ruff = subprocess.run([str(bin_dir / "ruff"), "check", "."], cwd=REPO, capture_output=True, text=True)
    assert ruff.returncode == 0, ruff.stdout[-3000:]
    mypy = subprocess.run([str(bin_dir / "mypy")], cwd=REPO, capture_output=True, text=True)
    assert mypy.returncode == 0, mypy.stdout[-3000:]


def test_references_stay_inside_the_repository():
    """Comments cite docs/architecture.md (sections that exist), never a document outside the repository."""
    doc = (REPO / "docs" / "architecture.md").read_text()
    sections = set(re.findall(r"^## (\d+)\. ", doc, re.M))
    assert len(sections) >= 9
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True)
    # Spelled in pieces so that this file does not match itself.
    pieces = ["DESIGN" + " §", "NOTES" + r"\.md", "STYLE" + r"\.md", r"\.\./" + "shared/"]
    outside = re.compile("|".join(pieces))
    cited = 0
    for name in tracked.stdout.split():
        path = REPO / name
        if path.suffix not in {".py", ".md", ".toml", ".yaml", ".yml", ".html"} or not path.is_file():
            continue
        text = path.read_text()
        assert not outside.search(text), name
        for found in re.findall(r"architecture\.md §(\d+(?:, §\d+)*)", text):
            numbers = re.findall(r"\d+", found)
            assert set(numbers) <= sections, f"{name} cites docs/architecture.md §{found}"
            cited += 1
    assert cited >= 10
