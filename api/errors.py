"""The API's error shape, ``{"error": {"code", "message"}}``, and the handlers that enforce it.

Hierarchy::

    ApiError                    an answer with an HTTP status and a machine-readable code
    ├── InvalidRequest          the request itself is wrong (4xx); raised by validation
    └── Unavailable             the platform cannot serve it right now (503)

Every other exception becomes a generic 500 whose log line names the exception type and the
traceback but not the exception's message, which could quote request data.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "ApiError",
    "CatchAllMiddleware",
    "InvalidRequest",
    "TooManyAuthFailures",
    "Unavailable",
    "error_response",
    "install_error_handlers",
]

log = logging.getLogger("hookline.api")


class ApiError(Exception):
    """An answer with ``status`` and a stable machine-readable ``code``."""

    status = 400

    def __init__(self, code: str, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        if status is not None:
            self.status = status

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, status={self.status})"


class InvalidRequest(ApiError):
    """The request is wrong: a field, the body, a parameter. 422 unless said otherwise."""

    status = 422


class Unavailable(ApiError):
    """The platform cannot serve the request now (view not ready, broker not answering)."""

    status = 503

    def __init__(self, message: str) -> None:
        super().__init__("unavailable", message)


class TooManyAuthFailures(ApiError):
    """The client's address failed authentication too often; it may retry after ``retry_after`` s."""

    status = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            "too_many_auth_failures",
            f"too many requests with a wrong API key from your address; try again in {retry_after} s",
        )
        self.retry_after = retry_after


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "body_too_large",
    415: "unsupported_media_type",
}


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    headers = {"WWW-Authenticate": 'Bearer realm="hookline"'} if exc.status == 401 else None
    if isinstance(exc, Unavailable):
        headers = {"Retry-After": "1"}
    if isinstance(exc, TooManyAuthFailures):
        headers = {"Retry-After": str(exc.retry_after)}
    return error_response(exc.status, exc.code, exc.message, headers)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _STATUS_CODES.get(exc.status_code, "http_error")
    message = {404: "no such resource", 405: "method not allowed for this resource"}.get(
        exc.status_code, "the request cannot be served"
    )
    headers = dict(exc.headers) if exc.headers else None
    return error_response(exc.status_code, code, message, headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    # Only path and query parameters reach FastAPI's own validation (bodies are parsed by us);
    # name the parameter but never echo its value.
    assert isinstance(exc, RequestValidationError)
    where = "request"
    errors: Any = exc.errors()
    if errors:
        loc = errors[0].get("loc", ())
        where = ".".join(str(p) for p in loc) or where
    return error_response(422, "invalid_type", f"{where} has the wrong type or format")


def install_error_handlers(app: FastAPI) -> None:
    """Replace FastAPI's default error bodies with ours."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)


class CatchAllMiddleware:
    """Turn any unhandled exception into a generic JSON 500, logged without its message.

    Starlette's own 500 handler re-raises after answering, which makes the server log the
    exception text; this middleware sits inside it and ends the exception here.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            route = getattr(scope.get("route"), "path", "unmatched")
            tb = "".join(traceback.format_tb(exc.__traceback__))
            log.error(
                "unhandled %s in %s %s\n%sTraceback ends; message withheld (it may quote request data)",
                type(exc).__name__,
                scope.get("method", "?"),
                route,
                tb,
            )
            if not started:
                response = error_response(500, "internal_error", "internal error; it has been logged")
                await response(scope, receive, send)
