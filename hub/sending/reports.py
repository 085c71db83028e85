"""Applying normalized provider events: delivery reports move messages, inbound SMS are stored.

Idempotent: each report is stored once per (provider, event key); the same report twice
changes nothing. A network_error report within the report window re-queues the message.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, bindparam, insert, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from hub.core.config import Config
from hub.core.metrics import REPORT_LAG, REPORTS_REJECTED
from hub.core.timeutil import as_utc, utcnow
from hub.inbound import webhooks
from hub.inbound.answers import receive_inbound
from hub.ports.sms import DeliveryReason, DeliveryReport, DeliveryState, InboundSms, ProviderEvent
from hub.store.db import padded, session_scope, table
from hub.store.models import (
    FINAL_STATUSES,
    Account,
    InboundMessage,
    InvalidNumber,
    Message,
    MessageEvent,
    MessageStatus,
)

log = logging.getLogger("smshub.reports")


@dataclass(frozen=True)
class ReportPolicy:
    """How reports act on messages (from the dispatcher config)."""

    report_window: timedelta = timedelta(hours=48)
    retry_backoff: timedelta = timedelta(seconds=5)
    # The hub's config, for what inbound SMS trigger (None: store them only).
    config: Config | None = None


@dataclass
class _Target:
    """The columns of a message that reports read and change, loaded without the ORM.

    Reports come two per SMS at the gateway's pace, in the process that sends: building and
    flushing ORM objects for them took a third of the CPU of storing them (bench/kannel.py).
    What changes is written back with one UPDATE per set of changed columns (``_write``).
    """

    id: str
    account_id: int
    recipient: str
    created_at: datetime
    status: str
    reason: str | None
    detail: str
    send_seq: int
    claimed_by: str | None
    provider: str | None
    provider_message_id: str | None
    sent_at: datetime | None
    first_sent_at: datetime | None
    attempts: int
    claimed_at: datetime | None
    changes: dict[str, Any] = field(default_factory=dict)

    def set(self, **values: Any) -> None:
        """Change columns (also ones not loaded, such as final_at): seen by the next report
        of the same batch, and written back by ``_write``."""
        for name, value in values.items():
            setattr(self, name, value)
        self.changes.update(values)


_LOADED = [c.name for c in fields(_Target) if c.name != "changes"]


def _find_messages(session: Session, reports: Sequence[DeliveryReport]) -> dict[int, _Target]:
    """The message each report is about: by our id, else by the provider's reference.

    Two indexed lookups (ids; then references per provider) rather than one OR of hundreds
    of clauses, which the database can only answer by scanning the outbox. Rows are locked
    in id order, as the dispatcher's updates are: never a deadlock between them.
    """
    messages = table(Message)

    def _load(condition: Any) -> list[_Target]:
        query = (
            select(*(messages.c[name] for name in _LOADED))
            .where(condition)
            .order_by(messages.c.id)
            .with_for_update()
        )
        return [_Target(*row) for row in session.execute(query)]

    ids = {r.message_id for r in reports if r.message_id}
    by_id = {m.id: m for m in _load(messages.c.id.in_(padded(sorted(ids))))} if ids else {}
    refs: dict[str, set[str]] = {}
    for r in reports:
        if r.provider_message_id and (r.message_id or "") not in by_id:
            refs.setdefault(r.provider, set()).add(r.provider_message_id)
    by_ref: dict[tuple[str | None, str | None], _Target] = {}
    for provider, pmids in refs.items():
        for m in _load(
            and_(
                messages.c.provider == provider,
                messages.c.provider_message_id.in_(padded(sorted(pmids))),
            )
        ):
            # The same message found by id for another report: one state for both.
            by_ref[(m.provider, m.provider_message_id)] = by_id.get(m.id, m)
    matched: dict[int, _Target] = {}
    for i, report in enumerate(reports):
        message = by_id.get(report.message_id or "") or by_ref.get(
            (report.provider, report.provider_message_id)
        )
        if message is not None:
            matched[i] = message
    return matched


# A message in one of these states may be in a provider's hands without the outbox knowing
# which: its provider call started (submitting), a crash cut it short (unknown), or it was put
# back in the queue after a call had started (a crash re-queued it, a retry) and may be
# claimed again already. A report about it is believed only from a provider on its route, and
# only once a provider call of it started (attempts counts started calls).
_MAYBE_HANDED = frozenset(
    {
        MessageStatus.SUBMITTING,
        MessageStatus.QUEUED,
        MessageStatus.CLAIMED,
        MessageStatus.UNKNOWN,
    }
)
# Never handed to anyone (cancelled) or refused by the provider (failed): nothing to report on.
_NEVER_SENT = frozenset({MessageStatus.CANCELLED, MessageStatus.FAILED})


def _refusal(
    message: _Target,
    report: DeliveryReport,
    policy: ReportPolicy,
    route: frozenset[str] | None,
    now: datetime,
) -> str | None:
    """Why REPORT must not touch MESSAGE (a metric label), or None when it may.

    Trust comes from the connection: a provider's callback speaks only for the messages that
    provider was handed, with the reference it gave, within the report window. ROUTE holds
    the providers the message's account sends through (None: not known, the message's own
    provider only).
    """
    if message.status in _NEVER_SENT:
        return "never_sent"
    if message.status in _MAYBE_HANDED:
        if message.attempts == 0:
            return "never_sent"
        candidates = {message.provider} | set(route or ())
        if report.provider not in candidates and not (route is None and message.provider is None):
            return "wrong_provider"
    elif message.provider != report.provider:
        return "wrong_provider"
    if (
        report.provider_message_id
        and message.provider_message_id
        and message.provider == report.provider
        and report.provider_message_id != message.provider_message_id
    ):
        return "wrong_reference"
    handed_at = message.first_sent_at or message.claimed_at
    if handed_at is not None and now - as_utc(handed_at) > policy.report_window:
        return "outside_window"
    return None


def _routes(
    session: Session, account_ids: set[int], config: Config | None
) -> dict[int, frozenset[str]]:
    """The providers each account sends through (its own route, else the default route);
    nothing without a config (tests storing reports alone): then a message not yet sent
    takes its own provider's reports, or any when it has none yet."""
    if config is None or not account_ids:
        return {}
    default = frozenset(config.routing.default)
    rows = session.execute(
        select(Account.id, Account.route).where(col(Account.id).in_(account_ids))
    ).all()
    return {
        int(account_id): frozenset(n.strip() for n in route.split(",") if n.strip()) or default
        for account_id, route in rows
    }


