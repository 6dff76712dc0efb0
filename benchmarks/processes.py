"""Child processes of a benchmark: started in their own session, measured from ``/proc``, always reaped.

Every process the bench starts is registered here; :func:`stop_all` ends them (SIGTERM, then SIGKILL)
and runs at interpreter exit and on SIGINT/SIGTERM, so an interrupted bench leaves nothing behind.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "Child",
    "CpuSample",
    "ThreadSample",
    "cpu_seconds",
    "http_get",
    "install_cleanup",
    "raise_nofile",
    "rss_bytes",
    "stop_all",
    "thread_cpu_seconds",
    "wait_for",
    "wakeup_round_trip_us",
]

REPO = Path(__file__).resolve().parent.parent
_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")
_CHILDREN: list[Child] = []


def _stat(path: str) -> tuple[str, float] | None:
    """The command name and user + system CPU seconds in a ``/proc`` stat file; None when it is gone."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError:
        return None
    name, _, rest = raw.partition(b"(")[2].rpartition(b")")
    fields = rest.split()
    # After the command name: state is field 3; utime and stime are fields 14 and 15 (1-based).
    return name.decode(errors="replace"), (int(fields[11]) + int(fields[12])) / _TICKS


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` (its threads included), or None when it is gone."""
    stat = _stat(f"/proc/{pid}/stat")
    return stat[1] if stat is not None else None


def thread_cpu_seconds(pid: int) -> dict[int, tuple[str, float]] | None:
    """User + system CPU seconds of each live thread of ``pid``: tid -> (kind, seconds).

    The kind is the thread's name with its digits replaced by ``*`` (the kernel keeps 15
    characters), so the broker's ``data-plane-kafk`` threads, a JVM's ``C2 CompilerThre``, librdkafka's
    ``rdk:broker1``/``rdk:main`` and Python's own threads (all named ``python``: Python 3.11 names no
    thread for the kernel) add up per kind. None when the process is gone.
    """
    out: dict[int, tuple[str, float]] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tids:
        stat = _stat(f"/proc/{pid}/task/{tid}/stat")
        if stat is not None:  # None: the thread ended meanwhile
            out[int(tid)] = (re.sub(r"\d+", "*", stat[0]), stat[1])
    return out


@dataclass
class ThreadSample:
    """Per-thread CPU seconds of named processes at one moment (:func:`thread_cpu_seconds`)."""

    seconds: dict[str, dict[int, tuple[str, float]] | None]

    @classmethod
    def take(cls, pids: dict[str, int | None]) -> ThreadSample:
        return cls({n: thread_cpu_seconds(p) if p else None for n, p in pids.items()})

    def since(self, earlier: ThreadSample) -> dict[str, dict[str, float]]:
        """CPU seconds per process and thread kind between ``earlier`` and this sample.

        A thread that ended in between is missing (its CPU is in the process's total only); one
        that started counts from zero.
        """
        out: dict[str, dict[str, float]] = {}
        for name, now in self.seconds.items():
            before = earlier.seconds.get(name)
            if now is None or before is None:
                continue
            kinds: dict[str, float] = {}
            for tid, (kind, secs) in now.items():
                spent = secs - before.get(tid, (kind, 0.0))[1]
                if spent > 0:
                    kinds[kind] = kinds.get(kind, 0.0) + spent
            out[name] = {k: round(v, 3) for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])}
        return out


def wakeup_round_trip_us(rounds: int = 20_000) -> float:
    """CPU µs one thread-to-thread round trip costs here: a byte over a socketpair and back.

    Every hop of the pipeline wakes threads (an event loop woken by a Kafka client's thread, a
    broker's network thread handing a request to a handler), and what a wake-up costs differs
    between machines and with their load, so the bench reports it beside its CPU figures.
    """
    a, b = socket.socketpair()
    with a, b:

        def echo() -> None:
            for _ in range(rounds):
                b.recv(1)
                b.sendall(b"x")

        t = threading.Thread(target=echo, name="wakeup-echo", daemon=True)
        t.start()
        started = time.process_time()
        for _ in range(rounds):
            a.sendall(b"x")
            a.recv(1)
        spent = time.process_time() - started
        t.join()
    return round(spent / rounds * 1e6, 1)


def rss_bytes(pid: int) -> int | None:
    """Resident set size of ``pid`` in bytes, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        return None


@dataclass
class CpuSample:
    """CPU seconds of named processes at one moment; subtract two samples to get a run's share."""

    at: float
    seconds: dict[str, float | None]

    @classmethod
    def take(cls, pids: dict[str, int | None]) -> CpuSample:
        return cls(time.monotonic(), {n: cpu_seconds(p) if p else None for n, p in pids.items()})

    def since(self, earlier: CpuSample) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for name, now in self.seconds.items():
            before = earlier.seconds.get(name)
            out[name] = round(now - before, 3) if now is not None and before is not None else None
        return out


def raise_nofile() -> None:
    """Raise this process's descriptor limit to the hard limit (children inherit it)."""
    # Thousands of held connections need thousands of descriptors: take the hard limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Child:
    """One child process with its own session and log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        log_path: Path,
        stdout_pipe: bool = False,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = env
        self.log_path = log_path
        self.stdout_pipe = stdout_pipe
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def python(cls, name: str, module: str, args: Sequence[str], **kwargs: Any) -> Child:
        return cls(name, [sys.executable, "-m", module, *args], **kwargs)

    def start(self) -> Child:
        full_env = {**os.environ, **(self.env or {})}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                env=full_env,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if self.stdout_pipe else log,
                stderr=log,
                start_new_session=True,
            )
        _CHILDREN.append(self)
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with code {self.proc.returncode}:\n{self.log_tail()}")

    def readline(self, timeout: float) -> str:
        """The next line the child writes on stdout (``stdout_pipe=True``), within ``timeout``."""
        assert self.proc is not None and self.proc.stdout is not None
        import select

        deadline = time.monotonic() + timeout
        fd = self.proc.stdout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                line = fd.readline()
                if not line:
                    break
                return line.decode().strip()
            self.check_alive()
        self.check_alive()
        raise TimeoutError(f"{self.name} wrote nothing within {timeout:g}s:\n{self.log_tail()}")

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise TimeoutError(
                f"{self.name} did not finish within {timeout:g}s:\n{self.log_tail()}"
            ) from None

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM the child's process group, SIGKILL after ``timeout``; return its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        with contextlib.suppress(ValueError):
            _CHILDREN.remove(self)
        return self.proc.returncode

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


_extra_cleanups: list[Callable[[], None]] = []


def stop_all() -> None:
    """Stop every child still running, newest first, then run the registered cleanups."""
    for child in reversed(list(_CHILDREN)):
        with contextlib.suppress(Exception):
            child.stop(timeout=10.0)
    while _extra_cleanups:
        with contextlib.suppress(Exception):
            _extra_cleanups.pop()()


def install_cleanup(extra: Callable[[], None] | None = None) -> None:
    """Stop all children at exit and on SIGTERM (SIGINT raises KeyboardInterrupt, which unwinds)."""
    if extra is not None:
        _extra_cleanups.append(extra)
    atexit.register(stop_all)

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)


def http_get(url: str, timeout: float = 5.0, data: bytes | None = None) -> tuple[int, bytes]:
    """GET (or POST ``data`` to) ``url``; (0, b"") when nothing answers."""
    try:
        with urllib.request.urlopen(url, data=data, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy; raise TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)
