"""The outbox's state changes, each one guarded SQL statement so concurrent workers agree.

queued → claimed (a dispatcher holds it) → submitting (its provider call has started) → sent
→ delivered | undelivered | dr_unavailable; queued → cancelled; claimed → queued (handed
back, or its holder died) | failed; submitting → queued (retry) | failed | unknown (crash, no
dedupe). A claim is a lease: `claimed_at` is renewed while the holder lives, and only a
claim not renewed for the lease is taken over. Only a message whose provider call had
started may end `unknown`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BindParameter, Engine, TextClause, bindparam, insert, update
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from hub.core.metrics import CLAIMS_EXPIRED, CLAIMS_RENEWED
from hub.core.timeutil import as_utc, utcnow
from hub.inbound import webhooks
from hub.sending import credits
from hub.store.db import TIMESTAMP, is_sqlite, member, padded, session_scope, sql, table
from hub.store.models import Message, MessageEvent, MessageStatus

log = logging.getLogger("smshub.outbox")

_CLAIM = """
UPDATE messages
   SET status = 'claimed', claimed_by = :worker, claimed_at = :now, updated_at = :now
 WHERE id IN (SELECT id FROM messages
               WHERE status = 'queued' AND due_at <= :now
               ORDER BY due_at LIMIT :limit {lock})
RETURNING id, account_id, charged_account_id, recipient, sender, text, encoding, segments,
          credits, attempts, send_seq, first_sent_at, type
"""


@dataclass(frozen=True)
class Claimed:
    """A message this worker now owns until it writes an outcome.

    `attempts` counts the attempt about to be made (the stored count is raised only once
    the provider call starts, see `mark_started`).
    """

    id: str
    account_id: int
    charged_account_id: int
    recipient: str
    sender: str | None
    text: str
    encoding: str
    segments: int
    credits: int
    attempts: int
    send_seq: int
    first_sent_at: datetime | None
    type: str = "alert"


@dataclass(frozen=True)
class Outcome:
    """What the dispatcher learned while sending one claimed message."""

    message: Claimed
    status: str  # sent | queued (retry later) | failed
    provider: str | None = None
    provider_message_id: str | None = None
    reason: str | None = None
    detail: str = ""
    retry_at: datetime | None = None
    # False when the message was held without trying (provider marked down, marketing hours):
    # such a round must not use up one of its attempts.
    counted: bool = True


def claim(engine: Engine, worker: str, limit: int, now: datetime | None = None) -> list[Claimed]:
    """Take up to LIMIT due messages for WORKER (SKIP LOCKED on PostgreSQL)."""
    now = now or utcnow()
    lock = "" if is_sqlite(engine) else "FOR UPDATE SKIP LOCKED"
    with session_scope(engine) as session:
        rows = session.execute(
            sql(_CLAIM.format(lock=lock)).columns(first_sent_at=TIMESTAMP),
            {"worker": worker, "now": now, "limit": limit},
        ).all()
    claimed = [
        Claimed(
            id=row.id,
            account_id=row.account_id,
            charged_account_id=row.charged_account_id,
            recipient=row.recipient,
            sender=row.sender,
            text=row.text,
            encoding=row.encoding,
            segments=row.segments,
            credits=row.credits,
            attempts=row.attempts + 1,
            send_seq=row.send_seq,
            first_sent_at=as_utc(row.first_sent_at) if row.first_sent_at else None,
            type=row.type,
        )
        for row in rows
    ]
    claimed.sort(key=lambda c: c.id)
    return claimed


_IDS: BindParameter[list[str]] = bindparam("ids", expanding=True)


def mark_started(engine: Engine, worker: str, ids: Sequence[str]) -> set[str]:
    """Record that the provider calls of IDS (claimed by WORKER) start now; returns the ids
    that may go out: a message cancelled meanwhile, or whose lease another worker took over,
    is left out and must not be sent."""
    if not ids:
        return set()
    now = utcnow()
    with session_scope(engine) as session:
        rows = session.execute(
            sql(
                "UPDATE messages SET status = 'submitting', attempts = attempts + 1, "
                "claimed_at = :now, updated_at = :now "
                "WHERE id IN :ids AND claimed_by = :worker AND status = 'claimed' RETURNING id"
            ).bindparams(_IDS),
            {"ids": padded(ids), "worker": worker, "now": now},
        ).all()
    return {row[0] for row in rows}


def renew(engine: Engine, worker: str, ids: Sequence[str]) -> int:
    """Renew WORKER's lease on IDS (the claims it still holds); returns how many it holds."""
    if not ids:
        return 0
    # Rows another transaction holds (an outcome or a report being written, which ends or
    # keeps the claim anyway) are skipped, not waited for: no lock-order deadlock with them.
    lock = "" if is_sqlite(engine) else " ORDER BY id FOR UPDATE SKIP LOCKED"
    with session_scope(engine) as session:
        result = session.execute(
            sql(
                "UPDATE messages SET claimed_at = :now WHERE id IN (SELECT id FROM messages "
                "WHERE id IN :ids AND claimed_by = :worker "
                f"AND status IN ('claimed', 'submitting'){lock})"
            ).bindparams(_IDS),
            {"ids": padded(ids), "worker": worker, "now": utcnow()},
        )
    renewed = int(result.rowcount)  # type: ignore[attr-defined]
    CLAIMS_RENEWED.inc(renewed)
    return renewed


