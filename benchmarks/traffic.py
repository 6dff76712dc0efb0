"""What the bench sends: ~1 KiB domain events stamped with their scheduled time, and webhook secrets.

Every event carries a *mark* ``run|seq|t0`` in a contact field (slug ``bench_t0``): the run it
belongs to, its sequence number and its scheduled publish time t0 (epoch seconds, microseconds).
The router copies the contact into the JSON body it builds, so the sink reads the mark from the
body it receives and computes event-to-delivery latency as t3 - t0 without any side channel.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

__all__ = [
    "MARK_SLUG",
    "body_template",
    "contact_ids",
    "event_record",
    "find_mark",
    "format_mark",
    "webhook_secret",
]

MARK_SLUG = "bench_t0"
_MARK_NEEDLE = b'"slug":"bench_t0","value":"'
_REGISTERED_AT = 1_700_000_000_000


def format_mark(run: str, seq: int, t0: float) -> str:
    return f"{run}|{seq}|{t0:.6f}"


def find_mark(body: bytes) -> bytes | None:
    """The raw ``run|seq|t0`` mark inside a delivered JSON body, or None."""
    i = body.find(_MARK_NEEDLE)
    if i < 0:
        return None
    start = i + len(_MARK_NEEDLE)
    end = body.find(b'"', start)
    return body[start:end] if end > 0 else None


def webhook_secret(seed: str, webhook_id: str) -> str:
    """The secret of ``webhook_id`` in a bench run: a ``whsec_`` secret derived from the run's seed."""
    raw = hmac.new(seed.encode(), webhook_id.encode(), hashlib.sha256).digest()[:24]
    return "whsec_" + base64.b64encode(raw).decode()


@cache
def _template() -> dict[str, Any]:
    # Built once through the producers' constructors, so every bench event is a valid domain event.
    from producers.events import Contact, ContactField, Tag, contact_created

    fields = [ContactField(f"Custom field {i}", f"custom_{i}", "v" * 40) for i in range(6)]
    fields.append(ContactField("Bench mark", MARK_SLUG, format_mark("template", 0, 0.0)))
    contact = Contact(
        id=1,
        email="ada.lovelace@example.com",
        registered_at=_REGISTERED_AT,
        locale="en",
        source_url="https://example.com/landing/spring-offer",
        fields=fields,
        tags=[Tag(i + 1, f"segment-{i + 1}") for i in range(6)],
    )
    return contact_created("acct-template", contact, occurred_at=_REGISTERED_AT, source="bench").to_avro()


def contact_ids(accounts: Sequence[str], contacts: int) -> Callable[[int], int]:
    """The contact id of event ``seq`` when each account's events go to ``contacts`` contacts in turn.

    The generator takes ``accounts`` in turn (an account may stand in the list more than once, for a
    larger share of the events); the k-th event of an account is about contact ``k % contacts + 1``,
    so an ordered webhook's lanes (docs/architecture.md §6, *Ordered delivery*) each get every
    ``contacts``-th of its messages.
    """
    n = len(accounts)
    per_cycle = Counter(accounts)
    seen: Counter[str] = Counter()
    rank = []
    for account in accounts:
        rank.append(seen[account])
        seen[account] += 1
    shares = [per_cycle[a] for a in accounts]

    def of(seq: int) -> int:
        cycle, i = divmod(seq, n)
        return (cycle * shares[i] + rank[i]) % contacts + 1

    return of


def event_record(
    account_id: str, run: str, seq: int, t0: float, contact_id: int | None = None
) -> dict[str, Any]:
    """The Event record (``schemas/Event.avsc``) of bench event ``seq`` of ``run``, scheduled at ``t0``,
    about contact ``contact_id`` (default ``seq + 1``: every event a contact of its own)."""
    base = _template()
    contact = dict(base["payload"]["contact"])
    fields = list(contact["fields"])
    fields[-1] = {"fieldName": "Bench mark", "slug": MARK_SLUG, "value": format_mark(run, seq, t0)}
    contact["fields"] = fields
    contact["id"] = seq + 1 if contact_id is None else contact_id
    rec = dict(base)
    rec["eventId"] = str(uuid.uuid4())
    rec["accountId"] = account_id
    rec["occurredAt"] = int(t0 * 1000)
    rec["payload"] = {"contact": contact}
    return rec


def body_template() -> bytes:
    """The JSON body the router builds for a bench event (what raw baselines send, mark included)."""
    from hookline.payloads import build_payload

    rec = dict(_template())
    rec["type"] = "CONTACT_CREATED"
    return build_payload(rec)
