"""What operators and providers call: ``/healthz``, ``/metrics`` and the providers'
delivery-report and inbound callbacks (``/callbacks/{provider}/{kind}``).

``/healthz`` and the callbacks answer anyone (a provider proves itself inside its callback
view, as hub.sending.callbacks says); ``/metrics`` is gated by hub.web.metrics_gate, the same
check as the ops port's.
"""

# No `from __future__ import annotations` here: FastAPI resolves route annotations at runtime.

import logging
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import func, text
from sqlmodel import Session, select

from hub.api.support import in_session
from hub.core.metrics import CALLBACKS
from hub.sending.callbacks import CallbackRequest
from hub.store.models import Message
from hub.web.deps import HubDep
from hub.web.metrics_gate import metrics_refusal

log = logging.getLogger("smshub.api")
router = APIRouter()


def _queued(session: Session) -> int:
    return int(
        session.execute(
            select(func.count()).select_from(Message).where(Message.status == "queued")
        ).scalar_one()
    )


def _depth(session: Session) -> list[tuple[str, int]]:
    return [
        (s, int(n))
        for s, n in session.execute(
            text("SELECT status, COUNT(*) FROM messages GROUP BY status")
        ).all()
    ]


@router.get("/healthz", tags=["operations"])
async def healthz(hub: HubDep) -> dict[str, Any]:
    """Liveness and database reachability."""
    try:
        queued = await in_session(hub, _queued)
    except Exception:
        # The details (host, port, database name) go to the log only: /healthz answers
        # anyone, and the error text maps the hub's network for them.
        log.exception("/healthz: the database is unreachable")
        return JSONResponse(  # type: ignore[return-value]
            {"status": "error", "database": "database unreachable"}, 503
        )
    return {"status": "ok", "queued": queued, "dispatcher": hub.dispatcher is not None}


@router.get(
    "/metrics",
    tags=["operations"],
    response_class=PlainTextResponse,
    responses={
        401: {"description": "a metrics token is configured and was not sent"},
        403: {"description": "no metrics token is configured and the client is not local"},
    },
)
async def metrics(request: Request, hub: HubDep) -> Response:
    """Prometheus metrics.

    With `[http] metrics_token_env` (or `metrics_token_file`) set, send
    `Authorization: Bearer <token>`; without it, only loopback clients are answered.
    """
    # Resolved once by create_api, so a missing environment variable or file stops the start.
    refusal = metrics_refusal(request, request.app.state.metrics_token)
    if refusal is not None:
        return refusal
    lines = [generate_latest().decode()]
    lines.append("# HELP smshub_messages Messages by status\n# TYPE smshub_messages gauge\n")
    for status, n in await in_session(hub, _depth):
        lines.append(f'smshub_messages{{status="{status}"}} {n}\n')
    return Response("".join(lines), media_type=CONTENT_TYPE_LATEST)


@router.api_route(
    "/callbacks/{provider}/{kind}",
    methods=["GET", "POST"],
    tags=["callbacks"],
    include_in_schema=False,
)
async def provider_callback(provider: str, kind: str, request: Request, hub: HubDep) -> Response:
    view = hub.callbacks.get((provider, kind))
    if view is None:
        return PlainTextResponse(f"no callback {provider}/{kind}", status_code=404)
    cb = CallbackRequest(
        method=request.method,
        url=str(request.url),
        headers={k.lower(): v for k, v in request.headers.items()},
        query=dict(request.query_params),
        body=await request.body(),
        content_type=request.headers.get("content-type", ""),
    )
    status, content_type, body = await view.handle(cb, hub.handle_events)
    CALLBACKS.labels(provider=provider, kind=kind, status=str(status)).inc()
    return Response(body, status_code=status, media_type=content_type)