def release(engine: Engine, worker: str, ids: Sequence[str]) -> int:
    """Hand back WORKER's claims on IDS that never reached a provider (a stop): they are
    queued again as they were, attempts and charge unchanged. Returns how many."""
    if not ids:
        return 0
    now = utcnow()
    with session_scope(engine) as session:
        rows = session.execute(
            sql(
                "UPDATE messages SET status = 'queued', claimed_by = NULL, updated_at = :now "
                "WHERE id IN :ids AND claimed_by = :worker AND status = 'claimed' RETURNING id"
            ).bindparams(_IDS),
            {"ids": padded(ids), "worker": worker, "now": now},
        ).all()
    return len(rows)


def _events(session: Session, rows: Sequence[dict[str, object]]) -> None:
    if rows:
        session.execute(
            sql(
                "INSERT INTO message_events (message_id, status, reason, detail, provider, "
                "event_key, created_at) VALUES (:message_id, :status, :reason, :detail, "
                ":provider, NULL, :now)"
            ),
            list(rows),
        )


def record_outcomes(engine: Engine, worker: str, outcomes: Sequence[Outcome]) -> None:
    """Write what happened to a batch of claimed messages in one transaction.

    A PostgreSQL deadlock (a report updating the same rows) rolls the whole batch back, so it
    is simply written again: losing it would turn messages the provider took into `unknown`.
    """
    for attempt in range(5):
        try:
            _record_outcomes(engine, worker, outcomes)
            return
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != "40P01" or attempt == 4:
                raise
            log.warning("deadlock while recording %d outcomes; writing them again", len(outcomes))


