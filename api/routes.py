"""HTTP endpoints of the management API (systeme.io's public API shape, docs/architecture.md §7).

Handlers stay thin: authenticate, read and validate the body, call the service, present.
Bodies are read here, not by FastAPI, so that size, media type and every error code are ours.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Security
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from api.auth import ApiKeys
from api.deliveries import (
    DeliveryDetailOut,
    DeliveryList,
    DeliveryLogService,
    ErasureOut,
    RecoverAccepted,
    RecoverRequest,
    SendAccepted,
    SendTestRequest,
    parse_recover,
    present_delivery,
    present_detail,
    present_erasure,
    present_recovered,
    present_sent,
)
from api.errors import ApiError, InvalidRequest
from api.representation import (
    ErrorBody,
    WebhookCreate,
    WebhookCreated,
    WebhookList,
    WebhookOut,
    WebhookPatch,
    present,
)
from api.service import WebhookService
from api.throttle import admit, refused
from api.validation import (
    MAX_BODY_BYTES,
    UrlRules,
    parse_create,
    parse_json_object,
    parse_limit,
    parse_patch,
)

__all__ = ["router"]

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"

_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="The account's API key.")
_bearer = HTTPBearer(auto_error=False, description="The account's API key as a bearer token.")


def _service(request: Request) -> WebhookService:
    service: WebhookService = request.app.state.service
    return service


def _deliveries(request: Request) -> DeliveryLogService:
    deliveries: DeliveryLogService = request.app.state.deliveries
    return deliveries


def _rules(request: Request) -> UrlRules:
    rules: UrlRules = request.app.state.url_rules
    return rules


async def account(
    request: Request,
    api_key: Annotated[str | None, Security(_api_key)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> str:
    """The account the request's API key belongs to; 401 otherwise."""
    keys: ApiKeys = request.app.state.api_keys
    client = admit(request)
    presented = api_key if api_key else (bearer.credentials if bearer else None)
    found = keys.account_for(presented)
    if found is None:
        refused(request, client, presented)
        raise ApiError(
            "unauthorized", "send a valid API key in X-API-Key or Authorization: Bearer", status=401
        )
    return found


Account = Annotated[str, Depends(account)]


async def _read_json(request: Request, accepted: tuple[str, ...]) -> dict[str, Any]:
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise InvalidRequest("body_too_large", f"the request body exceeds {MAX_BODY_BYTES} bytes", status=413)
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media not in accepted:
        raise InvalidRequest(
            "unsupported_media_type", f"send the body as {' or '.join(accepted)}", status=415
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:  # a chunked body has no Content-Length to check up front
            raise InvalidRequest(
                "body_too_large", f"the request body exceeds {MAX_BODY_BYTES} bytes", status=413
            )
    return parse_json_object(bytes(body))


def _body_doc(
    model: type[WebhookCreate] | type[WebhookPatch] | type[SendTestRequest] | type[RecoverRequest],
    media_types: tuple[str, ...],
    *,
    required: bool = True,
) -> dict[str, Any]:
    schema = model.model_json_schema()
    return {"requestBody": {"required": required, "content": {m: {"schema": schema} for m in media_types}}}


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in {
        400: "Malformed JSON, body or query parameter",
        401: "Missing or unknown API key",
        404: "No such webhook for this account",
        413: "Body too large",
        415: "Unsupported content type",
        422: "A field is invalid (see error.code)",
        503: "Configuration still loading, or the broker did not acknowledge",
    }.items()
}

router = APIRouter(prefix="/api", tags=["webhooks"], responses=_ERRORS)


@router.post(
    "/webhooks",
    status_code=201,
    summary="Create a webhook",
    responses={201: {"model": WebhookCreated}, 409: {"model": ErrorBody, "description": "Too many webhooks"}},
    openapi_extra=_body_doc(WebhookCreate, (JSON,)),
)
async def create_webhook(request: Request, account_id: Account) -> Response:
    new = parse_create(await _read_json(request, (JSON,)), _rules(request))
    hook, generated = await _service(request).create(account_id, new)
    doc = present(hook)
    if generated is not None:
        doc["secret"] = generated  # the only response that ever carries a secret
    return JSONResponse(
        doc,
        status_code=201,
        headers={"Location": f"/api/webhooks/{hook.id}", "Cache-Control": "no-store"},
    )


@router.get("/webhooks", summary="List webhooks", responses={200: {"model": WebhookList}})
async def list_webhooks(
    request: Request,
    account_id: Account,
    limit: Annotated[str | None, Query(description="Page size, 1 to 100 (default 10).")] = None,
    startingAfter: Annotated[  # systeme.io's parameter name
        str | None, Query(description="Id of the last webhook of the previous page.")
    ] = None,
) -> Response:
    hooks, more = _service(request).list(account_id, parse_limit(limit), startingAfter or None)
    return JSONResponse({"items": [present(h) for h in hooks], "hasMore": more})


@router.get("/webhooks/{webhook_id}", summary="Get a webhook", responses={200: {"model": WebhookOut}})
async def get_webhook(request: Request, account_id: Account, webhook_id: str) -> Response:
    return JSONResponse(present(_service(request).get(account_id, webhook_id)))


@router.patch(
    "/webhooks/{webhook_id}",
    summary="Change a webhook (JSON merge-patch)",
    responses={200: {"model": WebhookOut}},
    openapi_extra=_body_doc(WebhookPatch, (MERGE_PATCH, JSON)),
)
async def patch_webhook(request: Request, account_id: Account, webhook_id: str) -> Response:
    service = _service(request)
    service.get(account_id, webhook_id)  # 404 before judging the body of someone else's webhook
    changes = parse_patch(await _read_json(request, (MERGE_PATCH, JSON)), _rules(request))
    return JSONResponse(present(await service.update(account_id, webhook_id, changes)))


