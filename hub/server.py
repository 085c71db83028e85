"""`smshub run`: one asyncio process serving HTTP and running the dispatcher and scheduler."""

from __future__ import annotations

import logging
from typing import Any

import uvicorn

from hub.app import Hub
from hub.config import Config
from hub.db import current_revision, database_warnings, make_engine
from hub.http_limits import server_config
from hub.intake.policy import IntakePolicy
from hub.registry import build_mail_sources

log = logging.getLogger("smshub")


async def serve(config: Config, roles: set[str]) -> None:
    """Run until SIGINT/SIGTERM."""
    logging.getLogger().setLevel(config.hub.log_level.upper())
    # Request lines of these libraries can carry callback secrets in URLs, and aiosmtpd's
    # ("mail.log") logs every SMTP command of every connection at INFO: keep them quiet.
    for noisy in ("httpx", "httpcore", "apscheduler", "mail.log"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    engine = make_engine(config.database_url, busy_timeout=config.database.sqlite_busy_timeout)
    if current_revision(engine) is None:
        from hub.db import upgrade

        log.info("empty database: creating the schema")
        upgrade(engine)
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
        from hub.intake.smtp import start_smtp

        smtp_server = await start_smtp(policy, config, on_accepted=hub.after_intake)
    if "imap" in roles and config.imap:
        imap_sources = build_mail_sources(config, policy, on_accepted=hub.after_intake)
        for source in imap_sources:
            await source.start()
    scheduler = None
    if "scheduler" in roles:
        from scheduler.jobs import start_scheduler

        scheduler = start_scheduler(hub)
    smtp_note = f", SMTP intake on {config.smtp.host}:{config.smtp.port}" if smtp_server else ""
    if imap_sources:
        smtp_note += f", {len(imap_sources)} IMAP mailbox(es)"
    log.warning(
        "smshub running (roles: %s) — HTTP on http://%s:%d%s, database %s",
        ", ".join(sorted(roles)),
        config.http.host,
        config.http.port,
        smtp_note,
        engine.url.render_as_string(hide_password=True),
    )
    if "api" in roles and config.console.enabled:
        log.warning(
            "web console: http://%s:%d/console (log in with a user made by "
            "`smshub users add ACCOUNT NAME`)",
            config.http.host,
            config.http.port,
        )
    try:
        if "api" in roles:
            # With a deadline for receiving each request and a bound on connections.
            server = uvicorn.Server(server_config(hub.api, config))
            await server.serve()
        else:
            import asyncio

            await asyncio.Event().wait()
    finally:
        for source in imap_sources:
            await source.stop()
        if smtp_server is not None:
            smtp_server.close()
            await smtp_server.wait_closed()
        if scheduler is not None:
            scheduler.shutdown(wait=False)
        await hub.stop()
