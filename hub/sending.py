"""submit(): the one door every SMS goes through before the outbox.

validate → normalize numbers → leave out blacklisted and invalid-listed numbers → campaign
rules (sender per country, opt-out mention, marketing hours) → count segments → charge
credits → write one outbox row per recipient, all in one transaction.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from hub import compliance, credits, links, phone, segments
from hub.accounts import ancestors, funding_account, get_account
from hub.config import Config
from hub.db import session_scope
from hub.errors import InvalidInput
from hub.models import (
    BlacklistEntry,
    InvalidNumber,
    Message,
    MessageStatus,
    MessageType,
    new_id,
)
from hub.timeutil import as_utc, utcnow

_SENDER_ALNUM = re.compile(r"^[A-Za-z0-9 .\-_&]{1,11}$")
_SENDER_NUMERIC = re.compile(r"^\+?[0-9]{3,15}$")


@dataclass
class SubmitRequest:
    """What a door (API, CLI, mail, calendar) asks to send."""

    account: str | int
    recipients: Sequence[str]
    text: str
    sender: str | None = None
    type: str = MessageType.ALERT.value
    send_at: datetime | None = None
    source: str = "api"
    # Base of the per-recipient idempotency keys; a retry with the same key sends nothing new.
    idempotency_key: str | None = None
    # The one confirmation of an opt-out: the only SMS that may reach a blacklisted number.
    opt_out_notice: bool = False
    # Personalised sends (merge fields): each recipient's own text, keyed by E.164;
    # recipients not in it get TEXT. Every text gets its own opt-out mention, part count,
    # cap and price; one that is too long or empty leaves only that recipient out.
    texts: Mapping[str, str] | None = None
    # The campaign these messages belong to (hub.campaigns).
    campaign_id: int | None = None
    # Charge nothing (the free test SMS of a template to the account's own number; the
    # caller enforces who may and how often).
    free: bool = False
    # Replace every http(s) URL of the text by a short link of each recipient's own, so a
    # click tells which number clicked (hub.links).
    shorten_links: bool = False


@dataclass
class RecipientResult:
    input: str
    status: str  # queued | scheduled | duplicate | rejected
    e164: str | None = None
    message_id: str | None = None
    credits: int = 0
    reason: str | None = None


@dataclass
class SubmitResult:
    batch_id: str
    account: str
    encoding: str
    segments: int
    credits_charged: int
    balance_after: int | None
    recipients: list[RecipientResult] = field(default_factory=list)
    # What the sender should know (a named sender cannot take replies, ...).
    warnings: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> list[RecipientResult]:
        return [r for r in self.recipients if r.status in {"queued", "scheduled", "duplicate"}]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["accepted"] = len(self.accepted)
        return data


def validate_sender(sender: str | None) -> str | None:
    """Basic sender check (country rules come with the campaign rules)."""
    if sender is None or sender == "":
        return None
    if _SENDER_NUMERIC.match(sender) or _SENDER_ALNUM.match(sender):
        return sender
    raise InvalidInput(
        f"sender {sender!r} is not usable: use up to 11 letters and digits, or a phone number"
    )


def credits_for(config: Config, country: str | None, parts: int) -> int:
    """Credits one recipient costs: parts times the destination country's price."""
    price = config.sending.country_credits.get(country or "", config.sending.credits_per_part)
    return price * parts


def check_text(config: Config, text: str) -> segments.SegmentInfo:
    """Refuse empty texts and texts over the part cap, before anything is charged."""
    if not text or not text.strip():
        raise InvalidInput("the text is empty; write the message to send")
    info = segments.count(text)
    if info.segments > config.sending.max_parts:
        raise InvalidInput(
            f"the text needs {info.segments} SMS parts ({info.encoding}, {info.length} "
            f"{'septets' if info.encoding == 'GSM-7' else 'characters'}); the limit is "
            f"{config.sending.max_parts} (sending.max_parts): shorten it"
        )
    return info


