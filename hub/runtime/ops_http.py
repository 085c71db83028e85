"""The operations port every role opens ([ops] host/port, default 127.0.0.1:9025).

- ``/livez``: the process's event loop answers (restart the process when it does not).
- ``/readyz``: hub.runtime.readiness's checks as JSON; 503 when one fails (take it out of rotation).
- ``/metrics``: Prometheus, with the outbox gauges computed at scrape time; the same rule
  as the api port's /metrics (a bearer token when [http] metrics_token_* is set, else
  local clients only).

It runs in the process's event loop, so an answer also proves that loop is not stuck.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine, text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub.core.config import Config
from hub.core.metrics import IN_FLIGHT, MAIL_QUEUE_DEPTH, OLDEST_QUEUED, QUEUE_DEPTH
from hub.core.timeutil import as_utc, utcnow
from hub.mail.mailboxes import configured_mailboxes, mailbox_probe
from hub.runtime.listen import listen
from hub.runtime.readiness import Readiness, imap_probe, scheduler_probe, smtp_probe, task_probe
from hub.store.db import sql
from hub.store.schema_check import head_revision
from hub.web.metrics_gate import metrics_refusal

if TYPE_CHECKING:
    from hub.app import Hub

log = logging.getLogger("smshub.ops")

# Scrape-time gauges: index range reads (ix_messages_due, ix_outgoing_mails_due).
_QUEUE = sql(
    "SELECT COUNT(*), MIN(due_at) FROM messages WHERE status = 'queued' AND due_at <= :now"
)
_IN_FLIGHT = text("SELECT COUNT(*) FROM messages WHERE status = 'submitting'")
_MAIL_QUEUE = text("SELECT COUNT(*) FROM outgoing_mails WHERE status = 'pending'")
# A scrape waits at most this long for the outbox gauges (then serves the last values).
GAUGE_TIMEOUT = 5.0


def outbox_gauges(engine: Engine) -> None:
    """Set the queue gauges from the shared outbox (every instance sees the same)."""
    now = utcnow()
    with engine.connect() as conn:
        count, oldest = conn.execute(_QUEUE, {"now": now}).one()
        in_flight = conn.execute(_IN_FLIGHT).scalar_one()
        mails = conn.execute(_MAIL_QUEUE).scalar_one()
    QUEUE_DEPTH.set(count)
    age = (now - as_utc(oldest)) if oldest is not None else timedelta(0)
    OLDEST_QUEUED.set(max(0.0, age.total_seconds()))
    IN_FLIGHT.set(in_flight)
    MAIL_QUEUE_DEPTH.set(mails)


def ops_app(readiness: Readiness, metrics_token: str | None) -> Starlette:
    """The ASGI app of the ops port."""
    started = time.monotonic()

    async def livez(_: Request) -> Response:
        return JSONResponse(
            {
                "status": "alive",
                "instance": readiness.instance,
                "uptime_seconds": round(time.monotonic() - started, 1),
            }
        )

    async def readyz(_: Request) -> Response:
        ready, body = await readiness.probe()
        return JSONResponse(body, status_code=200 if ready else 503)

    async def metrics(request: Request) -> Response:
        refusal = metrics_refusal(request, metrics_token)
        if refusal is not None:
            return refusal
        try:
            await asyncio.wait_for(
                asyncio.to_thread(outbox_gauges, readiness.engine), GAUGE_TIMEOUT
            )
        except Exception as exc:
            # The counters are still worth serving; /readyz tells about the database.
            log.warning("outbox gauges not updated: %s", type(exc).__name__)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            Route("/livez", livez, methods=["GET", "HEAD"]),
            Route("/readyz", readyz, methods=["GET", "HEAD"]),
            Route("/metrics", metrics, methods=["GET"]),
        ]
    )


def bind(host: str, port: int) -> socket.socket:
    """The ops port's listening socket; a port in use is a ConfigError naming the key."""
    return listen(
        host,
        port,
        key="ops.port",
        remedy="choose another [ops] port for this instance, or 0 to turn the ops port off",
    )


class OpsServer:
    """The ops port, served by uvicorn in the running loop."""

    def __init__(self, readiness: Readiness, host: str, port: int, token: str | None) -> None:
        self.host = host
        self._sock = bind(host, port)
        self.port: int = self._sock.getsockname()[1]
        self._server = uvicorn.Server(
            uvicorn.Config(
                ops_app(readiness, token),
                log_level="warning",
                access_log=False,
                lifespan="off",
            )
        )
        self._task: asyncio.Task[Any] | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        # _serve, not serve: serve() takes over SIGINT/SIGTERM (and raises them again when
        # it ends), which belong to `smshub run` and its graceful stop.
        self._task = asyncio.create_task(self._server._serve(sockets=[self._sock]), name="ops")
        while not self._server.started and not self._task.done():
            await asyncio.sleep(0.01)
        if self._task.done():
            self._task.result()

    async def stop(self) -> None:
        """Stop answering (last, so probes see the drain until the end); idempotent."""
        if self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._task, 5)
        self._task = None


async def start_ops(
    config: Config,
    hub: Hub,
    roles: set[str],
    instance: str,
    *,
    smtp_server: asyncio.Server | None = None,
    imap_sources: Sequence[Any] = (),
    scheduler: Any = None,
) -> OpsServer | None:
    """Open the ops port with the checks of ROLES ([ops] port 0: none, returns None)."""
    if not config.ops.port:
        return None
    readiness = Readiness(hub.engine, instance, sorted(roles), head_revision())
    dispatcher = hub.dispatcher
    if dispatcher is not None:
        stale = max(60.0, config.dispatcher.claim_lease_seconds)
        readiness.add(
            "dispatcher",
            task_probe(
                lambda: dispatcher._task, last_beat=lambda: dispatcher.last_round, stale_after=stale
            ),
        )
        if hub.mail_outbox is not None:
            outbox = hub.mail_outbox
            readiness.add("mail_outbox", task_probe(lambda: outbox._task))
        readiness.add("webhooks", task_probe(lambda: hub.webhook_sender._task))
    if scheduler is not None:
        readiness.add("scheduler", scheduler_probe(scheduler, hub.engine, hub.leadership))
    if smtp_server is not None:
        readiness.add("smtp", smtp_probe(smtp_server, config.smtp.host, config.smtp.port))
    for i, source in enumerate(imap_sources):
        readiness.add(f"imap[{i}]", imap_probe(source))
    # A mailbox signing in by OAuth whose consent was revoked: the fix, by name.
    for mailbox in configured_mailboxes(config):
        if mailbox.oauth and mailbox.role in roles:
            readiness.add(f"mailbox {mailbox.key}", mailbox_probe(hub.state, mailbox))
    server = OpsServer(readiness, config.ops.host, config.ops.port, config.http.metrics_token())
    await server.start()
    return server
