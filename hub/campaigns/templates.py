"""Saved SMS templates with merge fields, rendered per recipient, and their previews.

A template is a sandboxed Jinja2 text (``hub.core.templating.sandbox()``): ``{{ first_name }}``,
``{{ last_name }}``, ``{{ company }}``, ``{{ custom1 }}`` ... are the columns of the
recipient's contact list (see hub.campaigns.contacts), and ``{{ number }}`` is the recipient's
E.164 number. A merge field a recipient lacks is an error **for that recipient only**: it
is left out and reported ("merge field 'first_name' is missing for +336..."), the others
are sent. Write ``{{ first_name|default("client") }}`` to fall back instead.

Each recipient's text is counted on its own, with the opt-out mention the send will
append, so the preview shows the parts and credits each one costs (a long name can push
one message to two parts) and the totals match what the send charges.

A template can be sent once for free to the account's own number (its ``alert_sms``,
where the balance alert goes) to see it on a phone: ``send_test``, at most
``FREE_TESTS_PER_DAY`` a day per account; those messages cost 0 credits.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache
from typing import Any

from jinja2 import Template, TemplateError, TemplateSyntaxError, UndefinedError, meta
from sqlalchemy import func
from sqlmodel import Session, col, select

from hub import compliance
from hub.campaigns import contacts, links
from hub.campaigns.named import find_named, get_named
from hub.core import phone, segments
from hub.core.config import Config
from hub.core.templating import render_bounded, sandbox
from hub.core.timeutil import utcnow
from hub.errors import ConflictError, InvalidInput, MissingField, TemplateLimitExceeded
from hub.sending.accounts import ancestors, funding_account, get_account
from hub.sending.submit import SubmitRequest, SubmitResult, credits_for, submit_in, validate_sender
from hub.store.models import (
    Account,
    BlacklistEntry,
    Contact,
    ContactList,
    InvalidNumber,
    Message,
    MessageTemplate,
    MessageType,
)

TEMPLATE_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
# Free test SMS per account and rolling 24 hours: enough to check a template on a phone,
# too few to be a way of sending for nothing.
FREE_TESTS_PER_DAY = 5
TEST_SOURCE = "test"
_UNDEFINED = re.compile(r"'([^']+)' is undefined")
_MAX_TEMPLATE = 2000
# The most parts sending.max_parts allows, when the caller has no config.
MOST_PARTS = 255


# -- rendering ----------------------------------------------------------------------------
@lru_cache(maxsize=256)
def compile_text(text: str) -> Template:
    """TEXT as a sandboxed template; InvalidInput says where its syntax is broken."""
    if len(text) > _MAX_TEMPLATE:
        raise InvalidInput(f"the template has {len(text)} characters; the limit is {_MAX_TEMPLATE}")
    try:
        return sandbox().from_string(text)
    except TemplateSyntaxError as exc:
        raise InvalidInput(
            f"the template cannot be used: {exc.message} (line {exc.lineno}); merge fields "
            "are written {{ first_name }}"
        ) from None


def template_fields(text: str) -> list[str]:
    """The merge fields TEXT uses, sorted (``number`` included if used)."""
    compile_text(text)  # syntax errors first, with their line
    return sorted(meta.find_undeclared_variables(sandbox().parse(text)))


def render_text(
    text: str, number: str | None, fields: Mapping[str, str], max_parts: int = MOST_PARTS
) -> str:
    """TEXT for one recipient; MissingField names a field the recipient lacks,
    TemplateLimitExceeded a template that asks for too much work or writes far more than
    MAX_PARTS SMS parts (the exact count is checked with the opt-out mention, later)."""
    template = compile_text(text)
    context = {**fields, "number": number or ""}
    try:
        return render_bounded(template, context, max_parts=max_parts)
    except UndefinedError as exc:
        found = _UNDEFINED.search(str(exc))
        if found:
            raise MissingField(found.group(1), number) from None
        raise InvalidInput(f"the template cannot be rendered for {number}: {exc}") from None
    except TemplateError as exc:
        raise InvalidInput(f"the template cannot be rendered for {number}: {exc}") from None


# -- saved templates ----------------------------------------------------------------------
def check_template_name(name: str) -> str:
    """The name as stored (lower case); InvalidInput says what a name may contain."""
    clean = name.strip().lower()
    if not TEMPLATE_NAME_RE.match(clean):
        raise InvalidInput(
            f"template name {name!r} cannot be used: write 1-64 letters, digits, '.', '_' or '-'"
        )
    return clean


def create_template(
    session: Session,
    account: Account | str | int,
    name: str,
    text: str,
    *,
    replace: bool = False,
) -> MessageTemplate:
    """Save TEXT as the account's template NAME (checked for syntax first)."""
    acc = get_account(session, account)
    assert acc.id is not None
    clean = check_template_name(name)
    if not text.strip():
        raise InvalidInput("the template text is empty; write the message")
    compile_text(text)
    existing = find_named(session, MessageTemplate, acc.id, clean)
    if existing is not None:
        if not replace:
            raise ConflictError(
                f"account {acc.name!r} already has a template named {clean!r}; "
                "delete it first or use --replace"
            )
        existing.text = text
        session.add(existing)
        session.flush()
        return existing
    template = MessageTemplate(account_id=acc.id, name=clean, text=text)
    session.add(template)
    session.flush()
    return template