@router.delete("/webhooks/{webhook_id}", status_code=204, summary="Delete a webhook")
async def delete_webhook(request: Request, account_id: Account, webhook_id: str) -> Response:
    await _service(request).delete(account_id, webhook_id)
    return Response(status_code=204)


# -- delivery logs, redeliver, send test --------------------------------------------------------

_SEND_REFUSED = {
    "model": ErrorBody,
    "description": "The webhook is inactive, or the log holds no complete body to send again",
}


@router.get(
    "/webhooks/{webhook_id}/deliveries",
    summary="List a webhook's deliveries, newest first",
    tags=["deliveries"],
    responses={200: {"model": DeliveryList}},
)
async def list_deliveries(
    request: Request,
    account_id: Account,
    webhook_id: str,
    status: Annotated[
        str | None, Query(description="delivered, retrying, failed or skipped (else 422 invalid_status).")
    ] = None,
    event: Annotated[str | None, Query(description="An event type, e.g. SALE_NEW.")] = None,
    limit: Annotated[str | None, Query(description="Page size, 1 to 100 (default 10).")] = None,
    startingAfter: Annotated[  # systeme.io's parameter name
        str | None, Query(description="messageId of the last delivery of the previous page.")
    ] = None,
) -> Response:
    _service(request).get(account_id, webhook_id)  # 404 before judging parameters of someone else's
    page = await _deliveries(request).list_deliveries(
        account_id, webhook_id, status or None, event or None, parse_limit(limit), startingAfter or None
    )
    return JSONResponse({"items": [present_delivery(m) for m in page.items], "hasMore": page.has_more})


@router.get(
    "/webhooks/{webhook_id}/deliveries/{message_id}",
    summary="Get a delivery with every attempt",
    tags=["deliveries"],
    responses={200: {"model": DeliveryDetailOut}},
)
async def get_delivery(request: Request, account_id: Account, webhook_id: str, message_id: str) -> Response:
    detail = await _deliveries(request).get_delivery(account_id, webhook_id, message_id)
    return JSONResponse(present_detail(detail))


@router.post(
    "/webhooks/{webhook_id}/deliveries/{message_id}/redeliver",
    status_code=202,
    summary="Send a delivery again (one manual attempt, same message id)",
    tags=["deliveries"],
    responses={202: {"model": SendAccepted}, 409: _SEND_REFUSED},
)
async def redeliver(request: Request, account_id: Account, webhook_id: str, message_id: str) -> Response:
    sent = await _deliveries(request).redeliver(account_id, webhook_id, message_id)
    return JSONResponse(present_sent(sent), status_code=202)


@router.post(
    "/webhooks/{webhook_id}/test",
    status_code=202,
    summary="Send a sample event marked as a test (X-Webhook-Test: true)",
    tags=["deliveries"],
    responses={202: {"model": SendAccepted}},
    openapi_extra=_body_doc(SendTestRequest, (JSON,), required=False),
)
async def send_test(request: Request, account_id: Account, webhook_id: str) -> Response:
    deliveries = _deliveries(request)
    _service(request).get(account_id, webhook_id)  # 404 before judging the body of someone else's
    event_type: str | None = None
    if request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers:
        body = await _read_json(request, (JSON,))
        unknown = sorted(k for k in body if k != "eventType")
        if unknown:
            shown = unknown[0] if len(unknown[0]) <= 64 else unknown[0][:64] + "..."
            raise InvalidRequest("unknown_field", f"unknown field {shown!r}; allowed: eventType")
        value = body.get("eventType")
        if value is not None and not isinstance(value, str):
            raise InvalidRequest("invalid_type", "eventType must be a string")
        event_type = value
    sent = await deliveries.send_test(account_id, webhook_id, event_type)
    return JSONResponse(present_sent(sent), status_code=202)


@router.post(
    "/webhooks/{webhook_id}/recover",
    status_code=202,
    summary="Send again, oldest first, every message that failed for good since a time (trigger recover)",
    tags=["deliveries"],
    responses={
        202: {"model": RecoverAccepted},
        409: {"model": ErrorBody, "description": "The webhook is inactive"},
    },
    openapi_extra=_body_doc(RecoverRequest, (JSON,)),
)
async def recover(request: Request, account_id: Account, webhook_id: str) -> Response:
    _service(request).get(account_id, webhook_id)  # 404 before judging the body of someone else's
    since_ms = parse_recover(await _read_json(request, (JSON,)))
    limit: int = request.app.state.recover_max
    done = await _deliveries(request).recover(account_id, webhook_id, since_ms, limit=limit)
    return JSONResponse(present_recovered(done), status_code=202)


# -- personal data ------------------------------------------------------------------------------


@router.post(
    "/contacts/{contact_id}/erase",
    summary="Erase every stored delivery that concerns a contact (GDPR Art. 17)",
    description="Deletes the request bodies, response excerpts, headers and error texts of every logged"
    " attempt of this account's messages about the contact (the payload's contact.id, or a sale's"
    " customer.id), marks those messages erased and records the erasure (when, how many rows; not the"
    " contact). Only this account's deliveries are touched; an unknown contact erases nothing (0)."
    " Kafka keeps the events, tasks and results until their topics' retention ends.",
    tags=["contacts"],
    responses={200: {"model": ErasureOut}},
)
async def erase_contact(request: Request, account_id: Account, contact_id: str) -> Response:
    erasure = await _deliveries(request).erase_contact(account_id, contact_id)
    return JSONResponse(present_erasure(erasure), headers={"Cache-Control": "no-store"})