def _apply_report(message: _Target, report: DeliveryReport, policy: ReportPolicy) -> None:
    now = utcnow()
    # Not yet recorded as sent: the report is the first word of where the message went.
    not_yet_sent = message.status in _MAYBE_HANDED
    if report.state == DeliveryState.PENDING or message.status in FINAL_STATUSES - {
        MessageStatus.DR_UNAVAILABLE,
        MessageStatus.UNKNOWN,
    }:
        return
    if report.state == DeliveryState.DELIVERED:
        message.set(status=MessageStatus.DELIVERED.value, reason=None, final_at=now)
    elif (
        report.reason == DeliveryReason.NETWORK_ERROR
        and message.status in {MessageStatus.SENT, MessageStatus.SUBMITTING}
        and now - as_utc(message.first_sent_at or now) < policy.report_window
    ):
        # A passing network problem: send again (a new send, so a new dedupe key).
        send_seq = message.send_seq + 1
        message.set(
            status=MessageStatus.QUEUED.value,
            send_seq=send_seq,
            claimed_by=None,
            due_at=now + policy.retry_backoff * min(2**send_seq, 720),
            detail=f"network error reported; retry {send_seq}",
        )
    else:
        message.set(
            status=MessageStatus.UNDELIVERED.value,
            reason=(report.reason or DeliveryReason.OTHER).value,
            detail=report.detail[:500],
            final_at=now,
        )
    if not_yet_sent or (message.provider_message_id is None and report.provider_message_id):
        # The report overtook the dispatcher's own record (or a crash lost it): the provider
        # that reports on it was handed it (checked by _refusal). Keep who, under what
        # reference and when, so later reports matched by the reference alone find it and
        # the row tells where it went.
        message.set(
            provider=report.provider,
            provider_message_id=report.provider_message_id or message.provider_message_id,
            sent_at=message.sent_at or now,
            first_sent_at=message.first_sent_at or now,
        )
        if message.status != MessageStatus.QUEUED:
            message.set(claimed_by=None)
    message.set(updated_at=now)


def _write(session: Session, targets: Sequence[_Target]) -> None:
    """Each changed message's new columns: one executemany per set of changed columns."""
    messages = table(Message)
    groups: dict[frozenset[str], list[dict[str, Any]]] = {}
    for target in targets:
        if target.changes:
            groups.setdefault(frozenset(target.changes), []).append(
                {**target.changes, "target_id": target.id}
            )
    for rows in groups.values():
        session.execute(update(messages).where(messages.c.id == bindparam("target_id")), rows)


# Outcomes that say something about the number itself; a send that failed before reaching
# the network, was cancelled or got no report says nothing and is skipped over.
_TELLING = (MessageStatus.DELIVERED.value, MessageStatus.UNDELIVERED.value)


def _is_invalid(message: Message | None) -> bool:
    return (
        message is not None
        and message.status == MessageStatus.UNDELIVERED
        and message.reason == DeliveryReason.INVALID_NUMBER
    )


