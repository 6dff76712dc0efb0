"""A small webhook receiver for demos and local development (``hookline receiver``).

It checks both signatures of every request — the systeme.io hex HMAC and the Standard Webhooks
``v1`` signature — with its own few lines of HMAC, prints one line per delivery, and answers 200
(or fails on purpose, to show retries).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

from aiohttp import web

from hookline.signing import hmac_key

__all__ = ["Receiver", "Verdict", "verify"]


@dataclass(frozen=True)
class Verdict:
    systeme_ok: bool
    standard_ok: bool
    fresh: bool

    @property
    def ok(self) -> bool:
        return self.systeme_ok and self.standard_ok and self.fresh


def verify(
    secret: str, headers: dict[str, str], body: bytes, now: float, tolerance: float = 300.0
) -> Verdict:
    """Check both signatures of one request (headers with lower-case names)."""
    key = hmac_key(secret)
    expected_hex = hmac.new(key, body, hashlib.sha256).hexdigest()
    systeme_ok = hmac.compare_digest(expected_hex, headers.get("x-webhook-signature", ""))
    msg_id = headers.get("webhook-id", "")
    ts = headers.get("webhook-timestamp", "")
    signed = f"{msg_id}.{ts}.".encode() + body
    expected_v1 = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    given = [s.split(",", 1)[1] for s in headers.get("webhook-signature", "").split() if s.startswith("v1,")]
    standard_ok = any(hmac.compare_digest(expected_v1, g) for g in given)
    try:
        fresh = abs(now - int(ts)) <= tolerance
    except ValueError:
        fresh = False
    return Verdict(systeme_ok, standard_ok, fresh)


@dataclass
class Receiver:
    secret: str
    fail_rate: float = 0.0
    out: TextIO = sys.stdout
    seen: set[str] = field(default_factory=set)
    verified: int = 0
    rejected: int = 0
    rng: random.Random = field(default_factory=random.Random)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        verdict = verify(self.secret, headers, body, time.time())
        msg_id = headers.get("webhook-id", "?")
        event = headers.get("x-webhook-event", "?")
        if not verdict.ok:
            self.rejected += 1
            why = ", ".join(
                n
                for n, ok in (
                    ("X-Webhook-Signature", verdict.systeme_ok),
                    ("webhook-signature", verdict.standard_ok),
                    ("webhook-timestamp", verdict.fresh),
                )
                if not ok
            )
            print(f"REJECTED {event:20} {msg_id} bad {why}", file=self.out, flush=True)
            return web.json_response({"error": f"invalid {why}"}, status=401)
        if self.fail_rate and self.rng.random() < self.fail_rate:
            print(f"FAILING  {event:20} {msg_id} (answering 503 on purpose)", file=self.out, flush=True)
            return web.json_response({"error": "try again"}, status=503)
        duplicate = msg_id in self.seen
        self.seen.add(msg_id)
        self.verified += 1
        print(
            f"VERIFIED {event:20} {msg_id} {len(body)} bytes, both signatures valid"
            + (" (duplicate)" if duplicate else ""),
            file=self.out,
            flush=True,
        )
        return web.json_response({"received": True})

    def app(self) -> web.Application:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post("/{tail:.*}", self.handle)
        return app
