"""``hookline produce``: publish realistic sample events of all six kinds."""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from typing import TYPE_CHECKING, TextIO

from hookline.settings import Settings
from producers.events import EventType

if TYPE_CHECKING:
    from producers.publisher import EventPublisher

__all__ = ["add_arguments", "run"]


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {text}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--count", type=_positive_int, default=1000, help="events to publish (default 1000)")
    p.add_argument(
        "--rate",
        type=_non_negative_float,
        default=0.0,
        help="events per second (default 0: unpaced)",
    )
    who = p.add_mutually_exclusive_group()
    who.add_argument(
        "--accounts", type=_positive_int, metavar="N", help="spread over N random accounts (default 10)"
    )
    who.add_argument(
        "--account",
        action="extend",
        nargs="+",
        metavar="ID",
        help="these account ids (repeatable)",
    )
    p.add_argument(
        "--events",
        action="extend",
        nargs="+",
        type=str.upper,
        choices=[t.value for t in EventType],
        metavar="TYPE",
        help="only these event types (default: all six)",
    )
    p.add_argument("--seed", type=int, help="seed for reproducible content")
    p.add_argument(
        "--timeout",
        type=_non_negative_float,
        default=30.0,
        help="seconds an event may wait for the broker before it counts as failed (default 30)",
    )
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bar (default: shown on a terminal)"
    )


class _Progress:
    """A one-line bar on a terminal, redrawn at most ten times a second."""

    WIDTH = 30

    def __init__(self, total: int, stream: TextIO, enabled: bool) -> None:
        self.total, self.stream, self.enabled = total, stream, enabled
        self.start = time.monotonic()
        self._last = 0.0

    def update(self, done: int, failed: int, *, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self._last < 0.1):
            return
        self._last = now
        frac = min(1.0, done / self.total) if self.total else 1.0
        filled = int(frac * self.WIDTH)
        rate = done / max(now - self.start, 1e-9)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        fail = f"  {failed} failed" if failed else ""
        self.stream.write(f"\r[{bar}] {done}/{self.total} {frac:4.0%}  {rate:,.0f} ev/s{fail}  ")
        self.stream.flush()

    def finish(self, done: int, failed: int) -> None:
        if self.enabled:
            self.update(done, failed, force=True)
            self.stream.write("\n")
            self.stream.flush()


def run(args: argparse.Namespace, settings: Settings) -> int:
    from hookline.clients import BrokerUnavailable, admin_client, wait_for_broker
    from producers.publisher import EventPublisher, PublishError
    from producers.samples import SampleGenerator

    kinds = [EventType(k) for k in args.events] if args.events else list(EventType)
    try:
        wait_for_broker(settings, timeout=max(1.0, min(10.0, args.timeout)))
    except BrokerUnavailable as exc:
        print(f"hookline produce: {exc}. Start one with `hookline kafka start`.", file=sys.stderr)
        return 1
    topics = {settings.topic(k.topic) for k in kinds}
    missing = sorted(topics - set(admin_client(settings).list_topics(timeout=10).topics))
    if missing:
        print(
            f"hookline produce: missing topic(s) {', '.join(missing)}; "
            "create them with `hookline topics create`.",
            file=sys.stderr,
        )
        return 1

    gen = SampleGenerator(seed=args.seed, accounts=args.account or args.accounts or 10, kinds=kinds)
    progress = _Progress(args.count, sys.stderr, enabled=not args.no_progress and sys.stderr.isatty())
    by_type: Counter[EventType] = Counter()
    errors: list[str] = []
    interrupted = False
    publisher = EventPublisher(settings, delivery_timeout=max(0.1, args.timeout))
    start = time.monotonic()
    try:
        for i in range(args.count):
            if args.rate:
                _pace(publisher, progress, start + i / args.rate)
            event = next(gen)
            publisher.publish(event)
            by_type[event.type] += 1
            progress.update(publisher.delivered, publisher.failed)
    except KeyboardInterrupt:
        interrupted = True
    except PublishError as exc:  # the producer cannot take more (fatal error, queue stuck)
        errors.append(str(exc))
    try:
        publisher.close(timeout=5.0 if interrupted else None)
    except PublishError as exc:
        errors.append(str(exc))
    elapsed = time.monotonic() - start
    progress.finish(publisher.delivered, publisher.failed)

    sent = sum(by_type.values())
    print(
        f"published {sent} events in {elapsed:.2f} s ({sent / max(elapsed, 1e-9):,.0f} events/s): "
        f"{publisher.delivered} delivered, {publisher.failed} failed"
        + (f", {sent - publisher.delivered - publisher.failed} unconfirmed" if interrupted else "")
    )
    print("  " + ", ".join(f"{t.value} {by_type[t]}" for t in EventType if by_type[t]))
    for err in errors:
        print(f"hookline produce: {err}", file=sys.stderr)
    if interrupted:
        return 130
    return 1 if errors or publisher.failed or publisher.delivered != sent else 0


def _pace(publisher: EventPublisher, progress: _Progress, due: float) -> None:
    """Serve delivery reports (and the bar) until ``due``, instead of sleeping blind."""
    while (left := due - time.monotonic()) > 0:
        publisher.poll(min(left, 0.1))
        progress.update(publisher.delivered, publisher.failed)
