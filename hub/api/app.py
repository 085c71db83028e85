"""The FastAPI application: its error answers, and the routers of hub.api in their order.

Every route lives in a router module of its own (messages, account, operations and provider
callbacks, links, the unsubscribe page, then the /v1 resources); they reach the hub through
``hub.web.deps.HubDep`` and the caller through ``hub.api.auth.CallerDep``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from hub.api import (
    account,
    accounts,
    campaigns,
    contacts,
    links,
    messages,
    numbers,
    operations,
    templates,
    unsubscribe,
    webhooks,
)
from hub.api.docs import install_docs
from hub.console import console_error, install_console
from hub.errors import HubError
from hub.web.edge import RefuseNulInUrl

if TYPE_CHECKING:
    from hub.app import Hub

# In the order they were always matched and documented in /openapi.json.
ROUTERS = (
    messages.router,
    account.router,
    operations.router,
    links.router,
    unsubscribe.router,
    # The management resources (they share hub.api.auth's token check).
    contacts.router,
    templates.router,
    campaigns.router,
    numbers.router,
    webhooks.router,
    accounts.router,
)


async def _invalid_request(request: Request, exc: Exception) -> Response:
    # FastAPI's own answer, written as ASCII JSON: the errors quote the input, and input
    # that is not valid Unicode (a lone surrogate) cannot be written as UTF-8.
    assert isinstance(exc, RequestValidationError)
    body = json.dumps({"detail": jsonable_encoder(exc.errors())}, ensure_ascii=True)
    return Response(body, status_code=422, media_type="application/json")


async def _hub_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HubError)
    status = exc.http_status
    return console_error(request, exc, status) or JSONResponse(
        {"error": str(exc)}, status_code=status
    )


def create_api(hub: Hub) -> FastAPI:
    """The FastAPI application for HUB."""
    app = FastAPI(
        title="smshub",
        version="0.1.0",
        description="Self-hosted e-mail-to-SMS and calendar-reminder hub.",
        # Served from the hub's own files (hub/api/docs.py), not from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    # hub.web.deps.HubDep finds the hub here.
    app.state.hub = hub
    # Resolved once, so a missing environment variable or file stops the start.
    app.state.metrics_token = hub.config.http.metrics_token()
    install_docs(app)
    app.add_middleware(RefuseNulInUrl)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(HubError, _hub_error)
    for router in ROUTERS:
        app.include_router(router)
    if hub.config.console.enabled:
        install_console(app, hub)
    return app
