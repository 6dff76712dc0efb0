"""Which offset of a partition may be stored: the first one whose task is not finished yet.

Tasks of one partition finish out of order (a slow receiver next to a fast one). The offset to
store is the lowest offset still pending — or, when nothing is pending, one past the highest
offset seen — so a restart re-reads every task that had not finished (at least once, docs/architecture.md §6).
"""

from __future__ import annotations

from collections import deque

__all__ = ["PartitionOffsets"]


class PartitionOffsets:
    """Track the tasks of one assigned partition from the first offset read after assignment.

    A new instance is made on every assignment; after a revocation :attr:`revoked` is set and
    completions of that generation no longer count.
    """

    __slots__ = ("_done", "_order", "committable", "next_offset", "revoked", "stored")

    def __init__(self) -> None:
        self._order: deque[int] = deque()  # started offsets, ascending
        self._done: dict[int, bool] = {}  # started offset -> finished
        #: The offset to store (the next record to process after a restart); None before the first record.
        self.committable: int | None = None
        #: The offset the next new record must have at least; lower ones were seen already.
        self.next_offset: int | None = None
        #: The last offset handed to the consumer's offset store.
        self.stored: int | None = None
        self.revoked = False

    def __len__(self) -> int:
        """Tasks started and not finished."""
        return len(self._done)

    def is_new(self, offset: int) -> bool:
        """False for a record seen before (a re-fetch after pause or rebalance): drop it."""
        return self.next_offset is None or offset >= self.next_offset

    def start(self, offset: int) -> None:
        """Record that the task at ``offset`` was read and will be processed."""
        if not self.is_new(offset):
            raise ValueError(f"offset {offset} was already started (next is {self.next_offset})")
        self._order.append(offset)
        self._done[offset] = False
        self.next_offset = offset + 1
        if self.committable is None:
            self.committable = offset

    def finish(self, offset: int) -> bool:
        """Record that the task at ``offset`` is done; return True when :attr:`committable` moved."""
        if offset not in self._done:
            raise ValueError(f"offset {offset} was not started")
        self._done[offset] = True
        moved = False
        while self._order and self._done[self._order[0]]:
            head = self._order.popleft()
            del self._done[head]
            self.committable = head + 1
            moved = True
        if moved and self._order:
            self.committable = self._order[0]
        return moved

    def to_store(self) -> int | None:
        """The offset to hand to the offset store now, or None when that was done already."""
        if self.committable is None or self.committable == self.stored:
            return None
        return self.committable