def get_template(session: Session, account: Account | str | int, name: str) -> MessageTemplate:
    """The account's template NAME; NotFound says how to list them."""
    return get_named(
        session,
        MessageTemplate,
        get_account(session, account),
        name,
        kind="template",
        hint="see them with `smshub templates list`",
    )


def list_templates(
    session: Session, account: Account | str | int, *, after: str = "", limit: int | None = None
) -> list[MessageTemplate]:
    """The account's templates by name (after AFTER, at most LIMIT)."""
    acc = get_account(session, account)
    query = select(MessageTemplate).where(MessageTemplate.account_id == acc.id)
    if after:
        query = query.where(col(MessageTemplate.name) > after)
    query = query.order_by(col(MessageTemplate.name))
    if limit is not None:
        query = query.limit(limit)
    return list(session.exec(query).all())


def delete_template(session: Session, account: Account | str | int, name: str) -> None:
    """Delete a template (campaigns keep the text they were sent with)."""
    session.delete(get_template(session, account, name))
    session.flush()


def template_view(template: MessageTemplate) -> dict[str, Any]:
    """A template as the CLI prints it."""
    return {
        "name": template.name,
        "text": template.text,
        "fields": template_fields(template.text),
        "created_at": template.created_at.isoformat(),
    }


# -- recipients and their texts -----------------------------------------------------------
@dataclass
class PlannedRecipient:
    """One recipient of a personalised send: where it came from and its own text."""

    input: str
    e164: str | None
    country: str | None = None
    source: str = "numbers"  # "list:NAME" or "numbers"
    fields: dict[str, str] = field(default_factory=dict)
    text: str | None = None
    error: str | None = None


def plan_recipients(
    session: Session,
    account: Account,
    text: str,
    *,
    lists: Sequence[str] = (),
    numbers: Sequence[str] = (),
    region: str,
    max_parts: int = MOST_PARTS,
) -> list[PlannedRecipient]:
    """Every recipient of LISTS then NUMBERS, each with its rendered text or its error.

    The same number twice is sent once: the first occurrence (lists first, in the order
    given) keeps its merge fields, the later ones are reported as duplicates.
    """
    assert account.id is not None
    region = account.default_region or region
    planned: list[PlannedRecipient] = []
    seen: dict[str, str] = {}
    for name in lists:
        for e164, fields in contacts.list_members(session, account.id, name):
            planned.append(
                PlannedRecipient(input=e164, e164=e164, source=f"list:{name}", fields=fields)
            )
    for raw in numbers:
        planned.append(PlannedRecipient(input=raw, e164=None))
    for p in planned:
        info = phone.parse_number(p.e164 or p.input, region)
        p.e164, p.country = info.e164, info.country
        if not info.valid or info.e164 is None:
            p.error = info.reason or "not a valid phone number"
        elif info.type == phone.LANDLINE:
            p.error = "a landline number cannot receive SMS"
        elif info.e164 in seen:
            p.error = f"already a recipient (from {seen[info.e164]}); sent once"
        else:
            seen[info.e164] = p.source
            try:
                p.text = render_text(text, info.e164, p.fields, max_parts)
            except TemplateLimitExceeded:
                # The template itself, not this recipient: the whole send is refused (422).
                raise
            except InvalidInput as exc:
                p.error = str(exc)
    return planned


def check_recipient_count(
    session: Session,
    config: Config,
    account: Account,
    lists: Sequence[str],
    numbers: Sequence[str],
) -> None:
    """Refuse, before any text is rendered, a send to more recipients than one submission
    takes (``sending.max_recipients``): a preview of a huge list is as bounded as its send."""
    total = len(numbers)
    for name in lists:
        total += contacts.list_size(session, contacts.get_list(session, account, name))
    limit = config.sending.max_recipients
    if total > limit:
        raise InvalidInput(
            f"{total} recipients (lists and numbers together); one send takes at most {limit} "
            "(sending.max_recipients): split the list"
        )


