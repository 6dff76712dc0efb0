"""Composition root of the management API: settings in, a FastAPI application out.

The app owns what it creates (the config view when none is given, the producer's poll thread)
and starts and stops it with its lifespan. ``/healthz``, ``/readyz`` and ``/metrics`` sit next to
``/api`` on the same port; ``/openapi.json`` documents the API.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import ApiKeys
from api.deliveries import DeliveryLogService
from api.errors import CatchAllMiddleware, install_error_handlers
from api.pages import install_pages
from api.replays import install_replays
from api.routes import router
from api.service import ConfigReader, WebhookService
from api.tasks import TaskWriter
from api.throttle import AuthThrottle
from api.validation import UrlRules
from api.writer import ConfigWriter, ProducerPort
from hookline import __version__
from hookline.logstore import LogStore, describe_url, open_store
from hookline.metrics import ApiMetrics
from hookline.sealing import Sealer
from hookline.settings import Settings

__all__ = ["create_app"]

log = logging.getLogger("hookline.api")
access_log = logging.getLogger("hookline.api.access")

_PROBES = frozenset({"/healthz", "/readyz", "/metrics"})

DESCRIPTION = """Manage the webhooks of your account: the URL hookline POSTs signed events to,
the events that trigger it, and whether it is active. Authenticate with your API key in
`X-API-Key` (or `Authorization: Bearer <key>`). Errors are JSON,
`{"error": {"code": "...", "message": "..."}}`, with a stable code per problem."""


def create_app(
    settings: Settings,
    *,
    view: ConfigReader | None = None,
    producer: ProducerPort | None = None,
    registry: CollectorRegistry | None = None,
    store: LogStore | None = None,
) -> FastAPI:
    """Build the API. A given ``view`` must be started by the caller; one created here is owned.

    The delivery log ``store`` (a given one is the caller's to close) defaults to the one the
    settings name, opened on first use.
    """
    api_keys = ApiKeys.from_settings(settings)
    sealer = Sealer.from_settings(settings)  # fails now, with a clear message, when no key is set
    registry = registry if registry is not None else CollectorRegistry()
    metrics = ApiMetrics(registry)
    owned_view = None
    if view is None:
        from hookline.configview import ConfigView

        # Every write waits until the view has applied it, and the view's consume() waits out its
        # timeout to fill a batch: the default 0.2 s would be added to each write.
        owned_view = ConfigView(settings, client_id="hookline-api-configs")
        view = owned_view
    writer = ConfigWriter(settings, producer)
    service = WebhookService(view, writer, sealer, metrics, max_per_account=settings.max_webhooks_per_account)
    tasks = TaskWriter(settings, producer)
    if store is not None:
        deliveries = DeliveryLogService(service, tasks, metrics, store=store)
    else:
        describe_url(settings)  # a malformed HOOKLINE_DATABASE_URL fails now, not on the first read
        deliveries = DeliveryLogService(service, tasks, metrics, open_store=lambda: open_store(settings))
    reader = view
    metrics.view_ready.set_function(lambda: 1.0 if reader.ready else 0.0)
    if not len(api_keys):
        log.warning("HOOKLINE_API_KEYS is empty: every API request will be refused")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if owned_view is not None:
            owned_view.start()
        writer.start()
        log.info("management API started (%d API keys, sealing key %s)", len(api_keys), sealer.primary_key_id)
        try:
            yield
        finally:
            writer.close()
            tasks.close()
            deliveries.close()
            if owned_view is not None:
                owned_view.stop()

    app = FastAPI(
        title="hookline management API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.service = service
    app.state.deliveries = deliveries
    app.state.api_keys = api_keys
    app.state.auth_throttle = AuthThrottle(settings.api_auth_failure_limit, settings.api_auth_failure_window)
    app.state.url_rules = UrlRules(settings.allow_networks)
    app.state.recover_max = settings.recover_max
    app.state.metrics = metrics
    install_error_handlers(app)
    app.include_router(router)
    install_pages(app, settings)  # the web page: /, /signin, /settings/webhooks, /static
    install_replays(app, settings)  # POST /api/webhooks/{id}/replay, GET .../replays/{replayId}

    def healthy() -> bool:
        return getattr(reader, "error", None) is None

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        ok = healthy()
        return JSONResponse({"status": "ok" if ok else "failing"}, status_code=200 if ok else 503)

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        ok = healthy() and reader.ready
        return JSONResponse({"status": "ready" if ok else "not ready"}, status_code=200 if ok else 503)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    # Added last = outermost: observe every answer, including the catch-all's 500s.
    app.add_middleware(CatchAllMiddleware)
    app.add_middleware(_ObserveMiddleware, metrics=metrics)
    return app


class _ObserveMiddleware:
    """Count and time every request by route template; write the access log line.

    The line carries the method, the route template and the status — never the query string or
    the concrete path, which could carry tokens or arbitrary client input.
    """

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def observing_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observing_send)
        finally:
            seconds = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = str(scope.get("method", "?"))
            self.metrics.observe_request(route, method, status, seconds)
            level = logging.DEBUG if route in _PROBES else logging.INFO
            access_log.log(
                level,
                "%s %s %d %.1fms",
                method,
                route,
                status,
                seconds * 1000,
                extra={"route": route, "status": status},
            )
