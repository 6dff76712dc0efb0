"""``hookline api``: the management API on ``HOOKLINE_API_HOST:HOOKLINE_API_PORT``."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from hookline.settings import Settings

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="interface to listen on (default: HOOKLINE_API_HOST)")
    p.add_argument("--port", type=int, help="port to listen on (default: HOOKLINE_API_PORT)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    import logging

    import uvicorn

    from api import create_app
    from hookline.logs import setup_logging
    from hookline.sealing import SealingError
    from hookline.settings import SettingsError

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
    uvicorn.Server(server_config(app, host, port, settings)).run()
    return 0


def server_config(app: FastAPI, host: str, port: int, settings: Settings) -> uvicorn.Config:
    """The uvicorn configuration ``hookline api`` runs with (tests run the same).

    X-Forwarded-For is believed only from ``HOOKLINE_API_TRUSTED_PROXIES``: the client address
    it yields is what failed sign-ins are counted against.
    """
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,  # keep the process's (redacting) logging setup
        access_log=False,  # ours logs route templates; uvicorn's would log paths with query strings
        server_header=False,
        proxy_headers=bool(settings.api_trusted_proxies),
        forwarded_allow_ips=list(settings.api_trusted_proxies) or None,
        lifespan="on",
        ws="none",  # no websocket endpoints
    )
