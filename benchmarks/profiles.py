"""Where a role spends its CPU: py-spy samples of a running process, summarised (pure summary).

py-spy (``pip install py-spy``) attaches to a pid without any hook in the role; samples are
collapsed stacks (``frame;frame;... count``) aggregated by function. The summary lists the
functions with the most samples on top of the stack (self) and anywhere on it (inclusive), and
the share of self samples per area (hookline code, httpx, aiohttp, asyncio, logging, Kafka
clients, ...), which is usually what says what limits a role.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from benchmarks.processes import REPO

__all__ = ["PySpy", "py_spy", "summarize"]

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")

_AREAS: tuple[tuple[str, str], ...] = (
    ("/processors/", "hookline processors"),
    ("/hookline/", "hookline kernel"),
    ("/schemas/", "hookline codec"),
    ("/httpx_aiohttp/", "httpx-aiohttp"),
    ("/httpx/", "httpx"),
    ("/httpcore/", "httpcore"),
    ("/aiohttp/", "aiohttp"),
    ("/yarl/", "yarl/multidict"),
    ("/multidict/", "yarl/multidict"),
    ("/asyncio/", "asyncio"),
    ("/logging/", "logging"),
    ("/confluent_kafka/", "confluent-kafka"),
    ("/aiokafka/", "aiokafka"),
    ("/faust/", "faust"),
    ("/mode/", "faust (mode)"),
    ("/fastavro/", "fastavro"),
    ("/prometheus_client/", "prometheus-client"),
    ("/json/", "json"),
    ("/re/", "re"),
    ("/ssl.py", "ssl"),
    ("/hmac.py", "hmac"),
    ("/uuid.py", "uuid"),
    ("/ipaddress.py", "ipaddress"),
    ("/threading.py", "threading"),
    ("/concurrent/", "threading"),
)


def py_spy() -> str | None:
    """The py-spy executable next to this interpreter or on PATH, if any."""
    local = Path(sys.executable).parent / "py-spy"
    if local.exists():
        return str(local)
    return shutil.which("py-spy")


class PySpy:
    """``py-spy record`` of one pid for ``seconds``, collapsed stacks into ``out``."""

    def __init__(self, pid: int, seconds: float, out: Path, rate: int = 100) -> None:
        exe = py_spy()
        if exe is None:
            raise RuntimeError("py-spy is not installed (pip install py-spy)")
        self.out = out
        self.proc = subprocess.Popen(
            [
                exe,
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(max(1, int(seconds))),
                "--rate",
                str(rate),
                "--nonblocking",
                "--function",
                "--format",
                "raw",
                "--output",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def wait(self, timeout: float) -> str:
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err.decode(errors="replace")


def _area(file: str) -> str:
    file = "/" + file.lstrip(
        "/"
    )  # py-spy shortens paths (``httpx/_models.py``); absolute ones stay as they are
    for needle, name in _AREAS:
        if needle in file:
            return name
    if "site-packages" in file:
        return file.split("site-packages/")[1].split("/")[0]
    if "/lib/python3" in file:
        return "stdlib (other)"
    return "other"


def summarize(raw: str, title: str, top: int = 25) -> tuple[str, dict[str, float]]:
    """A text report of collapsed stacks, and the self share per area (0..1)."""
    self_counts: Counter[str] = Counter()
    incl_counts: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        names = []
        for frame in frames:
            m = _FRAME.match(frame)
            names.append((m.group("func"), m.group("file")) if m else (frame, ""))
        func, file = names[-1]
        self_counts[f"{func} ({_short(file)})"] += count
        areas[_area(file)] += count
        for name in {f"{f} ({_short(p)})" for f, p in names}:
            incl_counts[name] += count
    if not total:
        return f"# {title}\n\nno samples\n", {}
    lines = [f"# {title}", "", f"{total} samples (py-spy, active threads, by function)", ""]
    lines += ["## self time by area", ""]
    shares = {a: c / total for a, c in areas.most_common()}
    lines += [f"{share * 100:6.1f} %  {area}" for area, share in shares.items()]
    lines += ["", "## top functions, self", ""]
    lines += [f"{c / total * 100:6.1f} %  {name}" for name, c in self_counts.most_common(top)]
    lines += ["", "## top functions, inclusive", ""]
    lines += [f"{c / total * 100:6.1f} %  {name}" for name, c in incl_counts.most_common(top)]
    return "\n".join(lines) + "\n", shares


def _short(path: str) -> str:
    for marker in ("site-packages/", "/lib/python3.11/", f"{REPO}/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path
