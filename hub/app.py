"""The composition root: everything built from config is built here.

``Hub`` is what every door and the dispatcher share (the engine, providers, the dispatcher,
the mail, webhook and answer workers, the HTTP app); ``start_process`` builds and starts what
`smshub run` runs for its roles (the database, the hub, the SMTP listener, the IMAP
mailboxes, the scheduler), and ``Process.http_config`` the HTTP server's settings.
hub.runtime.server only runs and stops what this builds.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import uvicorn
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from hub.api.app import create_api
from hub.core import i18n
from hub.core.config import Config
from hub.inbound import alerts
from hub.inbound.webhooks.delivery import WebhookSender
from hub.mail.intake.policy import IntakePolicy
from hub.mail.intake.smtp import SmtpListener, start_smtp_listener
from hub.mail.outbox import MailOutbox
from hub.ports.registry import build_mail_sender, build_mail_sources, build_sms_provider
from hub.ports.sms import ProviderContext, ProviderEvent, SmsProvider
from hub.reminders.writeback import AnswerWriter
from hub.sending import balance_alert, credits
from hub.sending import submit as sending
from hub.sending.accounts import create_account
from hub.sending.dispatch import Dispatcher
from hub.sending.reports import ReportPolicy, apply_events
from hub.store.db import database_warnings, make_engine, session_scope
from hub.store.leadership import Leadership
from hub.store.models import Account
from hub.store.schema_check import ensure_schema
from hub.store.state_sql import state_store
from hub.web.limits import server_config
from scheduler.jobs import HubScheduler, start_scheduler

# The interpreter's switch interval while a dispatcher runs in this process (default 5 ms).
GIL_SWITCH_SECONDS = 0.001
log = logging.getLogger("smshub")

DEFAULT_ACCOUNT = "main"
WELCOME_CREDITS = 1000


class Hub:
    """One running hub: what every door and the dispatcher share."""

    def __init__(self, config: Config, engine: Engine | None = None) -> None:
        self.config = config
        # Texts written for no account in particular (SMTP refusals): the hub's language.
        i18n.set_hub_language(i18n.account_language(None, config))
        self.engine = engine or make_engine(
            config.database_url, busy_timeout=config.database.sqlite_busy_timeout
        )
        # Connector state every instance shares (hub/ports/state.py), secrets encrypted.
        self.state = state_store(self.engine, config)
        # A balance change that crosses an alert threshold is alerted once it is committed.
        balance_alert.on_crossing(alerts.alert_committed)
        self.policy = ReportPolicy(
            report_window=timedelta(hours=config.dispatcher.report_window_hours),
            retry_backoff=timedelta(seconds=config.dispatcher.retry_backoff_seconds),
            config=config,
        )
        self.api = create_api(self)
        # Providers that call the hub from inside the process (the simulator) go through the
        # same HTTP routes as a real provider would, without a network hop.
        self.hub_client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.api), base_url=config.hub.public_url
        )
        self.providers: dict[str, SmsProvider] = {}
        for name, section in config.providers.items():
            ctx = ProviderContext(
                name=name,
                public_url=config.hub.public_url.rstrip("/"),
                data_dir=config.hub.data_dir,
                default_region=config.hub.default_region,
                hub_client=self.hub_client,
                emit=self.handle_events,
                store=self.state,
            )
            self.providers[name] = build_sms_provider(name, section, ctx)
        self.callbacks = {
            (name, kind): view
            for name, provider in self.providers.items()
            for kind, view in provider.callbacks().items()
        }
        self.dispatcher: Dispatcher | None = None
        # The scheduler's leader lock state (scheduler.leader), shown by /readyz.
        self.leadership = Leadership()
        sender = build_mail_sender(config, self.state)
        # Mail and webhook claims last as long as SMS claims: a dead instance's mails and
        # deliveries come back as soon.
        lease = timedelta(seconds=config.dispatcher.claim_lease_seconds)
        self.mail_outbox = (
            MailOutbox(self.engine, sender, lease=lease) if sender is not None else None
        )
        self.webhook_sender = WebhookSender(self.engine, lease=lease)
        # OUI / NON answers written to their calendar as they come (and retried).
        self.answer_writer = AnswerWriter(self.engine, config, self.state)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending_events: list[tuple[Sequence[ProviderEvent], asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def start(self, *, dispatcher: bool | None = None, background: bool = True) -> None:
        """Start providers and (unless disabled) the dispatcher.

        With ``background=False`` the dispatcher is built but its loop is not started, so a
        caller (tests, one-shot commands) drives it with ``run_once()`` / ``drain()``.
        """
        self._loop = asyncio.get_running_loop()
        for view in self.callbacks.values():
            view.warn_if_insecure()
        for provider in self.providers.values():
            await provider.start()
        if dispatcher if dispatcher is not None else self.config.dispatcher.enabled:
            self.dispatcher = Dispatcher(self.engine, self.config, self.providers)
            await self.dispatcher.start(background=background)
            if background:
                # The dispatcher's loop shares the GIL with CPU-bound worker threads (calendar
                # planning, source parsing): after each I/O it waits up to the switch interval
                # for the GIL, step after step. 1 ms instead of 5 keeps reminders on time
                # while calendars are planned (bench/reminders.py --sync-during).
                sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_SECONDS))
            if self.mail_outbox is not None and background:
                await self.mail_outbox.start()
            if background:
                await self.webhook_sender.start()
                await self.answer_writer.start()

    async def stop(self, grace: float | None = None) -> None:
        """Stop the dispatcher and the mail and webhook senders, then the providers;
        idempotent. Nothing more is claimed; work in flight gets GRACE seconds to finish
        (None: the provider calls as long as they take, mails and posts none), and what was
        claimed but not started is handed back."""
        outbox_grace = 0 if grace is None else grace
        stops = [self.webhook_sender.stop(outbox_grace), self.answer_writer.stop(outbox_grace)]
        if self.dispatcher is not None:
            stops.append(self.dispatcher.stop(grace))
        if self.mail_outbox is not None:
            stops.append(self.mail_outbox.stop(outbox_grace))
        await asyncio.gather(*stops)
        self.dispatcher = None
        for provider in self.providers.values():
            await provider.close()
        await self.hub_client.aclose()

    def submit(self, req: sending.SubmitRequest) -> sending.SubmitResult:
        """Submit and nudge the dispatcher (blocking: call from a worker thread)."""
        result = sending.submit(self.engine, self.config, req)
        # smshub_submitted_total is counted by hub.sending.submit at the commit, for every door.
        queued = sum(1 for r in result.recipients if r.status in {"queued", "scheduled"})
        if self.dispatcher is not None and queued and self._loop is not None:
            self._loop.call_soon_threadsafe(self.dispatcher.wake)
        return result

    def after_intake(self, outcome: object) -> None:
        """A mail was turned into queued SMS: send them now rather than at the next poll."""
        if self.dispatcher is not None:
            self.dispatcher.wake()
        if self.mail_outbox is not None:
            self.mail_outbox.wake()

    async def handle_events(self, events: Sequence[ProviderEvent]) -> None:
        """Store normalized provider events (the sink of every callback view).

        Callbacks arriving together are stored in one transaction (one commit for many
        reports); each caller still returns only once its own events are committed.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending_events.append((events, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_events(), name="store-events")
        await future
        # Reports and inbound SMS may have queued webhooks: post them now, not at the next poll.
        self.webhook_sender.wake()
        # ... and a reminder answer its write to the calendar.
        self.answer_writer.wake()

    async def _flush_events(self) -> None:
        while self._pending_events:
            batch = self._pending_events[:500]
            del self._pending_events[:500]
            merged = [event for events, _ in batch for event in events]
            try:
                await asyncio.to_thread(apply_events, self.engine, merged, self.policy)
            except Exception:
                # Store each callback alone, so only the one that fails gets its 500.
                for events, future in batch:
                    try:
                        await asyncio.to_thread(apply_events, self.engine, events, self.policy)
                    except Exception as exc:
                        future.set_exception(exc)
                    else:
                        future.set_result(None)
                continue
            for _, future in batch:
                future.set_result(None)

    def ensure_default_account(self) -> Account | None:
        """On an empty database, create account 'main' with welcome credits to try the hub."""
        try:
            with session_scope(self.engine) as session:
                if session.exec(select(Account).limit(1)).first() is not None:
                    return None
                account = create_account(session, DEFAULT_ACCOUNT)
                credits.top_up(session, DEFAULT_ACCOUNT, WELCOME_CREDITS, note="welcome credits")
        except IntegrityError:
            # Another instance starting on the same empty database created it a moment ago
            # (PostgreSQL: both saw no account; this one's insert waited for the other's
            # commit, then met its name): the account and its credits are that one's.
            # Any other integrity error (no account made by anyone) is raised.
            with session_scope(self.engine) as session:
                if session.exec(select(Account).limit(1)).first() is None:
                    raise
            return None
        log.info("created account %r with %d credits", DEFAULT_ACCOUNT, WELCOME_CREDITS)
        return account


def open_database(config: Config, instance: str) -> Engine:
    """The engine of a running instance (named INSTANCE in PostgreSQL's activity), its schema
    checked: an empty database gets the schema; one behind or not matching its revision is
    refused, saying what to do, before anything reads a table."""
    engine = make_engine(
        config.database_url,
        busy_timeout=config.database.sqlite_busy_timeout,
        application_name=instance,
    )
    if ensure_schema(engine).status == "ahead":
        log.warning(
            "the database's schema is newer than this version's (a rolling upgrade?): "
            "upgrade this instance soon"
        )
    for warning in database_warnings(engine):
        log.warning("%s", warning)
    return engine


@dataclass
class Process:
    """What `smshub run` runs for its ROLES: the hub (with its dispatcher and workers), the
    mail doors and the scheduler; hub.runtime.server runs and stops it."""

    hub: Hub
    roles: set[str]
    smtp: SmtpListener | None = None
    mailboxes: list[Any] = field(default_factory=list)
    scheduler: HubScheduler | None = None

    def http_config(self, grace: float) -> uvicorn.Config | None:
        """The HTTP server's settings, None without the api role: a deadline for receiving
        each request, a bound on connections, GRACE seconds for requests at a stop."""
        if "api" not in self.roles:
            return None
        return server_config(
            self.hub.api, self.hub.config, timeout_graceful_shutdown=max(1, int(grace))
        )


async def start_process(config: Config, roles: set[str], instance: str) -> Process:
    """Build and start, in this order, the hub and what ROLES ask for: the dispatcher and
    workers, the SMTP listener, the IMAP mailboxes, the scheduler."""
    hub = Hub(config, engine=open_database(config, instance))
    hub.ensure_default_account()
    await hub.start(dispatcher="dispatcher" in roles)
    process = Process(hub, roles)
    # One policy for both doors, so the per-sender limits count SMTP and IMAP mail together.
    policy = IntakePolicy(hub.engine, config)
    if "smtp" in roles and config.smtp.enabled:
        process.smtp = await start_smtp_listener(policy, config, on_accepted=hub.after_intake)
    if "imap" in roles and config.imap:
        process.mailboxes = build_mail_sources(
            config, policy, on_accepted=hub.after_intake, store=hub.state
        )
        for source in process.mailboxes:
            await source.start()
    if "scheduler" in roles:
        process.scheduler = start_scheduler(hub)
    return process
