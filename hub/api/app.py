"""The HTTP API (FastAPI): messages, account, provider callbacks, health and metrics."""

# No `from __future__ import annotations` here: FastAPI resolves route annotations at
# runtime, and the dependency aliases live inside create_api().

import asyncio
import hmac
import ipaddress
import json
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import FastAPI, Header, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from sqlalchemy import func, text
from sqlmodel import Session, col, select

from hub.api.accounts import accounts_router
from hub.api.auth import Caller, CallerDep
from hub.api.campaigns import campaigns_router
from hub.api.contacts import contacts_router
from hub.api.docs import install_docs
from hub.api.links import links_router
from hub.api.numbers import numbers_router
from hub.api.templates import templates_router
from hub.api.unsubscribe import unsubscribe_router
from hub.api.webhooks import webhooks_router
from hub.console import console_error, install_console
from hub.core.metrics import CALLBACKS
from hub.errors import HubError, NotFound
from hub.sending import idempotency
from hub.sending import submit as sending
from hub.sending.accounts import ancestors
from hub.sending.callbacks import CallbackRequest
from hub.store.db import session_scope
from hub.store.models import Account, Message, MessageEvent
from hub.store.views import account_view, message_view
from hub.web.edge import RefuseNulInUrl, Text

if TYPE_CHECKING:
    from hub.app import Hub

log = logging.getLogger("smshub.api")


class SendBody(BaseModel):
    to: list[Text] | Text = Field(description="Phone numbers in any format")
    text: Text
    sender: Text | None = None
    type: Literal["alert", "marketing"] = "alert"
    send_at: datetime | None = Field(None, description="ISO 8601 time to send; omitted: now")
    account: Text | None = Field(None, description="A sub-account to send as (default: yours)")
    shorten_links: bool | None = Field(
        None,
        description="Replace each URL by a short link per recipient (clicks counted); "
        "omitted: the account's default (track_links in GET /v1/account)",
    )


METRICS_NEEDS_TOKEN = (
    "send 'Authorization: Bearer <token>' with the metrics token "
    "(the one named by [http] metrics_token_env or metrics_token_file)\n"
)
METRICS_LOCAL_ONLY = (
    "/metrics answers only clients on this machine (127.0.0.1, ::1); to scrape it from "
    "elsewhere set [http] metrics_token_env (or metrics_token_file) and send "
    "'Authorization: Bearer <token>'\n"
)


def is_loopback(host: str | None) -> bool:
    """True when HOST (a client address) is 127.0.0.0/8 or ::1 (also as ::ffff:127.x.y.z)."""
    if not host:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def bearer_matches(authorization: str | None, token: str) -> bool:
    """True when AUTHORIZATION is 'Bearer TOKEN' (the token compared in constant time)."""
    scheme, _, presented = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    # Header values arrive decoded as latin-1: encoding back gives the bytes that were sent.
    return hmac.compare_digest(presented.strip().encode("latin-1"), token.encode("utf-8"))