_MARK_SENT = sql(
    # A report may already have moved the row on (fast providers): keep its status.
    "UPDATE messages SET status = CASE WHEN status = 'submitting' THEN 'sent' "
    "ELSE status END, provider = :provider, provider_message_id = :pmid, "
    "sent_at = :now, first_sent_at = COALESCE(first_sent_at, :now), "
    "claimed_by = NULL, updated_at = :now "
    "WHERE id = :id AND claimed_by = :worker"
)
_MARK_RETRY = sql(
    # The stored attempts count the provider calls started (mark_started): a held round
    # gives its call back, a counted one that never reached a provider (no route) still uses
    # up an attempt.
    "UPDATE messages SET status = 'queued', due_at = :due, claimed_by = NULL, "
    "detail = :detail, updated_at = :now, attempts = attempts + CASE "
    "WHEN status = 'claimed' AND :counted = 1 THEN 1 "
    "WHEN status = 'submitting' AND :counted = 0 THEN -1 ELSE 0 END "
    "WHERE id = :id AND claimed_by = :worker "
    "AND status IN ('claimed', 'submitting')"
)
_MARK_UNKNOWN = sql(
    "UPDATE messages SET status = 'unknown', reason = :reason, detail = :detail, "
    "provider = :provider, final_at = :now, claimed_by = NULL, updated_at = :now "
    "WHERE id = :id AND claimed_by = :worker AND status = 'submitting'"
)
_MARK_FAILED = sql(
    "UPDATE messages SET status = 'failed', reason = :reason, detail = :detail, "
    "provider = :provider, final_at = :now, claimed_by = NULL, updated_at = :now "
    "WHERE id = :id AND claimed_by = :worker "
    "AND status IN ('claimed', 'submitting')"
)


def _record_outcomes(engine: Engine, worker: str, outcomes: Sequence[Outcome]) -> None:
    if not outcomes:
        return
    now = utcnow()

    def of(status: MessageStatus) -> list[Outcome]:
        return [o for o in outcomes if o.status == status]

    with session_scope(engine) as session:
        _mark(session, _MARK_SENT, [_sent_params(o, now, worker) for o in of(MessageStatus.SENT)])
        _mark(
            session, _MARK_RETRY, [_retry_params(o, now, worker) for o in of(MessageStatus.QUEUED)]
        )
        # Maybe sent: kept charged, never re-sent, reported as unknown.
        _mark(
            session,
            _MARK_UNKNOWN,
            [_final_params(o, now, worker) for o in of(MessageStatus.UNKNOWN)],
        )
        failed_ids = _mark_failed(session, of(MessageStatus.FAILED), now, worker)
        webhooks.message_events(session, failed_ids)
        _events(session, [_event_params(o, now) for o in outcomes])


def _mark(session: Session, statement: TextClause, params: list[dict[str, Any]]) -> None:
    if params:
        session.execute(statement, params)


def _sent_params(o: Outcome, now: datetime, worker: str) -> dict[str, Any]:
    return {
        "id": o.message.id,
        "provider": o.provider,
        "pmid": o.provider_message_id,
        "now": now,
        "worker": worker,
    }


def _retry_params(o: Outcome, now: datetime, worker: str) -> dict[str, Any]:
    return {
        "id": o.message.id,
        "due": o.retry_at or now,
        "counted": 1 if o.counted else 0,
        "detail": o.detail[:500],
        "now": now,
        "worker": worker,
    }


def _final_params(o: Outcome, now: datetime, worker: str) -> dict[str, Any]:
    return {
        "id": o.message.id,
        "reason": o.reason,
        "detail": o.detail[:500],
        "provider": o.provider,
        "now": now,
        "worker": worker,
    }


def _event_params(o: Outcome, now: datetime) -> dict[str, Any]:
    return {
        "message_id": o.message.id,
        "status": o.status,
        "reason": o.reason,
        "detail": o.detail[:500],
        "provider": o.provider,
        "now": now,
    }


def _mark_failed(
    session: Session, failed: Sequence[Outcome], now: datetime, worker: str
) -> list[str]:
    """Mark FAILED as failed and refund those still held by WORKER; returns their ids."""
    failed_ids: list[str] = []
    for o in failed:
        result = session.execute(_MARK_FAILED, _final_params(o, now, worker))
        if result.rowcount == 1:  # type: ignore[attr-defined]
            # Never reached the phone: the credits go back.
            credits.refund(
                session,
                o.message.charged_account_id,
                o.message.credits,
                origin_id=o.message.account_id,
                message_id=o.message.id,
                note=f"not sent: {o.reason or 'failed'}",
            )
            failed_ids.append(o.message.id)
    return failed_ids


