"""``hookline receiver``: a demo receiver that verifies both signatures and prints each delivery."""

from __future__ import annotations

import argparse
import os
import sys

from hookline.settings import Settings


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8001)
    p.add_argument("--secret", help="webhook secret (default: $HOOKLINE_RECEIVER_SECRET)")
    p.add_argument("--fail-rate", type=float, default=0.0, help="answer 503 to this share of requests")


def run(args: argparse.Namespace, settings: Settings) -> int:
    del settings
    from aiohttp import web

    from hookline.local.receiver import Receiver
    from hookline.signing import SecretError, hmac_key

    secret = args.secret or os.environ.get("HOOKLINE_RECEIVER_SECRET", "")
    if not secret:
        print(
            "hookline receiver: give the webhook's secret with --secret or HOOKLINE_RECEIVER_SECRET",
            file=sys.stderr,
        )
        return 2
    try:
        hmac_key(secret)  # the rule the API and the worker apply, checked once here
    except SecretError as exc:
        print(f"hookline receiver: the secret is not usable: {exc}", file=sys.stderr)
        return 2
    receiver = Receiver(secret, fail_rate=args.fail_rate)
    print(f"receiver listening on http://{args.host}:{args.port}/", flush=True)
    web.run_app(receiver.app(), host=args.host, port=args.port, print=None, access_log=None)
    return 0