def create_api(hub: "Hub") -> FastAPI:
    """The FastAPI application for HUB."""
    app = FastAPI(
        title="smshub",
        version="0.1.0",
        description="Self-hosted e-mail-to-SMS and calendar-reminder hub.",
        # Served from the hub's own files (hub/api/docs.py), not from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    # The routers' shared dependencies (hub.api.auth) find the hub here.
    app.state.hub = hub
    install_docs(app)
    app.add_middleware(RefuseNulInUrl)
    # Resolved once, so a missing environment variable or file stops the start.
    metrics_token = hub.config.http.metrics_token()

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> Response:
        # FastAPI's own answer, written as ASCII JSON: the errors quote the input, and input
        # that is not valid Unicode (a lone surrogate) cannot be written as UTF-8.
        body = json.dumps({"detail": jsonable_encoder(exc.errors())}, ensure_ascii=True)
        return Response(body, status_code=422, media_type="application/json")

    @app.exception_handler(HubError)
    async def _hub_error(request: Request, exc: HubError) -> Response:
        status = exc.http_status
        return console_error(request, exc, status) or JSONResponse(
            {"error": str(exc)}, status_code=status
        )

    @app.post("/v1/messages", status_code=202, tags=["messages"])
    async def send_messages(
        body: SendBody,
        who: CallerDep,
        idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    ) -> dict[str, Any]:
        """Queue an SMS to one or more numbers; returns one result per recipient."""
        account = who.account_name
        if body.account and body.account != who.account_name:

            def _check() -> str:
                with session_scope(hub.engine) as session:
                    target = session.exec(
                        select(Account).where(Account.name == body.account)
                    ).first()
                    if target is None or target.id not in who.scope:
                        raise NotFound(f"no account named {body.account!r} among yours")
                    return target.name

            account = await asyncio.to_thread(_check)
        if idempotency_key:
            print_ = idempotency.fingerprint(
                "POST", "/v1/messages", who.account_id, body.model_dump(mode="json")
            )
            replay = await asyncio.to_thread(
                idempotency.begin, hub.engine, who.account_id, idempotency_key, print_
            )
            if replay is not None:
                return JSONResponse(  # type: ignore[return-value]
                    replay.body,
                    status_code=replay.status_code,
                    headers={"Idempotent-Replayed": "true"},
                )
        key = f"api:{who.account_id}:{idempotency_key}" if idempotency_key else None
        request = sending.SubmitRequest(
            account=account,
            recipients=[body.to] if isinstance(body.to, str) else body.to,
            text=body.text,
            sender=body.sender,
            type=body.type,
            send_at=body.send_at,
            source="api",
            idempotency_key=key,
            shorten_links=body.shorten_links,
        )
        try:
            result = await asyncio.to_thread(hub.submit, request)
        except Exception:
            if idempotency_key:
                await asyncio.to_thread(
                    idempotency.abandon, hub.engine, who.account_id, idempotency_key
                )
            raise
        answer = result.to_dict()
        if idempotency_key:
            await asyncio.to_thread(
                idempotency.finish, hub.engine, who.account_id, idempotency_key, 202, answer
            )
        return answer

    def _own_message(session: Session, who: Caller, message_id: str) -> Message:
        message = session.get(Message, message_id)
        if message is None or message.account_id not in who.scope:
            raise NotFound(f"no message {message_id!r}")
        return message

    @app.get("/v1/messages/{message_id}", tags=["messages"])
    async def get_message(message_id: str, who: CallerDep) -> dict[str, Any]:
        """One message with its history."""

        def _get() -> dict[str, Any]:
            with session_scope(hub.engine) as session:
                message = _own_message(session, who, message_id)
                events = session.exec(
                    select(MessageEvent)
                    .where(MessageEvent.message_id == message_id)
                    .order_by(col(MessageEvent.id))
                ).all()
                return message_view(message, events)

        return await asyncio.to_thread(_get)

    @app.get("/v1/messages", tags=["messages"])
    async def list_messages(
        who: CallerDep,
        status: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        before: datetime | None = None,
    ) -> dict[str, Any]:
        """Messages of your account and its sub-accounts, newest first."""

        def _list() -> dict[str, Any]:
            with session_scope(hub.engine) as session:
                query = select(Message).where(col(Message.account_id).in_(who.scope))
                if status:
                    query = query.where(Message.status == status)
                if before:
                    query = query.where(col(Message.created_at) < before)
                rows = session.exec(
                    query.order_by(col(Message.created_at).desc()).limit(limit)
                ).all()
                return {"messages": [message_view(m) for m in rows]}

        return await asyncio.to_thread(_list)

    @app.delete("/v1/messages/{message_id}", tags=["messages"])
    async def cancel_message(message_id: str, who: CallerDep) -> dict[str, Any]:
        """Cancel a scheduled (not yet sending) message; its credits are refunded."""

        def _cancel() -> dict[str, Any]:
            with session_scope(hub.engine) as session:
                return message_view(sending.cancel(session, message_id, account_ids=set(who.scope)))

        return await asyncio.to_thread(_cancel)

    @app.get("/v1/account", tags=["account"])
    async def get_account(who: CallerDep) -> dict[str, Any]:
        """Your account: balance (or the parent's it draws from) and sub-accounts."""

        def _get() -> dict[str, Any]:
            with session_scope(hub.engine) as session:
                account = session.get(Account, who.account_id)
                assert account is not None
                return account_view(session, account, ancestors(session, account))

        return await asyncio.to_thread(_get)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, Any]:
        """Liveness and database reachability."""

        def _check() -> int:
            with session_scope(hub.engine) as session:
                return int(
                    session.execute(
                        select(func.count()).select_from(Message).where(Message.status == "queued")
                    ).scalar_one()
                )

        try:
            queued = await asyncio.to_thread(_check)
        except Exception:
            # The details (host, port, database name) go to the log only: /healthz answers
            # anyone, and the error text maps the hub's network for them.
            log.exception("/healthz: the database is unreachable")
            return JSONResponse(  # type: ignore[return-value]
                {"status": "error", "database": "database unreachable"}, 503
            )
        return {"status": "ok", "queued": queued, "dispatcher": hub.dispatcher is not None}

    @app.get(
        "/metrics",
        tags=["operations"],
        response_class=PlainTextResponse,
        responses={
            401: {"description": "a metrics token is configured and was not sent"},
            403: {"description": "no metrics token is configured and the client is not local"},
        },
    )
    async def metrics(request: Request) -> Response:
        """Prometheus metrics.

        With `[http] metrics_token_env` (or `metrics_token_file`) set, send
        `Authorization: Bearer <token>`; without it, only loopback clients are answered.
        """
        if metrics_token is not None:
            if not bearer_matches(request.headers.get("authorization"), metrics_token):
                return PlainTextResponse(
                    METRICS_NEEDS_TOKEN, status_code=401, headers={"WWW-Authenticate": "Bearer"}
                )
        elif not is_loopback(request.client.host if request.client else None):
            return PlainTextResponse(METRICS_LOCAL_ONLY, status_code=403)

        def _depth() -> list[tuple[str, int]]:
            with session_scope(hub.engine) as session:
                return [
                    (s, int(n))
                    for s, n in session.execute(
                        text("SELECT status, COUNT(*) FROM messages GROUP BY status")
                    ).all()
                ]

        lines = [generate_latest().decode()]
        lines.append("# HELP smshub_messages Messages by status\n# TYPE smshub_messages gauge\n")
        for status, n in await asyncio.to_thread(_depth):
            lines.append(f'smshub_messages{{status="{status}"}} {n}\n')
        return Response("".join(lines), media_type=CONTENT_TYPE_LATEST)

    @app.api_route(
        "/callbacks/{provider}/{kind}",
        methods=["GET", "POST"],
        tags=["callbacks"],
        include_in_schema=False,
    )
    async def provider_callback(provider: str, kind: str, request: Request) -> Response:
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

    app.include_router(links_router(hub))
    app.include_router(unsubscribe_router(hub))
    # The management resources, one router each (they share hub.api.auth's token check).
    for router in (
        contacts_router(hub),
        templates_router(hub),
        campaigns_router(hub),
        numbers_router(hub),
        webhooks_router(hub),
        accounts_router(hub),
    ):
        app.include_router(router)
    if hub.config.console.enabled:
        install_console(app, hub)
    return app