def cancel_queued(session: Session, message: Message) -> bool:
    """Cancel MESSAGE if no dispatcher has claimed it; refunds its credits."""
    now = utcnow()
    result = session.execute(
        sql(
            "UPDATE messages SET status = 'cancelled', final_at = :now, updated_at = :now "
            "WHERE id = :id AND status = 'queued'"
        ),
        {"id": message.id, "now": now},
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    credits.refund(
        session,
        message.charged_account_id,
        message.credits,
        origin_id=message.account_id,
        message_id=message.id,
        note="cancelled before sending",
    )
    session.add(MessageEvent(message_id=message.id, status=MessageStatus.CANCELLED.value))
    session.flush()
    session.refresh(message)
    return True


_MESSAGES = table(Message)
_CANCEL_NOW = bindparam("now", type_=TIMESTAMP)
# Core, not ``sql``: the id list is a ``member`` test (one array on PostgreSQL).
_CANCEL_MANY = (
    update(_MESSAGES)
    .where(member(_MESSAGES.c.id, "ids"), _MESSAGES.c.status == MessageStatus.QUEUED.value)
    .values(status=MessageStatus.CANCELLED.value, final_at=_CANCEL_NOW, updated_at=_CANCEL_NOW)
    .returning(
        _MESSAGES.c.id,
        _MESSAGES.c.credits,
        _MESSAGES.c.charged_account_id,
        _MESSAGES.c.account_id,
    )
)
_INSERT_EVENTS = insert(table(MessageEvent))
# Ids per statement: far below SQLite's and PostgreSQL's bound-parameter limits.
_CANCEL_CHUNK = 500


def cancel_queued_many(session: Session, message_ids: Sequence[str]) -> set[str]:
    """Cancel those of MESSAGE_IDS no dispatcher has claimed, refunding each (one ledger row
    per message, as ``cancel_queued``); returns the ids cancelled. A few statements whatever
    their number: the planner of a calendar replaces thousands at once."""
    now = utcnow()
    done: list[tuple[str, int, int, int]] = []
    ids = sorted(set(message_ids))
    for start in range(0, len(ids), _CANCEL_CHUNK):
        done += [
            (row[0], int(row[1]), int(row[2]), int(row[3]))
            for row in session.execute(
                _CANCEL_MANY, {"ids": padded(ids[start : start + _CANCEL_CHUNK]), "now": now}
            )
        ]
    by_payer: dict[int, list[credits.Refund]] = {}
    for message_id, amount, payer_id, origin_id in sorted(done):
        by_payer.setdefault(payer_id, []).append(
            credits.Refund(amount, origin_id, message_id, "cancelled before sending")
        )
    for payer_id, refunds in sorted(by_payer.items()):
        credits.refund_many(session, payer_id, refunds)
    if done:
        session.connection().execute(
            _INSERT_EVENTS,
            [
                {
                    "message_id": message_id,
                    "status": MessageStatus.CANCELLED.value,
                    "detail": "",
                    "created_at": now,
                }
                for message_id, *_ in done
            ],
        )
    return {message_id for message_id, *_ in done}


_SETTLE_ABANDONED = sql(
    "UPDATE messages SET status = :status, claimed_by = NULL, updated_at = :now, "
    "final_at = :final_at, reason = COALESCE(:reason, reason) "
    "WHERE id = :id AND status = :state AND claimed_by = :worker"
).bindparams(bindparam("final_at", type_=TIMESTAMP))


def reconcile_abandoned(
    engine: Engine,
    can_resend: Callable[[int], bool],
    older_than: datetime | None,
    *,
    worker: str | None = None,
) -> tuple[int, int]:
    """Settle messages whose holder let its lease lapse (it died, or stopped past its grace).

    A message still `claimed` never reached a provider: it is queued again, as it was. One
    in `submitting` had its provider call started: re-queued when every provider on the
    account's route deduplicates on our key (the re-send cannot double), otherwise marked
    `unknown`: it may or may not have gone out. OLDER_THAN None takes every claim (one
    process on SQLite, at start); WORKER limits it to that worker's claims. Returns
    (re-queued, unknown) for the `submitting` ones.
    """
    now = utcnow()
    settled: Counter[str] = Counter()
    with session_scope(engine) as session:
        rows = session.execute(*_abandoned_query(engine, older_than, worker)).all()
        for message_id, account_id, holder, state in rows:
            started = state == MessageStatus.SUBMITTING
            resend = not started or can_resend(account_id)
            if _settle_abandoned(session, message_id, holder, state, resend, now):
                settled[_abandoned_kind(session, message_id, started, resend)] += 1
    handed_back, requeued, unknown = settled["handed_back"], settled["requeued"], settled["unknown"]
    CLAIMS_EXPIRED.inc(handed_back + requeued + unknown)
    if handed_back:
        log.warning(
            "took back %d claimed message(s) never handed to a provider: queued again",
            handed_back,
        )
    if requeued or unknown:
        log.warning(
            "recovered %d message(s) left in submitting: %d re-queued, %d marked unknown",
            requeued + unknown,
            requeued,
            unknown,
        )
    return requeued, unknown


def _abandoned_query(
    engine: Engine, older_than: datetime | None, worker: str | None
) -> tuple[TextClause, dict[str, object]]:
    query = (
        "SELECT id, account_id, claimed_by, status FROM messages "
        "WHERE status IN ('claimed', 'submitting')"
    )
    params: dict[str, object] = {}
    if older_than is not None:
        query += " AND claimed_at < :cutoff"
        params["cutoff"] = older_than
    if worker is not None:
        query += " AND claimed_by = :worker"
        params["worker"] = worker
    # Rows in id order, locked (skipping rows a report is updating) so reconcile and the
    # report callback never lock the same rows in opposite orders (a deadlock).
    query += " ORDER BY id"
    if not is_sqlite(engine):
        query += " FOR UPDATE SKIP LOCKED"
    return sql(query), params


def _settle_abandoned(
    session: Session, message_id: str, holder: str, state: str, resend: bool, now: datetime
) -> bool:
    """Queue the message again (RESEND) or mark it unknown, if HOLDER still holds it."""
    status = MessageStatus.QUEUED if resend else MessageStatus.UNKNOWN
    result = session.execute(
        _SETTLE_ABANDONED,
        {
            "status": status.value,
            "now": now,
            "final_at": None if resend else now,
            "reason": None if resend else "process_died",
            "id": message_id,
            "state": state,
            "worker": holder,
        },
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def _abandoned_kind(session: Session, message_id: str, started: bool, resend: bool) -> str:
    """What settling did, with the event a started message gets."""
    if not started:
        # Never handed to a provider: nothing happened to it worth an event.
        return "handed_back"
    session.add(
        MessageEvent(
            message_id=message_id,
            status=(MessageStatus.QUEUED if resend else MessageStatus.UNKNOWN).value,
            detail="re-queued after a crash"
            if resend
            else "the process died while sending; the provider cannot tell if it went out",
        )
    )
    return "requeued" if resend else "unknown"


def expire_reports(engine: Engine, window: timedelta, now: datetime | None = None) -> int:
    """Sent messages with no final report after WINDOW become dr_unavailable."""
    now = now or utcnow()
    with session_scope(engine) as session:
        rows = session.execute(
            sql(
                "UPDATE messages SET status = 'dr_unavailable', final_at = :now, updated_at = :now "
                "WHERE status = 'sent' AND first_sent_at < :cutoff RETURNING id"
            ),
            {"now": now, "cutoff": now - window},
        ).all()
        ids = [row[0] for row in rows]
        webhooks.message_events(session, ids)
        return len(ids)
