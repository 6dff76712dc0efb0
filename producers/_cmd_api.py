"""``hookline api``: the management API on ``HOOKLINE_API_HOST:HOOKLINE_API_PORT``."""

from __future__ import annotations

import argparse
import sys

from hookline.settings import Settings


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="interface to listen on (default: HOOKLINE_API_HOST)")
    p.add_argument("--port", type=int, help="port to listen on (default: HOOKLINE_API_PORT)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    import logging

    import uvicorn

    from hookline.logs import setup_logging
    from hookline.sealing import SealingError
    from hookline.settings import SettingsError
    from producers.api import create_app

    setup_logging(settings, role="api")
    # Our middleware writes the access log (route template, no query string); uvicorn's own
    # access log would print full paths with query strings, and httpx logs full URLs.
    for name in ("uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        app = create_app(settings)
    except (SealingError, SettingsError) as exc:
        print(f"hookline api: {exc}", file=sys.stderr)
        return 2
    host = args.host or settings.api_host
    port = args.port if args.port is not None else settings.api_port
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,  # keep the redacting handler installed above
        access_log=False,
        server_header=False,
        proxy_headers=False,
        lifespan="on",
    )
    uvicorn.Server(config).run()
    return 0
