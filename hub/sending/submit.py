"""submit(): the one door every SMS goes through before the outbox.

validate → normalize numbers → leave out blacklisted and invalid-listed numbers → campaign
rules (sender per country, opt-out mention, marketing hours) → count segments → charge
credits → write one outbox row per recipient, all in one transaction.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from hub import compliance
from hub.campaigns import links, unsubscribe
from hub.compliance.night import NightHours
from hub.compliance.optout_mention import rule_for, unsubscribe_url
from hub.core import phone, segments
from hub.core.config import Config
from hub.core.timeutil import as_utc, utcnow
from hub.errors import HubError, InvalidInput
from hub.sending import credits
from hub.sending.accounts import ancestors, funding_account, get_account
from hub.sending.lookups import RecipientLookups
from hub.sending.metrics import note_submitted
from hub.store.db import session_scope, table
from hub.store.models import Account, Message, MessageStatus, MessageType, new_id

_SENDER_ALNUM = re.compile(r"^[A-Za-z0-9 .\-_&]{1,11}$")
_SENDER_NUMERIC = re.compile(r"^\+?[0-9]{3,15}$")
# Several rows are one executemany: one round trip (psycopg pipelines it), no RETURNING
# (which would make SQLAlchemy build a multi-row statement, dearer than the driver's loop).
_INSERT_MESSAGES = insert(table(Message))


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
    # The door it came through, for the metrics (smshub_submitted_total); empty: SOURCE.
    # Mail has one source ("mail") but two doors (smtp, imap).
    door: str = ""
    # Base of the per-recipient idempotency keys; a retry with the same key sends nothing new.
    idempotency_key: str | None = None
    # The one confirmation of an opt-out: the only SMS that may reach a blacklisted number.
    opt_out_notice: bool = False
    # Personalised sends (merge fields): each recipient's own text, keyed by E.164;
    # recipients not in it get TEXT. Every text gets its own opt-out mention, part count,
    # cap and price; one that is too long or empty leaves only that recipient out.
    texts: Mapping[str, str] | None = None
    # The campaign these messages belong to (hub.campaigns.campaigns).
    campaign_id: int | None = None
    # Charge nothing (the free test SMS of a template to the account's own number; the
    # caller enforces who may and how often).
    free: bool = False
    # Replace every http(s) URL of the text by a short link of each recipient's own, so a
    # click tells which number clicked (hub.campaigns.links); None: as the account's default
    # (Account.track_links), which the doors people write through (API, console, campaigns,
    # mail) pass; automatic texts (reminders, auto-replies, alerts) keep False.
    shorten_links: bool | None = False


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
    batch = SubmitBatch(session, config)
    result = batch.submit(req)
    batch.settle()
    batch.write()
    return result


@dataclass
class _Pending:
    """A submission's charge, taken at ``settle``, and its outbox rows, written once paid."""

    payer: Account
    charge: credits.Charge
    result: SubmitResult
    rows: list[dict[str, Any]]
    door: str