def _left_out(session: Session, account: Account, numbers: list[str]) -> dict[str, str]:
    """Numbers the send will leave out (blacklist, invalid list), with why."""
    if not numbers:
        return {}
    scope = [a.id for a in ancestors(session, account)]
    out: dict[str, str] = {}
    for model, why in (
        (InvalidNumber, "the number is on the account's invalid-number list"),
        (BlacklistEntry, "the number is on the account's blacklist (STOP)"),
    ):
        for start in range(0, len(numbers), 1000):
            chunk = numbers[start : start + 1000]
            for number in session.exec(
                select(model.number).where(
                    col(model.account_id).in_(scope), col(model.number).in_(chunk)
                )
            ).all():
                out[number] = why
    return out


def preview_personalized(
    session: Session,
    config: Config,
    account: Account | str | int,
    text_or_template: str | MessageTemplate,
    *,
    lists: Sequence[str] = (),
    numbers: Sequence[str] = (),
    type: str = MessageType.ALERT.value,
    sender: str | None = None,
    track_links: bool | None = None,
) -> dict[str, Any]:
    """Each recipient's text, parts, encoding and credits as the send would charge them.

    With TRACK_LINKS (None: the account's default) each URL is shown as the short link it
    will become, with x's for the recipient's own code (the same length: the same parts).

    Returns ``{"recipients": [{number, input, source, text, segments, encoding, credits,
    error}], "totals": {...}}``; nothing is written. Recipients with an ``error`` are the
    ones the send would leave out (their credits are 0).
    """
    acc = get_account(session, account)
    text = (
        text_or_template.text if isinstance(text_or_template, MessageTemplate) else text_or_template
    )
    if type not in {t.value for t in MessageType}:
        raise InvalidInput(f"message type must be 'alert' or 'marketing', not {type!r}")
    chosen = validate_sender(sender if sender is not None else acc.default_sender)
    track = acc.track_links if track_links is None else track_links
    planned = plan_send(session, config, acc, text, lists, numbers)
    blocked = _left_out(session, acc, [p.e164 for p in planned if p.e164 and not p.error])
    rows = [_preview_row(config, p, blocked, chosen, type, track) for p in planned]
    ok = [r for r in rows if not r["error"]]
    payer = funding_account(session, acc)
    total = sum(r["credits"] for r in ok)
    return {
        "recipients": rows,
        "totals": {
            "recipients": len(ok),
            "left_out": len(rows) - len(ok),
            "segments": sum(r["segments"] for r in ok),
            "max_segments": max((r["segments"] for r in ok), default=0),
            "credits": total,
            "balance": payer.balance,
            "enough_credits": payer.balance >= total,
            "fields": template_fields(text),
        },
        "track_links": track,
    }


def plan_send(
    session: Session,
    config: Config,
    account: Account,
    text: str,
    lists: Sequence[str],
    numbers: Sequence[str],
) -> list[PlannedRecipient]:
    """``plan_recipients`` for a send of TEXT to LISTS and NUMBERS, with the hub's region
    and parts limit, once their count is known to fit one submission."""
    check_recipient_count(session, config, account, lists, numbers)
    return plan_recipients(
        session,
        account,
        text,
        lists=lists,
        numbers=numbers,
        region=config.hub.default_region,
        max_parts=config.sending.max_parts,
    )


def _preview_row(
    config: Config,
    p: PlannedRecipient,
    blocked: dict[str, str],
    sender: str | None,
    type: str,
    track: bool,
) -> dict[str, Any]:
    """One recipient of ``preview_personalized``: the text as sent, its parts and credits,
    or why the send leaves the recipient out (credits 0)."""
    row: dict[str, Any] = {
        "number": p.e164,
        "input": p.input,
        "source": p.source,
        "text": None,
        "segments": 0,
        "encoding": None,
        "credits": 0,
        "error": p.error,
    }
    if p.error or p.text is None or p.e164 is None:
        return row
    if p.e164 in blocked:
        row["error"] = blocked[p.e164]
        return row
    final = compliance.billable_text(
        p.text,
        sender,
        type,
        config.optout_mention,
        country=p.country,
        rules=config.compliance,
        public_url=config.hub.public_url,
    )
    if track:
        final = links.preview_text(config, final)
    info = segments.count(final)
    row.update(text=final, segments=info.segments, encoding=info.encoding)
    if not final.strip():
        row["error"] = "the text is empty for this recipient"
    elif info.segments > config.sending.max_parts:
        row["error"] = (
            f"the text needs {info.segments} SMS parts; the limit is "
            f"{config.sending.max_parts} (sending.max_parts)"
        )
    else:
        row["credits"] = credits_for(config, p.country, info.segments)
    sender_check = compliance.check_sender(sender, p.country)
    if not sender_check.ok:
        row["error"] = sender_check.reason
        row["credits"] = 0
    return row


