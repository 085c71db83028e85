"""Applying normalized provider events: delivery reports move messages, inbound SMS are stored.

Idempotent: each report is stored once per (provider, event key); the same report twice
changes nothing. A network_error report within the report window re-queues the message.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, and_
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from hub import webhooks
from hub.config import Config
from hub.db import session_scope
from hub.inbound import receive_inbound
from hub.models import (
    FINAL_STATUSES,
    InboundMessage,
    InvalidNumber,
    Message,
    MessageEvent,
    MessageStatus,
)
from hub.providers import DeliveryReason, DeliveryReport, DeliveryState, InboundSms, ProviderEvent
from hub.timeutil import as_utc, utcnow

log = logging.getLogger("smshub.reports")


@dataclass(frozen=True)
class ReportPolicy:
    """How reports act on messages (from the dispatcher config)."""

    report_window: timedelta = timedelta(hours=48)
    retry_backoff: timedelta = timedelta(seconds=5)
    # The hub's config, for what inbound SMS trigger (None: store them only).
    config: Config | None = None


def _find_messages(session: Session, reports: Sequence[DeliveryReport]) -> dict[int, Message]:
    """The message each report is about: by our id, else by the provider's reference.

    Two indexed lookups (ids; then references per provider) rather than one OR of hundreds
    of clauses, which the database can only answer by scanning the outbox. Rows are locked
    in id order, as the dispatcher's updates are: never a deadlock between them.
    """

    def _load(condition: Any) -> list[Message]:
        return list(
            session.exec(
                select(Message).where(condition).order_by(col(Message.id)).with_for_update()
            ).all()
        )

    ids = {r.message_id for r in reports if r.message_id}
    by_id = {m.id: m for m in _load(col(Message.id).in_(ids))} if ids else {}
    refs: dict[str, set[str]] = {}
    for r in reports:
        if r.provider_message_id and (r.message_id or "") not in by_id:
            refs.setdefault(r.provider, set()).add(r.provider_message_id)
    by_ref: dict[tuple[str | None, str | None], Message] = {}
    for provider, pmids in refs.items():
        for m in _load(
            and_(col(Message.provider) == provider, col(Message.provider_message_id).in_(pmids))
        ):
            by_ref[(m.provider, m.provider_message_id)] = m
    matched: dict[int, Message] = {}
    for i, report in enumerate(reports):
        message = by_id.get(report.message_id or "") or by_ref.get(
            (report.provider, report.provider_message_id)
        )
        if message is not None:
            matched[i] = message
    return matched


def _apply_report(
    session: Session, message: Message, report: DeliveryReport, policy: ReportPolicy
) -> None:
    now = utcnow()
    if report.state == DeliveryState.PENDING or message.status in FINAL_STATUSES - {
        MessageStatus.DR_UNAVAILABLE,
        MessageStatus.UNKNOWN,
    }:
        return
    if report.state == DeliveryState.DELIVERED:
        message.status = MessageStatus.DELIVERED.value
        message.reason = None
        message.final_at = now
    elif (
        report.reason == DeliveryReason.NETWORK_ERROR
        and message.status in {MessageStatus.SENT, MessageStatus.SUBMITTING}
        and now - as_utc(message.first_sent_at or now) < policy.report_window
    ):
        # A passing network problem: send again (a new send, so a new dedupe key).
        message.status = MessageStatus.QUEUED.value
        message.send_seq += 1
        message.claimed_by = None
        message.due_at = now + policy.retry_backoff * min(2**message.send_seq, 720)
        message.detail = f"network error reported; retry {message.send_seq}"
    else:
        message.status = MessageStatus.UNDELIVERED.value
        message.reason = (report.reason or DeliveryReason.OTHER).value
        message.detail = report.detail[:500]
        message.final_at = now
    if message.provider_message_id is None and report.provider_message_id:
        # The report overtook the dispatcher's own record (or a crash lost it): keep what
        # the report tells, so later reports matched by the provider's reference find it.
        message.provider = message.provider or report.provider
        message.provider_message_id = report.provider_message_id
        message.sent_at = message.sent_at or now
        message.first_sent_at = message.first_sent_at or now
        if message.status != MessageStatus.QUEUED:
            message.claimed_by = None
    message.updated_at = now
    session.add(message)
    if message.status in _TELLING:
        if message.reason == DeliveryReason.INVALID_NUMBER:
            _note_invalid_number(session, message)
        webhooks.message_event(session, message)


# Outcomes that say something about the number itself; a send that failed before reaching
# the network, was cancelled or got no report says nothing and is skipped over.
_TELLING = (MessageStatus.DELIVERED.value, MessageStatus.UNDELIVERED.value)


def _is_invalid(message: Message | None) -> bool:
    return (
        message is not None
        and message.status == MessageStatus.UNDELIVERED
        and message.reason == DeliveryReason.INVALID_NUMBER
    )


def _note_invalid_number(session: Session, message: Message) -> None:
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
    keys = [(e.provider, e.event_key) for e in reports]
    seen = set()
    if keys:
        seen = {
            (p, k)
            for p, k in session.execute(
                select(MessageEvent.provider, MessageEvent.event_key).where(
                    col(MessageEvent.provider).in_({p for p, _ in keys}),
                    col(MessageEvent.event_key).in_({k for _, k in keys}),
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
    matched = _find_messages(session, fresh)
    for i, report in enumerate(fresh):
        message = matched.get(i)
        if message is None:
            log.warning(
                "delivery report from %s for unknown message (ours %s, theirs %s) ignored",
                report.provider,
                report.message_id,
                report.provider_message_id,
            )
            continue
        status = report.state.value if report.state != DeliveryState.UNDELIVERED else "undelivered"
        session.add(
            MessageEvent(
                message_id=message.id,
                status=status,
                reason=report.reason.value if report.reason else None,
                detail=report.detail[:500],
                provider=report.provider,
                event_key=report.event_key,
            )
        )
        _apply_report(session, message, report, policy)
    for sms in inbound:
        # Conversations, STOP/START, the auto-responder and forwarding live in hub.inbound.
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