class SubmitBatch:
    """Submissions sharing one transaction (the mails of one group commit).

    ``prepare`` reads the blacklists, invalid lists and idempotency keys of all of them in
    one query; ``submit`` checks one (raising as ``submit_in`` does) and keeps its rows and
    its charge; ``settle`` charges what was submitted, per paying account in one statement
    (InsufficientCredits when it cannot all be paid: the caller rolls back); ``write``
    inserts the outbox rows in one statement. Later submissions see the keys of earlier ones,
    so the outcome is that of one ``submit_in`` after another.
    """

    def __init__(
        self, session: Session, config: Config, lookups: RecipientLookups | None = None
    ) -> None:
        self.session = session
        self.config = config
        self.lookups = lookups or RecipientLookups()
        self.rows: list[dict[str, Any]] = []
        self.pending: list[_Pending] = []
        # The accounts read, held for the batch: the session's identity map keeps only what
        # is referenced, and each submission would read them again.
        self._accounts: list[Account] = []
        # Each request's numbers are parsed once, in prepare or in submit.
        self._numbers: dict[tuple[str, str], phone.NumberInfo] = {}
        # Messages written by door, counted in the metrics once the transaction commits.
        self._doors: Counter[str] = Counter()

    def _parse(self, raw: str, region: str) -> phone.NumberInfo:
        info = self._numbers.get((raw, region))
        if info is None:
            info = self._numbers[(raw, region)] = phone.parse_number(raw, region)
        return info

    def prepare(
        self, requests: Sequence[SubmitRequest], **extra: list[Any]
    ) -> list[tuple[str, int, str, str]]:
        """Read what submitting REQUESTS will ask the database, in one query; EXTRA binds the
        extra selects of the lookups' statement, whose rows are returned.

        Requests whose account cannot be read, or with too many recipients, are left for
        ``submit`` to refuse."""
        scope: set[int] = set()
        numbers: set[str] = set()
        keys: set[str] = set()
        for req in requests:
            if len(req.recipients) > self.config.sending.max_recipients:
                continue
            try:
                account = get_account(self.session, req.account)
            except HubError:
                continue
            region = account.default_region or self.config.hub.default_region
            wanted = {self._parse(raw, region).e164 for raw in req.recipients}
            wanted.discard(None)
            chain = ancestors(self.session, account)
            self._accounts += chain
            scope.update(a.id for a in chain if a.id is not None)
            numbers.update(n for n in wanted if n is not None)
            if req.idempotency_key:
                keys.update(f"{req.idempotency_key}:{e164}" for e164 in wanted)
        return self.lookups.ensure(self.session, scope, numbers, keys, **extra)

    def submit(self, req: SubmitRequest) -> SubmitResult:
        """Check REQ and keep its rows and its charge (for ``settle`` and ``write``); raises as
        ``submit_in`` does. The result's ``balance_after`` comes with ``settle``."""
        session, config = self.session, self.config
        account = get_account(session, req.account)
        payer = funding_account(session, account)
        if req.type not in {t.value for t in MessageType}:
            raise InvalidInput(f"message type must be 'alert' or 'marketing', not {req.type!r}")
        sender = validate_sender(req.sender if req.sender is not None else account.default_sender)

        counted_texts: dict[tuple[str, str], tuple[str, segments.SegmentInfo]] = {}
        track = account.track_links if req.shorten_links is None else req.shorten_links
        region = account.default_region or config.hub.default_region

        def billable(raw: str, country: str | None) -> tuple[str, segments.SegmentInfo]:
            # The opt-out mention (the destination country's) is part of what is sent, so it
            # is counted, capped and charged; a link mention with a placeholder code of the
            # real length, replaced by each recipient's code when the rows are made.
            key = (raw, rule_for(sender, req.type, country, config.compliance))
            known = counted_texts.get(key)
            if known is not None:
                return known
            final = compliance.billable_text(
                raw,
                sender,
                req.type,
                config.optout_mention,
                country=country,
                rules=config.compliance,
                public_url=config.hub.public_url,
            )
            # Short links all have one length: the text with placeholder codes counts (and is
            # charged) exactly as each recipient's personalised text will.
            counted = links.preview_text(config, final) if track else final
            counted_texts[key] = final, check_text(config, counted)
            return counted_texts[key]

        # The common text, as the account's country reads it (checked before the numbers);
        # a personalised send checks it only if some recipient gets it.
        base = billable(req.text, region) if req.texts is None else None
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
        batch_id = new_id()
        assert account.id is not None and payer.id is not None

        results: list[RecipientResult] = []
        wanted: dict[str, RecipientResult] = {}
        countries: dict[str, str | None] = {}
        for raw in req.recipients:
            number = self._parse(raw, region)
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

        keys = {
            e164: f"{req.idempotency_key}:{e164}" if req.idempotency_key else f"{batch_id}:{e164}"
            for e164 in wanted
        }
        # A parent's opt-out list covers its sub-accounts too.
        scope = [a.id for a in ancestors(session, account) if a.id is not None]
        self.lookups.ensure(
            session, scope, list(wanted), list(keys.values()) if req.idempotency_key else []
        )
        for e164 in list(wanted):
            if self.lookups.is_blocked(scope, e164) and not req.opt_out_notice:
                wanted.pop(e164).reason = "the number is on the account's blacklist (STOP)"
            elif self.lookups.is_invalid(scope, e164):
                wanted.pop(e164).reason = "the number is on the account's invalid-number list"

        bodies: dict[str, tuple[str, segments.SegmentInfo]] = {}
        for e164 in list(wanted):
            raw_text = req.texts[e164] if req.texts is not None and e164 in req.texts else req.text
            try:
                bodies[e164] = billable(raw_text, countries[e164])
            except InvalidInput as exc:
                # Its merge fields (or its country's opt-out mention) made this one text
                # unusable; the others go on.
                wanted.pop(e164).reason = str(exc)

        # One sender for the whole submission: refused in any recipient's country, refused.
        warnings = compliance.require_sender(sender, {countries[e164] for e164 in wanted})

        if req.idempotency_key:
            for e164 in list(wanted):
                existing = self.lookups.existing.get(keys[e164])
                if existing is None:
                    continue
                result = wanted.pop(e164)
                result.status = "duplicate"
                result.message_id = existing
                result.credits = 0
                result.reason = "already submitted with this idempotency key; not sent again"

        # The account's night hours, for every send but the STOP confirmation (which answers
        # the recipient's own message).
        night = None
        if account.night_mode != "off" and not req.opt_out_notice:
            night = NightHours.of(account.night_mode, account.night_start, account.night_end)
        at_night = 0
        total = 0
        rows: list[dict[str, Any]] = []
        # Rows whose text ends with the placeholder unsubscribe link, to get their own code.
        with_link: list[dict[str, Any]] = []
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
            held_for_night = False
            if night is not None:
                zones = compliance.time_zones(countries[e164], e164) or (
                    config.marketing_hours.fallback_time_zone,
                )
                morning = night.morning_after(due, zones)
                if morning is not None:
                    at_night += 1
                    if night.mode == "hold":
                        due, held_for_night = morning, True
            deferred = due > send_at
            message_id = new_id()
            if rule_for(sender, req.type, countries[e164], config.compliance) == "link":
                with_link.append({"id": message_id, "recipient": e164})
            rows.append(
                {
                    "id": message_id,
                    "account_id": account.id,
                    "charged_account_id": payer.id,
                    "batch_id": batch_id,
                    "idempotency_key": keys[e164],
                    "recipient": e164,
                    "sender": sender,
                    "text": text,
                    "encoding": info.encoding,
                    "segments": info.segments,
                    "credits": cost,
                    "type": req.type,
                    "source": req.source,
                    "campaign_id": req.campaign_id,
                    "status": MessageStatus.QUEUED.value,
                    "scheduled": scheduled or deferred,
                    "created_at": now,
                    "due_at": due,
                    "updated_at": now,
                }
            )
            result.status = "scheduled" if scheduled or deferred else "queued"
            if held_for_night:
                result.reason = (
                    f"held until {due.isoformat()} (the account's night hours, "
                    f"{night.describe() if night else ''} in the recipient's time)"
                )
            elif deferred:
                result.reason = (
                    f"held until {due.isoformat()} (marketing hours in {countries[e164]})"
                )
            result.message_id = message_id
            result.credits = cost
            total += cost

        if night is not None and at_night and night.mode == "warn":
            warnings.append(
                f"{at_night} SMS will arrive at night ({night.describe()} in the recipient's "
                "time): the account's night hours are set to warn, not to hold"
            )
        if track and rows:
            # One statement for every recipient's links; the parent's short links (a hosted
            # file) are copied per recipient too.
            personal = [links.Personal(row["text"], row["recipient"], row["id"]) for row in rows]
            texts = links.personalize_many(session, config, account.id, personal, owners=scope)
            for row, personalized in zip(rows, texts, strict=True):
                row["text"] = personalized
        if with_link:
            _link_codes(session, config, account.id, req.campaign_id, rows, with_link)

        # What the result reports: the common text's count or, for a personalised send or one
        # whose countries get different mentions, the count of the text that needs the most
        # parts (each Message has its own).
        shown = base[1] if base else None
        if bodies and len({text for text, _ in bodies.values()}) > 1:
            shown = max((info for _, info in bodies.values()), key=lambda i: i.segments)
        elif bodies:
            shown = next(iter(bodies.values()))[1]
        submitted = SubmitResult(
            batch_id=batch_id,
            account=account.name,
            encoding=shown.encoding if shown else "GSM-7",
            segments=shown.segments if shown else 0,
            credits_charged=total,
            balance_after=None,
            recipients=results,
            warnings=warnings,
        )
        if rows:
            one_text = len({t for t, _ in bodies.values()}) == 1
            if req.texts is None and shown is not None and one_text:
                note = f"{len(rows)} SMS x {shown.segments} part(s) via {req.source}"
            else:
                parts = sum(row["segments"] for row in rows)
                note = f"{len(rows)} personalised SMS, {parts} part(s) via {req.source}"
            charge = credits.Charge(total, origin=account, batch_id=batch_id, note=note)
            self.pending.append(_Pending(payer, charge, submitted, rows, req.door or req.source))
            for row in rows:
                self.lookups.taken(row["idempotency_key"], row["id"])
        return submitted

    def settle(self) -> None:
        """Charge the submissions not charged yet and fill in their ``balance_after``; their
        rows are then written by ``write``. When they cannot all be paid, their rows are
        dropped and InsufficientCredits raised (after charges that did go through, the
        caller rolls back)."""
        pending, self.pending = self.pending, []
        by_payer: dict[int | None, list[_Pending]] = {}
        for item in pending:
            by_payer.setdefault(item.payer.id, []).append(item)
        try:
            for items in by_payer.values():
                balances = credits.charge_many(
                    self.session, items[0].payer, [i.charge for i in items], config=self.config
                )
                for item, balance in zip(items, balances, strict=True):
                    item.result.balance_after = balance
        except BaseException:
            for item in pending:
                for row in item.rows:
                    self.lookups.untaken(row["idempotency_key"])
            raise
        for item in pending:
            self.rows += item.rows
            self._doors[item.door] += len(item.rows)

    def write(self) -> None:
        """Insert the outbox rows of the settled submissions (one statement)."""
        if self.rows:
            self.session.connection().execute(_INSERT_MESSAGES, self.rows)
            self.rows = []
        for door, count in self._doors.items():
            note_submitted(self.session, door, count)
        self._doors.clear()


def _link_codes(
    session: Session,
    config: Config,
    account_id: int,
    campaign_id: int | None,
    rows: list[dict[str, Any]],
    wanted: list[dict[str, Any]],
) -> None:
    """Give each WANTED row's text its own unsubscribe link in place of the placeholder (the
    same length, so counts and charges stay exact); one statement for all the codes."""
    codes = unsubscribe.create(
        session,
        [unsubscribe.Recipient(account_id, w["recipient"], w["id"], campaign_id) for w in wanted],
    )
    placeholder = unsubscribe_url(config.hub.public_url)
    by_id = {row["id"]: row for row in rows}
    for w, code in zip(wanted, codes, strict=True):
        row = by_id[w["id"]]
        head, found, tail = row["text"].rpartition(placeholder)
        if found:
            row["text"] = head + unsubscribe_url(config.hub.public_url, code) + tail


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
    from hub.sending.outbox import cancel_queued

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
