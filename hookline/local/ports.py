"""Free loopback ports for servers started locally: the test suite's, the benchmarks', the manifest check's.

Not OS-chosen ports (``bind(0)``): those come from the kernel's ephemeral range, the source ports of
outgoing connections, and between choosing a port and a server binding it another process's outgoing
connection (a broker's, a client's, another test's) can take it as its source. The server then finds
its port taken (docs/architecture.md §9, pitfall 16). Ports below that range are taken only by servers
that ask for them.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

__all__ = ["free_port", "free_port_block"]

_handed_out: set[int] = set()


def _ephemeral_low() -> int:
    """The lowest port of the kernel's ephemeral range (the source ports of outgoing connections)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port_block(count: int, attempts: int = 500) -> int:
    """A port p such that p .. p + count - 1 are all free on 127.0.0.1 right now, below the kernel's
    ephemeral range, and none handed out before by this process."""
    low = _ephemeral_low()
    rng = random.Random()
    for _ in range(attempts):
        base = rng.randrange(10000, low - count)
        ports = range(base, base + count)
        if _handed_out.intersection(ports):
            continue
        socks = []
        try:
            for port in ports:
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        _handed_out.update(ports)
        return base
    raise RuntimeError(f"no block of {count} free ports found below {low}")


def free_port() -> int:
    """A port free on 127.0.0.1 now, outside the ephemeral range (:func:`free_port_block`)."""
    return free_port_block(1)
