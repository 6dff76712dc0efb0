"""Ports for local servers: below the kernel's ephemeral range (docs/architecture.md §9, pitfall 16)."""

from __future__ import annotations

import socket

import pytest

from hookline.local import ports


def test_a_block_is_free_below_the_ephemeral_range_and_never_handed_out_twice() -> None:
    low = ports._ephemeral_low()
    seen: set[int] = set()
    for _ in range(50):
        base = ports.free_port_block(4)
        block = set(range(base, base + 4))
        assert base >= 10000 and base + 4 <= low, (base, low)
        assert not seen & block, "a port handed out twice"
        seen |= block
        socks = [socket.socket() for _ in block]
        try:
            for s, port in zip(socks, sorted(block), strict=True):
                s.bind(("127.0.0.1", port))  # free right now
        finally:
            for s in socks:
                s.close()
    assert ports.free_port() not in seen


def test_no_free_block_left_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # Room for one block of two below the range (base 10000), and that one already handed out.
    monkeypatch.setattr(ports, "_ephemeral_low", lambda: 10003)
    monkeypatch.setattr(ports, "_handed_out", {10000, 10001})
    with pytest.raises(RuntimeError, match="no block of 2 free ports found below 10003"):
        ports.free_port_block(2, attempts=20)
