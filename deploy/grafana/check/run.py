"""`make grafana-check`: the dashboards of deploy/grafana against Grafana's published dashboard schema.

The checker is main.go beside this file: the dashboard schema of github.com/grafana/grafana-foundation-sdk
(Grafana's own, as generated Go types) decoding each dashboard strictly, each panel's options with its
plugin's types, plus a few rules of ours (main.go lists them). This script builds it into
.hookline/bin/grafana-check with ``go build`` from the Go module proxy (about 40 s cold on 2 cores; skipped
while go.mod, go.sum, main.go and the Go version are unchanged), then runs it over deploy/grafana/*.json.

    .venv/bin/python deploy/grafana/check/run.py           # build if needed, check the dashboards
    .venv/bin/python deploy/grafana/check/run.py build     # only build (.ci/run, before the tests)

tests/deploy/test_grafana_schema.py imports :func:`checker` and :func:`check`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
BIN = REPO / ".hookline" / "bin"
CHECKER = BIN / "grafana-check"
STAMP = BIN / "grafana-check.stamp"
SOURCES = ("go.mod", "go.sum", "main.go")
DASHBOARDS = sorted(HERE.parent.glob("*.json"))


class Missing(Exception):
    """Go is not installed (the message says where .ci/run expects it)."""


def say(message: str) -> None:
    print(f"[grafana-check] {message}", file=sys.stderr, flush=True)


def _go() -> str:
    found = shutil.which("go") or "/usr/local/go/bin/go"
    if not os.access(found, os.X_OK):
        raise Missing("`go` is not installed (Go 1.24 or newer; .ci/run expects it in /usr/local/go)")
    return found


def _stamp(go: str) -> str:
    digest = hashlib.sha256()
    for name in SOURCES:
        digest.update((HERE / name).read_bytes())
    version = subprocess.run([go, "version"], capture_output=True, text=True, check=True, timeout=60)
    digest.update(version.stdout.encode())
    return digest.hexdigest()


def checker() -> Path:
    """The checker binary, built first unless it is there and current."""
    go = _go()
    want = _stamp(go)
    if CHECKER.is_file() and STAMP.is_file() and STAMP.read_text() == want:
        return CHECKER
    BIN.mkdir(parents=True, exist_ok=True)
    STAMP.unlink(missing_ok=True)
    say("building the dashboard checker (about 40 s the first time on 2 cores)")
    started = time.monotonic()
    env = {**os.environ, "GOFLAGS": "-mod=readonly -buildvcs=false"}
    cmd = [go, "build", "-trimpath", "-o", str(CHECKER), "."]
    out = subprocess.run(cmd, cwd=HERE, env=env, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"go build of {HERE} failed ({out.returncode}):\n{out.stderr[-4000:]}")
    STAMP.write_text(want)
    say(f"built {CHECKER.relative_to(REPO)} in {time.monotonic() - started:.0f} s")
    return CHECKER


def check(paths: Iterable[Path]) -> subprocess.CompletedProcess[str]:
    """Run the checker over ``paths``: exit status 0 and one ``ok`` line a file when all pass."""
    return subprocess.run(
        [str(checker()), *map(str, paths)], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )


def main(argv: list[str]) -> int:
    if argv not in ([], ["build"]):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        if argv == ["build"]:
            checker()
            return 0
        result = check(p.relative_to(REPO) for p in DASHBOARDS)
    except Missing as exc:
        say(str(exc))
        return 2
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