def _note_invalid_number(session: Session, message: _Target) -> None:
    """NPAI: MESSAGE was reported invalid_number; if the account's send to the same number
    just before or just after it (in send order, among delivered/undelivered ones) was too,
    the number goes on the account's invalid list. A delivery in between breaks the pair;
    looking both ways makes the result independent of the order reports arrive in."""

    def neighbour(before: bool) -> Message | None:
        created = col(Message.created_at)
        return session.exec(
            select(Message)
            .where(
                Message.account_id == message.account_id,
                Message.recipient == message.recipient,
                Message.id != message.id,
                col(Message.status).in_(_TELLING),
                created < message.created_at if before else created > message.created_at,
            )
            .order_by(created.desc() if before else created.asc())
            .limit(1)
        ).first()

    if not (_is_invalid(neighbour(before=True)) or _is_invalid(neighbour(before=False))):
        return
    listed = session.exec(
        select(InvalidNumber.id).where(
            InvalidNumber.account_id == message.account_id,
            InvalidNumber.number == message.recipient,
        )
    ).first()
    if listed is None:
        session.add(InvalidNumber(account_id=message.account_id, number=message.recipient))
        log.info(
            "%s reported invalid twice in a row: on the invalid list of account %d",
            message.recipient,
            message.account_id,
        )


def _store(session: Session, events: Sequence[ProviderEvent], policy: ReportPolicy) -> None:
    reports = [e for e in events if isinstance(e, DeliveryReport)]
    inbound = [e for e in events if isinstance(e, InboundSms)]
    if reports:
        _store_reports(session, reports, policy)
    for sms in inbound:
        # Conversations, STOP/START, the auto-responder and forwarding live in hub.inbound.answers.
        receive_inbound(session, sms, policy.config)
        if webhooks.has_endpoints(session):
            stored = session.exec(
                select(InboundMessage).where(
                    InboundMessage.provider == sms.provider,
                    InboundMessage.event_key == sms.event_key,
                )
            ).first()
            if stored is not None:
                webhooks.inbound_event(session, stored)


def _store_reports(
    session: Session, reports: Sequence[DeliveryReport], policy: ReportPolicy
) -> None:
    fresh = _fresh(session, reports)
    matched = _find_messages(session, fresh)
    routes = _routes(session, {m.account_id for m in matched.values()}, policy.config)
    now = utcnow()
    history: list[dict[str, Any]] = []
    for i, report in enumerate(fresh):
        message = matched.get(i)
        if message is None:
            _refused(report, None, "unknown_message")
            continue
        refusal = _refusal(message, report, policy, routes.get(message.account_id), now)
        if refusal is not None:
            _refused(report, message, refusal)
            continue
        history.append(_history_row(message, report, now))
        if message.sent_at is not None and message.status != MessageStatus.QUEUED:
            REPORT_LAG.labels(provider=report.provider).observe(
                max(0.0, (now - as_utc(message.sent_at)).total_seconds())
            )
        _apply_report(message, report, policy)
    if history:
        session.execute(insert(table(MessageEvent)), history)
    targets = list({id(m): m for m in matched.values()}.values())
    _write(session, targets)
    _tell(session, targets)


def _fresh(session: Session, reports: Sequence[DeliveryReport]) -> list[DeliveryReport]:
    """REPORTS not stored yet (by an earlier callback, or earlier in this one)."""
    keys = {(e.provider, e.event_key) for e in reports}
    seen = {
        (p, k)
        for p, k in session.execute(
            select(MessageEvent.provider, MessageEvent.event_key).where(
                col(MessageEvent.provider).in_(padded(sorted({p for p, _ in keys}))),
                col(MessageEvent.event_key).in_(padded(sorted({k for _, k in keys}))),
            )
        ).all()
    }
    fresh = []
    for report in reports:
        key = (report.provider, report.event_key)
        if key in seen:
            continue
        seen.add(key)
        fresh.append(report)
    return fresh


def _refused(report: DeliveryReport, message: _Target | None, refusal: str) -> None:
    # Answered 200 all the same: the provider would retry a refusal for days, and a retry
    # cannot make the report true.
    REPORTS_REJECTED.labels(provider=report.provider, reason=refusal).inc()
    log.warning(
        "delivery report from %s for message (ours %s, theirs %s) ignored: %s%s",
        report.provider,
        report.message_id,
        report.provider_message_id,
        refusal.replace("_", " "),
        "" if message is None else f" (message {message.id} is {message.status})",
    )


def _history_row(message: _Target, report: DeliveryReport, now: datetime) -> dict[str, Any]:
    status = report.state.value if report.state != DeliveryState.UNDELIVERED else "undelivered"
    return {
        "message_id": message.id,
        "status": status,
        "reason": report.reason.value if report.reason else None,
        "detail": report.detail[:500],
        "provider": report.provider,
        "event_key": report.event_key,
        "created_at": now,
    }


def _tell(session: Session, targets: Sequence[_Target]) -> None:
    """What the reports changed: invalid numbers noted, webhooks queued."""
    telling = [m for m in targets if "status" in m.changes and m.status in _TELLING]
    for message in telling:
        if message.reason == DeliveryReason.INVALID_NUMBER:
            _note_invalid_number(session, message)
    webhooks.message_events(session, sorted(m.id for m in telling))


def apply_events(engine: Engine, events: Sequence[ProviderEvent], policy: ReportPolicy) -> None:
    """Store a callback's events in one transaction; a concurrent duplicate is retried once."""
    if not events:
        return
    for attempt in range(2):
        try:
            with session_scope(engine) as session:
                _store(session, events, policy)
            return
        except IntegrityError:
            if attempt == 1:
                raise
