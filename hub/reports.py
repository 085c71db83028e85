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

from sqlalchemy import Engine, and_, or_
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from hub.db import session_scope
from hub.models import (
    FINAL_STATUSES,
    InboundMessage,
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


def _find_messages(session: Session, reports: Sequence[DeliveryReport]) -> dict[int, Message]:
    ids = {r.message_id for r in reports if r.message_id}
    refs = {(r.provider, r.provider_message_id) for r in reports if r.provider_message_id}
    conditions: list[Any] = []
    if ids:
        conditions.append(col(Message.id).in_(ids))
    for provider, pmid in refs:
        conditions.append(
            and_(col(Message.provider) == provider, col(Message.provider_message_id) == pmid)
        )
    if not conditions:
        return {}
    found = session.exec(select(Message).where(or_(*conditions))).all()
    by_id = {m.id: m for m in found}
    by_ref = {(m.provider, m.provider_message_id): m for m in found}
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
    message.updated_at = now
    session.add(message)


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
                    col(MessageEvent.event_key).in_({k for _, k in keys})
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
        exists = session.exec(
            select(InboundMessage.id).where(
                InboundMessage.provider == sms.provider, InboundMessage.event_key == sms.event_key
            )
        ).first()
        if exists is not None:
            continue
        last = session.exec(
            select(Message)
            .where(Message.recipient == sms.sender)
            .order_by(col(Message.created_at).desc())
            .limit(1)
        ).first()
        session.add(
            InboundMessage(
                provider=sms.provider,
                event_key=sms.event_key,
                sender=sms.sender,
                recipient=sms.recipient,
                text=sms.text,
                account_id=last.account_id if last else None,
                reply_to_message_id=last.id if last else None,
                received_at=sms.received_at or utcnow(),
            )
        )


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
