"""`smshub run`: one asyncio process serving HTTP and running the dispatcher and scheduler."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator
from typing import Any

import uvicorn

from hub.app import Hub
from hub.core.config import Config
from hub.mail.intake.policy import IntakePolicy
from hub.ports.registry import build_mail_sources
from hub.runtime.heap import trim_periodically
from hub.runtime.logs import setup_logging
from hub.runtime.ops_http import start_ops
from hub.store.db import database_warnings, make_engine
from hub.store.schema_check import ensure_schema
from hub.web.limits import server_config

log = logging.getLogger("smshub")


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: it would re-raise SIGTERM once its HTTP
    shutdown is done, killing the process (exit 143) before the dispatcher drains. `serve`
    handles the signals and sets `should_exit` itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(config: Config, roles: set[str]) -> None:
    """Run until SIGINT/SIGTERM."""
    # Time stamps, [log] format and the instance id on every line (noisy libraries quieted).
    instance = setup_logging(config)
    engine = make_engine(
        config.database_url,
        busy_timeout=config.database.sqlite_busy_timeout,
        application_name=instance,
    )
    # Creates the schema of an empty database; refuses one behind or not matching its
    # revision, saying what to do, before anything reads a table.
    if ensure_schema(engine).status == "ahead":
        log.warning(
            "the database's schema is newer than this version's (a rolling upgrade?): "
            "upgrade this instance soon"
        )
    for warning in database_warnings(engine):
        log.warning("%s", warning)
    hub = Hub(config, engine=engine)
    hub.ensure_default_account()
    await hub.start(dispatcher="dispatcher" in roles)
    smtp_server = None
    imap_sources: list[Any] = []
    # One policy for both doors, so the per-sender limits count SMTP and IMAP mail together.
    policy = IntakePolicy(engine, config)
    if "smtp" in roles and config.smtp.enabled:
        from hub.mail.intake.smtp import start_smtp_listener

        smtp_server = await start_smtp_listener(policy, config, on_accepted=hub.after_intake)
    if "imap" in roles and config.imap:
        imap_sources = build_mail_sources(
            config, policy, on_accepted=hub.after_intake, store=hub.state
        )
        for source in imap_sources:
            await source.start()
    scheduler = None
    if "scheduler" in roles:
        from scheduler.jobs import start_scheduler

        scheduler = start_scheduler(hub)
    ops = await start_ops(
        config,
        hub,
        roles,
        instance,
        smtp_server=smtp_server.server if smtp_server is not None else None,
        imap_sources=imap_sources,
        scheduler=scheduler,
    )
    # The addresses actually served: HTTP only with the api role.
    served = [f"HTTP on http://{config.http.host}:{config.http.port}"] if "api" in roles else []
    if smtp_server:
        served.append(f"SMTP intake on {config.smtp.host}:{config.smtp.port}")
    if imap_sources:
        served.append(f"{len(imap_sources)} IMAP mailbox(es)")
    served.append(f"ops (/livez /readyz /metrics) on {ops.url}" if ops else "no ops port")
    log.warning(
        "smshub running (instance %s, roles: %s) — %s, database %s",
        instance,
        ", ".join(sorted(roles)),
        ", ".join(served),
        engine.url.render_as_string(hide_password=True),
    )
    if "api" in roles and config.console.enabled:
        log.warning(
            "web console: http://%s:%d/console (log in with a user made by "
            "`smshub users add ACCOUNT NAME`)",
            config.http.host,
            config.http.port,
        )
    grace = config.hub.stop_grace_seconds
    stopping = asyncio.Event()
    server: _Server | None = None
    if "api" in roles:
        server = _Server(
            # With a deadline for receiving each request and a bound on connections.
            server_config(hub.api, config, timeout_graceful_shutdown=max(1, int(grace)))
        )

    def on_signal(signum: int) -> None:
        if stopping.is_set():
            log.warning("%s again: already stopping", signal.Signals(signum).name)
            return
        log.warning(
            "%s: stopping (no new work; work in flight gets %g s)",
            signal.Signals(signum).name,
            grace,
        )
        stopping.set()
        # Stop claiming at once, before anything else is awaited.
        if hub.dispatcher is not None:
            hub.dispatcher.begin_stop()
        if server is not None:
            server.should_exit = True

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    # Resident memory follows what is in use (hub.runtime.heap: measured allocator fragmentation).
    trimmer = asyncio.create_task(trim_periodically(), name="heap-trim")
    try:
        if server is not None:
            await server.serve()
        else:
            await stopping.wait()
    finally:
        # No new work first (SMTP sessions answered 421, mailboxes and jobs stopped), then
        # the work in flight finishes or is handed back.
        if smtp_server is not None:
            await smtp_server.shut_down(grace)
        for source in imap_sources:
            await source.stop()
        if scheduler is not None:
            scheduler.shutdown(wait=False)
        await hub.stop(grace)
        if ops is not None:
            await ops.stop()
        trimmer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await trimmer
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        log.warning("smshub stopped")