def submit_in(session: Session, config: Config, req: SubmitRequest) -> SubmitResult:
    """Do the whole submit inside SESSION's transaction (the caller commits)."""
    account = get_account(session, req.account)
    payer = funding_account(session, account)
    if req.type not in {t.value for t in MessageType}:
        raise InvalidInput(f"message type must be 'alert' or 'marketing', not {req.type!r}")
    sender = validate_sender(req.sender if req.sender is not None else account.default_sender)

    def billable(raw: str) -> tuple[str, segments.SegmentInfo]:
        # The opt-out mention is part of what is sent, so it is counted, capped and charged.
        final = compliance.billable_text(raw, sender, req.type, config.optout_mention)
        # Short links all have one length: the text with placeholder codes counts (and is
        # charged) exactly as each recipient's personalised text will.
        counted = links.preview_text(config, final) if req.shorten_links else final
        return final, check_text(config, counted)

    # The common text; a personalised send checks it only if some recipient gets it.
    base = billable(req.text) if req.texts is None else None
    if not req.recipients:
        raise InvalidInput("no recipient given; name at least one phone number")
    if len(req.recipients) > config.sending.max_recipients:
        raise InvalidInput(
            f"{len(req.recipients)} recipients in one submission; the limit is "
            f"{config.sending.max_recipients} (sending.max_recipients)"
        )
    now = utcnow()
    send_at = as_utc(req.send_at) if req.send_at else now
    scheduled = send_at > now + timedelta(seconds=1)
    if not scheduled:
        send_at = now
    region = account.default_region or config.hub.default_region
    batch_id = new_id()
    assert account.id is not None and payer.id is not None

    results: list[RecipientResult] = []
    wanted: dict[str, RecipientResult] = {}
    countries: dict[str, str | None] = {}
    for raw in req.recipients:
        number = phone.parse_number(raw, region)
        result = RecipientResult(input=raw, status="rejected", e164=number.e164)
        results.append(result)
        if not number.valid or number.e164 is None:
            result.reason = number.reason or "not a valid phone number"
        elif number.type == "landline":
            result.reason = "a landline number cannot receive SMS"
        elif number.e164 in wanted:
            result.status = "duplicate"
            result.reason = "listed twice in this submission; sent once"
        else:
            wanted[number.e164] = result
            countries[number.e164] = number.country

    if wanted:
        # A parent's opt-out list covers its sub-accounts too.
        scope = [a.id for a in ancestors(session, account)]
        blocked = set(
            session.exec(
                select(BlacklistEntry.number).where(
                    col(BlacklistEntry.account_id).in_(scope),
                    col(BlacklistEntry.number).in_(list(wanted)),
                )
            ).all()
        )
        npai = set(
            session.exec(
                select(InvalidNumber.number).where(
                    col(InvalidNumber.account_id).in_(scope),
                    col(InvalidNumber.number).in_(list(wanted)),
                )
            ).all()
        )
        for e164 in list(wanted):
            if e164 in blocked and not req.opt_out_notice:
                wanted.pop(e164).reason = "the number is on the account's blacklist (STOP)"
            elif e164 in npai:
                wanted.pop(e164).reason = "the number is on the account's invalid-number list"

    bodies: dict[str, tuple[str, segments.SegmentInfo]] = {}
    for e164 in list(wanted):
        if req.texts is not None and e164 in req.texts:
            try:
                bodies[e164] = billable(req.texts[e164])
            except InvalidInput as exc:
                # Its merge fields made this one text unusable; the others go on.
                wanted.pop(e164).reason = str(exc)
        else:
            base = base or billable(req.text)
            bodies[e164] = base

    # One sender for the whole submission: refused in any recipient's country, refused.
    warnings = compliance.require_sender(sender, {countries[e164] for e164 in wanted})

    keys = {
        e164: f"{req.idempotency_key}:{e164}" if req.idempotency_key else f"{batch_id}:{e164}"
        for e164 in wanted
    }
    if req.idempotency_key and keys:
        for existing in session.exec(
            select(Message).where(col(Message.idempotency_key).in_(list(keys.values())))
        ).all():
            result = wanted.pop(existing.recipient)
            result.status = "duplicate"
            result.message_id = existing.id
            result.credits = 0
            result.reason = "already submitted with this idempotency key; not sent again"

    total = 0
    rows = []
    marketing = req.type == MessageType.MARKETING.value and not req.opt_out_notice
    for e164, result in wanted.items():
        text, info = bodies[e164]
        cost = 0 if req.free else credits_for(config, countries[e164], info.segments)
        due = send_at
        if marketing:
            # Deferred to the recipient's next marketing hour, or OutsideMarketingHours
            # (an InvalidInput) with outside_hours = "refuse": nothing is charged then.
            due = compliance.marketing_due_at(
                send_at, countries[e164], config.marketing_hours, number=e164
            )
        deferred = due > send_at
        message_id = new_id()
        if req.shorten_links:
            text = links.personalize_links(
                session, account.id, text, e164, message_id, config=config
            )
        message = Message(
            id=message_id,
            account_id=account.id,
            charged_account_id=payer.id,
            batch_id=batch_id,
            idempotency_key=keys[e164],
            recipient=e164,
            sender=sender,
            text=text,
            encoding=info.encoding,
            segments=info.segments,
            credits=cost,
            type=req.type,
            source=req.source,
            campaign_id=req.campaign_id,
            status=MessageStatus.QUEUED.value,
            scheduled=scheduled or deferred,
            created_at=now,
            due_at=due,
            updated_at=now,
        )
        rows.append(message)
        result.status = "scheduled" if scheduled or deferred else "queued"
        if deferred:
            result.reason = f"held until {due.isoformat()} (marketing hours in {countries[e164]})"
        result.message_id = message.id
        result.credits = cost
        total += cost

    # What the result reports: the common text's count or, for a personalised send, the
    # count of the text that needs the most parts (each Message has its own).
    shown = base[1] if base else None
    if req.texts is not None and bodies:
        shown = max((info for _, info in bodies.values()), key=lambda i: i.segments)
    balance = None
    if rows:
        if req.texts is None and shown is not None:
            note = f"{len(rows)} SMS x {shown.segments} part(s) via {req.source}"
        else:
            parts = sum(m.segments for m in rows)
            note = f"{len(rows)} personalised SMS, {parts} part(s) via {req.source}"
        balance = credits.charge(
            session, payer, total, origin=account, batch_id=batch_id, note=note, config=config
        )
        session.add_all(rows)
        session.flush()
    return SubmitResult(
        batch_id=batch_id,
        account=account.name,
        encoding=shown.encoding if shown else "GSM-7",
        segments=shown.segments if shown else 0,
        credits_charged=total,
        balance_after=balance,
        recipients=results,
        warnings=warnings,
    )


def submit(engine: Engine, config: Config, req: SubmitRequest) -> SubmitResult:
    """Submit in its own transaction; a concurrent retry with the same key is resolved once."""
    for attempt in range(2):
        try:
            with session_scope(engine) as session:
                return submit_in(session, config, req)
        except IntegrityError:
            # Another submit with the same idempotency key won the race: the second pass
            # finds its rows and reports them as duplicates.
            if attempt == 1 or not req.idempotency_key:
                raise
    raise AssertionError("unreachable")


def cancel(session: Session, message_id: str, *, account_ids: set[int] | None = None) -> Message:
    """Cancel a message the dispatcher has not claimed yet, refunding its credits."""
    from hub.errors import ConflictError, NotFound
    from hub.outbox import cancel_queued

    message = session.get(Message, message_id)
    if message is None or (account_ids is not None and message.account_id not in account_ids):
        raise NotFound(f"no message {message_id!r}")
    if not cancel_queued(session, message):
        session.refresh(message)
        raise ConflictError(
            f"message {message_id} is {message.status}; only queued or scheduled messages "
            "can be cancelled"
        )
    return message
