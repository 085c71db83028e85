"""submit(): the one door every SMS goes through before the outbox.

A pipeline of small named steps (``SubmitBatch.submit``): validate the request → read the
numbers → leave out blacklisted and invalid-listed numbers → count each text's segments (with
its country's opt-out mention) → the sender rules of each country → leave out what the
idempotency key already sent → schedule (marketing hours, the account's night hours) and price
each row → personalise links; then ``settle`` charges the credits and ``write`` inserts one
outbox row per recipient, all in the caller's one transaction. What follows the commit (the
balance alert a charge may owe, the submitted metrics) runs after it
(``hub.store.db.after_commit``), whichever door commits.
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
from hub.errors import ConflictError, HubError, InvalidInput, NotFound
from hub.sending import credits
from hub.sending.accounts import ancestors, funding_account, get_account
from hub.sending.lookups import RecipientLookups
from hub.sending.metrics import note_submitted
from hub.sending.outbox import cancel_queued
from hub.store.db import session_scope, table
from hub.store.models import Account, Message, MessageStatus, MessageType, new_id

_SENDER_ALNUM = re.compile(r"^[A-Za-z0-9 .\-_&]{1,11}$")
_SENDER_NUMERIC = re.compile(r"^\+?[0-9]{3,15}$")
# Several rows are one executemany: one round trip (psycopg pipelines it), no RETURNING
# (which would make SQLAlchemy build a multi-row statement, dearer than the driver's loop).
_INSERT_MESSAGES = insert(table(Message))
_TYPES = frozenset(t.value for t in MessageType)


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


class _Texts:
    """Each text as it is sent and charged, counted once per text and opt-out mention.

    The opt-out mention (the destination country's) is part of what is sent, so it is
    counted, capped and charged; a link mention with a placeholder code of the real length,
    replaced by each recipient's code when the rows are made. Short links all have one
    length: with links tracked, the text with placeholder codes counts (and is charged)
    exactly as each recipient's personalised text will."""

    def __init__(self, config: Config, sender: str | None, type_: str, track: bool) -> None:
        self.config, self.sender, self.type, self.track = config, sender, type_, track
        self._counted: dict[tuple[str, str], tuple[str, segments.SegmentInfo]] = {}

    def billable(self, raw: str, country: str | None) -> tuple[str, segments.SegmentInfo]:
        """RAW as sent to COUNTRY, and its parts; raises InvalidInput (empty, too long)."""
        config = self.config
        key = (raw, rule_for(self.sender, self.type, country, config.compliance))
        known = self._counted.get(key)
        if known is not None:
            return known
        final = compliance.billable_text(
            raw,
            self.sender,
            self.type,
            config.optout_mention,
            country=country,
            rules=config.compliance,
            public_url=config.hub.public_url,
        )
        counted = links.preview_text(config, final) if self.track else final
        self._counted[key] = final, check_text(config, counted)
        return self._counted[key]


@dataclass
class _Draft:
    """One request on its way through ``SubmitBatch.submit``: what each step found."""

    req: SubmitRequest
    account: Account
    payer: Account
    sender: str | None
    region: str
    track: bool
    texts: _Texts
    # The common text and its count (None for a personalised send).
    base: tuple[str, segments.SegmentInfo] | None
    now: datetime
    send_at: datetime
    scheduled: bool
    batch_id: str
    night: NightHours | None = None
    # Every recipient's result, in the order given; WANTED: those still to be sent.
    results: list[RecipientResult] = field(default_factory=list)
    wanted: dict[str, RecipientResult] = field(default_factory=dict)
    countries: dict[str, str | None] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    scope: list[int] = field(default_factory=list)
    bodies: dict[str, tuple[str, segments.SegmentInfo]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    # Rows whose text ends with the placeholder unsubscribe link, to get their own code.
    with_link: list[dict[str, Any]] = field(default_factory=list)
    at_night: int = 0
    total: int = 0


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
        ``submit_in`` does. The result's ``balance_after`` comes with ``settle``.

        The pipeline, in the order its refusals are made: validate the request, read the
        numbers, leave out those on the lists, count each text's segments, apply the sender
        rules, leave out what was already submitted, schedule (marketing and night hours)
        and price each row, personalise the links, then keep the charge."""
        draft = self._validate(req)
        self._read_numbers(draft)
        self._lists(draft)
        self._segments(draft)
        # One sender for the whole submission: refused in any recipient's country, refused.
        draft.warnings = compliance.require_sender(
            draft.sender, {draft.countries[e164] for e164 in draft.wanted}
        )
        self._already_submitted(draft)
        self._rows(draft)
        self._personalize(draft)
        submitted = _result(draft)
        self._keep(draft, submitted)
        return submitted

    def _validate(self, req: SubmitRequest) -> _Draft:
        """The account, the message type, the sender, the common text and the recipients'
        count, refused in this order; the time the messages are due."""
        session, config = self.session, self.config
        account = get_account(session, req.account)
        payer = funding_account(session, account)
        if req.type not in _TYPES:
            raise InvalidInput(f"message type must be 'alert' or 'marketing', not {req.type!r}")
        sender = validate_sender(req.sender if req.sender is not None else account.default_sender)
        track = account.track_links if req.shorten_links is None else req.shorten_links
        region = account.default_region or config.hub.default_region
        texts = _Texts(config, sender, req.type, track)
        # The common text, as the account's country reads it (checked before the numbers);
        # a personalised send checks it only if some recipient gets it.
        base = texts.billable(req.text, region) if req.texts is None else None
        _check_recipients(config, req)
        now = utcnow()
        send_at = as_utc(req.send_at) if req.send_at else now
        scheduled = send_at > now + timedelta(seconds=1)
        assert account.id is not None and payer.id is not None
        return _Draft(
            req=req,
            account=account,
            payer=payer,
            sender=sender,
            region=region,
            track=track,
            texts=texts,
            base=base,
            now=now,
            send_at=send_at if scheduled else now,
            scheduled=scheduled,
            batch_id=new_id(),
        )

    def _read_numbers(self, draft: _Draft) -> None:
        """Read each recipient's number: invalid, a landline or listed twice is left out; the
        others get their idempotency key."""
        for raw in draft.req.recipients:
            number = self._parse(raw, draft.region)
            result = RecipientResult(input=raw, status="rejected", e164=number.e164)
            draft.results.append(result)
            if not number.valid or number.e164 is None:
                result.reason = number.reason or "not a valid phone number"
            elif number.type == "landline":
                result.reason = "a landline number cannot receive SMS"
            elif number.e164 in draft.wanted:
                result.status = "duplicate"
                result.reason = "listed twice in this submission; sent once"
            else:
                draft.wanted[number.e164] = result
                draft.countries[number.e164] = number.country
        base = draft.req.idempotency_key or draft.batch_id
        draft.keys = {e164: f"{base}:{e164}" for e164 in draft.wanted}

    def _lists(self, draft: _Draft) -> None:
        """Leave out the numbers on the account's blacklist (but for the opt-out notice) or
        its invalid-number list; a parent's lists cover its sub-accounts too."""
        req = draft.req
        draft.scope = [a.id for a in ancestors(self.session, draft.account) if a.id is not None]
        keys = list(draft.keys.values()) if req.idempotency_key else []
        self.lookups.ensure(self.session, draft.scope, list(draft.wanted), keys)
        for e164 in list(draft.wanted):
            if self.lookups.is_blocked(draft.scope, e164) and not req.opt_out_notice:
                draft.wanted.pop(e164).reason = "the number is on the account's blacklist (STOP)"
            elif self.lookups.is_invalid(draft.scope, e164):
                draft.wanted.pop(e164).reason = "the number is on the account's invalid-number list"

    def _segments(self, draft: _Draft) -> None:
        """Each recipient's text as sent (its country's opt-out mention) and its parts; one
        that is empty or too long leaves only that recipient out."""
        own = draft.req.texts or {}
        for e164 in list(draft.wanted):
            try:
                draft.bodies[e164] = draft.texts.billable(
                    own.get(e164, draft.req.text), draft.countries[e164]
                )
            except InvalidInput as exc:
                # Its merge fields (or its country's opt-out mention) made this one text
                # unusable; the others go on.
                draft.wanted.pop(e164).reason = str(exc)

    def _already_submitted(self, draft: _Draft) -> None:
        """Leave out, as duplicates, the recipients this idempotency key already has."""
        if not draft.req.idempotency_key:
            return
        for e164 in list(draft.wanted):
            existing = self.lookups.existing.get(draft.keys[e164])
            if existing is None:
                continue
            result = draft.wanted.pop(e164)
            result.status = "duplicate"
            result.message_id = existing
            result.credits = 0
            result.reason = "already submitted with this idempotency key; not sent again"

    def _rows(self, draft: _Draft) -> None:
        """One outbox row per recipient left: when it is due, what it costs."""
        req, config = draft.req, self.config
        draft.night = _night_hours(draft.account, req)
        for e164, result in draft.wanted.items():
            text, info = draft.bodies[e164]
            country = draft.countries[e164]
            cost = 0 if req.free else credits_for(config, country, info.segments)
            due, held_for_night = self._due(draft, e164)
            message_id = new_id()
            if rule_for(draft.sender, req.type, country, config.compliance) == "link":
                draft.with_link.append({"id": message_id, "recipient": e164})
            draft.rows.append(_row(draft, e164, message_id, text, info, cost, due))
            _report(draft, result, e164, due, held_for_night)
            result.message_id = message_id
            result.credits = cost
            draft.total += cost
        night = draft.night
        if night is not None and draft.at_night and night.mode == "warn":
            draft.warnings.append(
                f"{draft.at_night} SMS will arrive at night ({night.describe()} in the "
                "recipient's time): the account's night hours are set to warn, not to hold"
            )

    def _due(self, draft: _Draft, e164: str) -> tuple[datetime, bool]:
        """When E164's message is due, and whether the account's night hours hold it."""
        req, config = draft.req, self.config
        due = draft.send_at
        if req.type == MessageType.MARKETING.value and not req.opt_out_notice:
            # Deferred to the recipient's next marketing hour, or OutsideMarketingHours
            # (an InvalidInput) with outside_hours = "refuse": nothing is charged then.
            due = compliance.marketing_due_at(
                draft.send_at, draft.countries[e164], config.marketing_hours, number=e164
            )
        if draft.night is None:
            return due, False
        zones = compliance.time_zones(draft.countries[e164], e164) or (
            config.marketing_hours.fallback_time_zone,
        )
        morning = draft.night.morning_after(due, zones)
        if morning is None:
            return due, False
        draft.at_night += 1
        if draft.night.mode == "hold":
            return morning, True
        return due, False

    def _personalize(self, draft: _Draft) -> None:
        """Each recipient's own short links and unsubscribe link, in place of the
        placeholders of the same length its segments and price were counted with."""
        session, config, rows = self.session, self.config, draft.rows
        account_id = draft.account.id
        assert account_id is not None
        if draft.track and rows:
            # One statement for every recipient's links; the parent's short links (a hosted
            # file) are copied per recipient too.
            personal = [links.Personal(row["text"], row["recipient"], row["id"]) for row in rows]
            texts = links.personalize_many(
                session, config, account_id, personal, owners=draft.scope
            )
            for row, personalized in zip(rows, texts, strict=True):
                row["text"] = personalized
        if draft.with_link:
            _link_codes(session, config, account_id, draft.req.campaign_id, rows, draft.with_link)

    def _keep(self, draft: _Draft, submitted: SubmitResult) -> None:
        """Keep the rows and their charge for ``settle``; later submissions of the batch see
        their idempotency keys as taken."""
        if not draft.rows:
            return
        charge = credits.Charge(
            draft.total, origin=draft.account, batch_id=draft.batch_id, note=_ledger_note(draft)
        )
        door = draft.req.door or draft.req.source
        self.pending.append(_Pending(draft.payer, charge, submitted, draft.rows, door))
        for row in draft.rows:
            self.lookups.taken(row["idempotency_key"], row["id"])

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


def _check_recipients(config: Config, req: SubmitRequest) -> None:
    if not req.recipients:
        raise InvalidInput("no recipient given; name at least one phone number")
    if len(req.recipients) > config.sending.max_recipients:
        raise InvalidInput(
            f"{len(req.recipients)} recipients in one submission; the limit is "
            f"{config.sending.max_recipients} (sending.max_recipients)"
        )


def _night_hours(account: Account, req: SubmitRequest) -> NightHours | None:
    """The account's night hours, for every send but the STOP confirmation (which answers
    the recipient's own message)."""
    if account.night_mode == "off" or req.opt_out_notice:
        return None
    return NightHours.of(account.night_mode, account.night_start, account.night_end)


def _row(
    draft: _Draft,
    e164: str,
    message_id: str,
    text: str,
    info: segments.SegmentInfo,
    cost: int,
    due: datetime,
) -> dict[str, Any]:
    req = draft.req
    return {
        "id": message_id,
        "account_id": draft.account.id,
        "charged_account_id": draft.payer.id,
        "batch_id": draft.batch_id,
        "idempotency_key": draft.keys[e164],
        "recipient": e164,
        "sender": draft.sender,
        "text": text,
        "encoding": info.encoding,
        "segments": info.segments,
        "credits": cost,
        "type": req.type,
        "source": req.source,
        "campaign_id": req.campaign_id,
        "status": MessageStatus.QUEUED.value,
        "scheduled": draft.scheduled or due > draft.send_at,
        "created_at": draft.now,
        "due_at": due,
        "updated_at": draft.now,
    }


def _report(
    draft: _Draft, result: RecipientResult, e164: str, due: datetime, held_for_night: bool
) -> None:
    """What RESULT tells about when its message goes out."""
    deferred = due > draft.send_at
    result.status = "scheduled" if draft.scheduled or deferred else "queued"
    if held_for_night:
        night = draft.night.describe() if draft.night else ""
        result.reason = (
            f"held until {due.isoformat()} (the account's night hours, "
            f"{night} in the recipient's time)"
        )
    elif deferred:
        result.reason = f"held until {due.isoformat()} (marketing hours in {draft.countries[e164]})"


def _shown(draft: _Draft) -> segments.SegmentInfo | None:
    """What the result reports: the common text's count or, for a personalised send or one
    whose countries get different mentions, the count of the text that needs the most parts
    (each Message has its own)."""
    bodies = draft.bodies
    if bodies and len({text for text, _ in bodies.values()}) > 1:
        return max((info for _, info in bodies.values()), key=lambda i: i.segments)
    if bodies:
        return next(iter(bodies.values()))[1]
    return draft.base[1] if draft.base else None


def _result(draft: _Draft) -> SubmitResult:
    shown = _shown(draft)
    return SubmitResult(
        batch_id=draft.batch_id,
        account=draft.account.name,
        encoding=shown.encoding if shown else "GSM-7",
        segments=shown.segments if shown else 0,
        credits_charged=draft.total,
        balance_after=None,
        recipients=draft.results,
        warnings=draft.warnings,
    )


def _ledger_note(draft: _Draft) -> str:
    """The charge's ledger note: one text's parts, or the personalised texts' total."""
    rows, source = draft.rows, draft.req.source
    if draft.req.texts is None and len({t for t, _ in draft.bodies.values()}) == 1:
        shown = _shown(draft)
        assert shown is not None
        return f"{len(rows)} SMS x {shown.segments} part(s) via {source}"
    parts = sum(row["segments"] for row in rows)
    return f"{len(rows)} personalised SMS, {parts} part(s) via {source}"


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