def personalized_texts(planned: Sequence[PlannedRecipient]) -> dict[str, str]:
    """E.164 → text for the recipients that rendered, for ``SubmitRequest.texts``."""
    return {p.e164: p.text for p in planned if p.e164 and p.text is not None and not p.error}


# -- the free test SMS --------------------------------------------------------------------
def send_test(
    session: Session,
    config: Config,
    account: Account | str | int,
    template: str | MessageTemplate,
    to: str,
    *,
    fields: Mapping[str, str] | None = None,
    type: str = MessageType.ALERT.value,
    sender: str | None = None,
    track_links: bool | None = None,
) -> SubmitResult:
    """Send TEMPLATE once to the account's own number, free of charge (its links as a
    campaign would send them: TRACK_LINKS, None for the account's default).

    The merge fields come from FIELDS, else from the number's entry in one of the
    account's lists; a field neither has is an error naming it.
    """
    acc = get_account(session, account)
    if isinstance(template, str):
        template = get_template(session, acc, template)
    return send_test_text(
        session,
        config,
        acc,
        template.text,
        to,
        fields=fields,
        type=type,
        sender=sender,
        track_links=track_links,
    )


def own_number(config: Config, account: Account) -> str | None:
    """The account's own number (its balance-alert SMS number), where free tests go."""
    region = account.default_region or config.hub.default_region
    return phone.parse_number(account.alert_sms, region).e164 if account.alert_sms else None


def send_test_text(
    session: Session,
    config: Config,
    account: Account | str | int,
    text: str,
    to: str,
    *,
    fields: Mapping[str, str] | None = None,
    type: str = MessageType.ALERT.value,
    sender: str | None = None,
    track_links: bool | None = None,
) -> SubmitResult:
    """Send TEXT (a template's text, or one being written) once to the account's own
    number, free of charge, as ``send_test`` does."""
    acc = get_account(session, account)
    assert acc.id is not None
    region = acc.default_region or config.hub.default_region
    target = phone.parse_number(to, region)
    if target.e164 is None:
        raise InvalidInput(f"{to!r} is not a phone number: {target.reason}")
    own = own_number(config, acc)
    if own is None:
        raise InvalidInput(
            f"account {acc.name!r} has no own number on record: test SMS go only to its "
            "balance-alert SMS number; set it first (`smshub accounts alert NAME --sms NUMBER`)"
        )
    if target.e164 != own:
        raise InvalidInput(
            f"a free test SMS goes only to the account's own number ({own}), not {target.e164}"
        )
    since = utcnow() - timedelta(days=1)
    used = session.exec(
        select(func.count())
        .select_from(Message)
        .where(
            Message.account_id == acc.id,
            Message.source == TEST_SOURCE,
            col(Message.created_at) >= since,
        )
    ).one()
    if int(used) >= FREE_TESTS_PER_DAY:
        raise ConflictError(
            f"account {acc.name!r} already sent {used} free test SMS in the last 24 hours "
            f"(limit {FREE_TESTS_PER_DAY}); try again tomorrow or send it as a normal SMS"
        )
    values = dict(_fields_of(session, acc, target.e164))
    values.update(fields or {})
    rendered = render_text(text, target.e164, values, config.sending.max_parts)
    return submit_in(
        session,
        config,
        SubmitRequest(
            account=acc.id,
            recipients=[target.e164],
            text=rendered,
            sender=sender,
            type=type,
            source=TEST_SOURCE,
            free=True,
            shorten_links=track_links,
        ),
    )


def _fields_of(session: Session, account: Account, e164: str) -> dict[str, str]:
    """The number's merge fields from the first of the account's lists that has it."""
    row = session.exec(
        select(Contact)
        .join(ContactList, col(ContactList.id) == col(Contact.list_id))
        .where(ContactList.account_id == account.id, Contact.number == e164)
        .order_by(col(ContactList.name))
    ).first()
    return contacts.contact_fields(row) if row else {}
