"""Console pages: calendars (connect, rules with a live preview, sync, reminders, remove)."""

# No `from __future__ import annotations`: FastAPI reads these annotations at runtime.

import asyncio
import html
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Form
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session

from hub.console import calendars_data as data
from hub.console import calendars_oauth as oauth
from hub.console.auth import ConsoleUser, signing_key
from hub.console.page import Page
from hub.console.render import redirect, sign_in_redirect, translated
from hub.core.i18n import gettext, lazy_gettext
from hub.errors import (
    ConfigError,
    Forbidden,
    HubError,
    InvalidInput,
    NotFound,
    TemplateLimitExceeded,
)
from hub.reminders import answers
from hub.reminders.calendar_store import keep_secret_in
from hub.reminders.replan import replan, replanned_message
from hub.reminders.setup import (
    add_calendar,
    adopt_name_keyed_files,
    problem_events,
    remove_calendar,
    upcoming_reminders,
    update_rules,
)
from hub.reminders.sync import sync_calendar
from hub.sending import submit as sending
from hub.store.db import read_scope, session_scope
from hub.web.edge import RowId, row_id_or_none

if TYPE_CHECKING:
    from hub.app import Hub

router = APIRouter()

# A patient's answer as the console shows it (the CLI's JSON keeps the English words).
_ANSWERS = {
    "confirmed by the patient": lazy_gettext("confirmed by the patient"),
    "cancelled by the patient": lazy_gettext("cancelled by the patient"),
    "unanswered": lazy_gettext("unanswered"),
}


def _answer_shown(text: str) -> str:
    return translated(_ANSWERS, text)


OAUTH_COOKIE = "smshub_calendar_oauth"
OAUTH_PATH = "/console/calendars/oauth"


def _key(hub: "Hub") -> bytes:
    return oauth.signer_key(signing_key(hub.engine))


# -- the list and adding ------------------------------------------------------------------------
@router.get("/calendars", response_class=HTMLResponse)
async def calendars(ui: Page, after: str = "") -> Response:
    """The calendars of the user's accounts, and the ways to connect one."""
    config = ui.hub.config
    cursor = row_id_or_none(after)

    def _load(session: Session) -> dict[str, Any]:
        rows, next_after = data.calendars_page(
            session, ui.user.scope, cursor, config.console.page_size
        )
        return {
            "rows": rows,
            "accounts": [a.name for a in ui.user.accounts(session)],
            "next_url": f"/console/calendars?after={next_after}" if next_after else None,
            "first_url": "/console/calendars" if cursor else None,
        }

    providers = [
        {
            "key": key,
            "label": label,
            "missing": oauth.missing_keys(config, key),
            "secret_file": f"calendar_oauth.{key}.client_secret_file",
            "redirect_uri": oauth.redirect_uri(config),
        }
        for key, label in oauth.PROVIDERS.items()
    ]
    return ui.render(
        "calendars_list.html.j2",
        nav="calendars",
        providers=providers,
        **await ui.read(_load),
    )


@router.post("/calendars/add")
async def add(
    ui: Page,
    kind: Annotated[str, Form()] = "ics",
    account: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    url: Annotated[str, Form()] = "",
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    calendar: Annotated[str, Form()] = "",
    offsets: Annotated[str, Form()] = "1d@09:00",
    timezone: Annotated[str, Form()] = "Europe/Paris",
    more: Annotated[str, Form()] = "",
) -> Response:
    """Connect an ICS (address) or CalDAV (address, user, password) calendar."""
    label = data.check_name(name)

    def _add() -> int:
        settings = data.url_settings(kind, url, username, calendar, more, bool(password))
        with read_scope(ui.hub.engine) as session:
            acc = ui.user.account(session, account or None)
            assert acc.id is not None
            data.name_is_free(session, acc.id, label)
        # The password is kept encrypted in the database with the calendar (same
        # transaction), where every instance finds it.
        keyring = ui.hub.state.keyring if password else None
        with session_scope(ui.hub.engine) as session:
            cal = add_calendar(
                session, acc.id, label, kind, settings, offsets=offsets.strip(), tz=timezone
            )
            assert cal.id is not None
            if keyring is not None:
                keep_secret_in(session, keyring, cal.id, "password", password)
            return cal.id

    calendar_id = await asyncio.to_thread(_add)
    return redirect(
        f"/console/calendars/{calendar_id}",
        f"Calendar {label} added. Sync it now to read its appointments and plan reminders.",
    )


# -- Google / Microsoft 365 sign-in -------------------------------------------------------------
@router.get("/calendars/oauth/{provider}/start")
async def oauth_start(ui: Page, provider: str, account: str = "", name: str = "") -> Response:
    """Send the browser to the provider's consent page for a new calendar."""
    config = ui.hub.config
    if provider not in oauth.PROVIDERS:
        raise NotFound(f"no sign-in with {provider!r}: use google or microsoft")
    hint = oauth.setup_hint(config, provider)
    if hint:
        raise ConfigError(
            f"Connecting {oauth.PROVIDERS[provider]} calendars is not set up on this hub: {hint}"
        )
    key = _key(ui.hub)

    def _start() -> oauth.Started:
        with read_scope(ui.hub.engine) as session:
            acc = ui.user.account(session, account or None)
            assert acc.id is not None
            if name.strip():
                label = data.check_name(name)
                data.name_is_free(session, acc.id, label)
            else:
                label = data.free_name(session, acc.id, oauth.PROVIDERS[provider])
        return oauth.start(config, key, ui.hub.state, ui.user.user_id, acc.id, provider, label)

    started = await asyncio.to_thread(_start)
    return sign_in_redirect(started, OAUTH_COOKIE, OAUTH_PATH, ui.hub.config)


def _create_connected(
    hub: "Hub", user: ConsoleUser, pending: dict[str, Any], calendar_id: str | None
) -> int:
    """The calendar a sign-in ends with (blocking)."""
    config = hub.config
    if int(pending.get("u", 0)) != user.user_id:
        raise Forbidden("this sign-in belongs to another console user; start again")
    account_id = int(pending["a"])
    user.require(account_id)
    kind, settings = oauth.calendar_settings(config, str(pending["p"]), calendar_id)
    keyring = hub.state.keyring
    # Taken: of two submits of the same choice, one creates the calendar.
    token = oauth.take_token(hub.state, str(pending["t"]))
    try:
        with session_scope(hub.engine) as session:
            data.name_is_free(session, account_id, str(pending["n"]))
            cal = add_calendar(session, account_id, str(pending["n"]), kind, settings)
            assert cal.id is not None
            keep_secret_in(session, keyring, cal.id, "refresh_token", token)
            return cal.id
    except BaseException:
        oauth.give_back_token(hub.state, str(pending["t"]), token)
        raise


@router.get("/calendars/oauth/callback", response_class=HTMLResponse)
async def oauth_callback(ui: Page) -> Response:
    """The provider's answer: trade the code for a refresh token, then pick the calendar."""
    config = ui.hub.config
    query = dict(ui.request.query_params)
    key = _key(ui.hub)
    state = query.get("state", "")
    checked = oauth.read_state(key, state, ui.request.cookies.get(OAUTH_COOKIE, ""))
    if int(checked["u"]) != ui.user.user_id:
        raise Forbidden("this sign-in was started by another console user; start again")
    ui.user.require(int(checked["a"]))
    # The verifier waits in the database: this answer may reach any instance, once.
    checked = await asyncio.to_thread(oauth.take_flow, ui.hub.state, checked)
    provider = str(checked["p"])
    label = oauth.PROVIDERS[provider]
    if query.get("error"):
        why = query.get("error_description") or query["error"]
        response: Response = redirect(
            "/console/calendars", f"{label} did not connect the calendar: {why[:300]}"
        )
        response.delete_cookie(OAUTH_COOKIE, path=OAUTH_PATH)
        return response

    def _exchange() -> tuple[oauth.Connected, str]:
        connected = oauth.exchange(config, provider, state, checked, query)
        # Kept in the database while the user chooses: the choice may reach another instance.
        return connected, oauth.keep_token(ui.hub.state, connected.refresh_token)

    connected, token_id = await asyncio.to_thread(_exchange)
    pending = {
        "u": ui.user.user_id,
        "a": checked["a"],
        "p": provider,
        "n": checked["n"],
        "t": token_id,
    }
    if len(connected.calendars) > 1:
        response = ui.render(
            "calendars_choose.html.j2",
            nav="calendars",
            provider=label,
            name=checked["n"],
            choices=connected.calendars,
            chosen=next((c[0] for c in connected.calendars if c[2]), connected.calendars[0][0]),
            pending=oauth.sign(key, pending, seconds=3600),
        )
    else:
        chosen = connected.calendars[0][0] if connected.calendars else None
        calendar_id = await asyncio.to_thread(_create_connected, ui.hub, ui.user, pending, chosen)
        response = redirect(
            f"/console/calendars/{calendar_id}",
            f"{label} calendar {checked['n']} connected. Sync it now to plan its reminders.",
        )
    response.delete_cookie(OAUTH_COOKIE, path=OAUTH_PATH)
    return response


@router.post("/calendars/oauth/finish")
async def oauth_finish(
    ui: Page,
    pending: Annotated[str, Form()] = "",
    calendar: Annotated[str, Form()] = "",
) -> Response:
    """Create the calendar chosen after a sign-in."""
    found = oauth.unsign(_key(ui.hub), pending)
    if found is None or "t" not in found:
        raise InvalidInput("this choice has expired or was altered; connect the calendar again")
    calendar_id = await asyncio.to_thread(
        _create_connected, ui.hub, ui.user, found, calendar.strip() or None
    )
    return redirect(
        f"/console/calendars/{calendar_id}",
        f"Calendar {found['n']} connected. Sync it now to plan its reminders.",
    )


# -- one calendar -------------------------------------------------------------------------------
@router.get("/calendars/{calendar_id:int}", response_class=HTMLResponse)
async def calendar_page(ui: Page, calendar_id: RowId, answer: str = "all") -> Response:
    """A calendar's settings and rules, its upcoming appointments with the patients'
    answers (filtered by ANSWER), its upcoming reminders and its problem events."""

    def _load(session: Session) -> dict[str, Any]:
        cal = data.scoped_calendar(session, ui.user.scope, calendar_id)
        return {
            "calendar": cal,
            "account": ui.user.account(session, cal.account_id).name,
            "settings": data.shown_settings(cal),
            "reminder_template": data.effective_template(cal),
            "reminders": upcoming_reminders(session, calendar_id=calendar_id, limit=50),
            "problems": problem_events(session, calendar_id=calendar_id, limit=50),
            "answer": answer,
            "answer_filters": answers.ANSWER_FILTERS,
            "appointments": [
                (e, _answer_shown(answers.answer_text(e)), answers.written_text(e))
                for e, _ in answers.upcoming_appointments(
                    session, calendar_id=calendar_id, answer=answer, limit=100
                )
            ],
        }

    return ui.render("calendars_detail.html.j2", nav="calendars", **await ui.read(_load))


@dataclass(frozen=True)
class RulesForm:
    """A calendar's reminder rules as posted: saved, or previewed while being edited."""

    offsets: str
    quiet_start: str
    quiet_end: str
    template: str
    timezone: str
    locale: str


def _rules_form(
    offsets: Annotated[str, Form()] = "",
    quiet_start: Annotated[str, Form()] = "",
    quiet_end: Annotated[str, Form()] = "",
    template: Annotated[str, Form()] = "",
    timezone: Annotated[str, Form()] = "",
    locale: Annotated[str, Form()] = "",
) -> RulesForm:
    return RulesForm(offsets, quiet_start, quiet_end, template, timezone, locale)


Rules = Annotated[RulesForm, Depends(_rules_form)]


@router.post("/calendars/{calendar_id:int}/rules")
async def save_rules(
    ui: Page,
    calendar_id: RowId,
    rules: Rules,
    name: Annotated[str, Form()] = "",
    sender: Annotated[str, Form()] = "",
    notify_mailbox: Annotated[str, Form()] = "",
    notify_changes: Annotated[str, Form()] = "",
    enabled: Annotated[str, Form()] = "",
) -> Response:
    """Save a calendar's name, reminder rules and settings."""
    mailbox = notify_mailbox.strip()
    if mailbox and ("@" not in mailbox or " " in mailbox):
        raise InvalidInput(f"{mailbox!r} is not an e-mail address")
    chosen_sender = sending.validate_sender(sender.strip() or None)

    def _save(session: Session) -> int:
        cal = data.scoped_calendar(session, ui.user.scope, calendar_id)
        label = data.check_name(name or cal.name)
        if label != cal.name:
            data.name_is_free(session, cal.account_id, label)
            # Its files are named after its id, unless a hub before ids kept them and
            # it was not synced since: under the old name, found only before the rename.
            adopt_name_keyed_files(cal, ui.hub.config.hub.data_dir)
            cal.name = label
        report = update_rules(
            session,
            cal,
            offsets=rules.offsets,
            quiet_start=rules.quiet_start,
            quiet_end=rules.quiet_end,
            template=data.stored_template(rules.template),
            locale=rules.locale.strip(),
            tz=rules.timezone.strip(),
        )
        cal.sender = chosen_sender
        cal.notify_mailbox = mailbox
        cal.notify_changes = bool(notify_changes)
        cal.enabled = bool(enabled)
        session.add(cal)
        return len(report.cancelled)

    dropped = await ui.write(_save)
    message = gettext("Rules saved.")
    if dropped:
        message += " " + gettext(
            "%(num)s reminder(s) of removed rules cancelled and refunded.", num=dropped
        )
    try:
        # Already planned reminders follow the new settings now, not at the next sync.
        report = await asyncio.to_thread(replan, ui.hub.engine, ui.hub.config, calendar_id)
    except HubError as exc:
        message += " " + gettext(
            "Planned reminders could not be replanned now (%(error)s); the next sync will.",
            error=str(exc),
        )
    else:
        message += f" {replanned_message(report)}."
    return redirect(f"/console/calendars/{calendar_id}", message)


@router.post("/calendars/{calendar_id:int}/preview", response_class=HTMLResponse)
async def preview(
    ui: Page,
    calendar_id: RowId,
    rules: Rules,
    text: Annotated[str, Form()] = "",
) -> Response:
    """The reminder the rules being edited would send (an HTML fragment for console.js)."""

    def _render(session: Session) -> dict[str, Any]:
        cal = data.scoped_calendar(session, ui.user.scope, calendar_id)
        return data.reminder_preview(
            session,
            ui.hub.config,
            cal,
            template=rules.template or text,
            offsets=rules.offsets or cal.offsets,
            quiet_start=rules.quiet_start or cal.quiet_start,
            quiet_end=rules.quiet_end or cal.quiet_end,
            tz=rules.timezone.strip() or cal.timezone,
            locale=rules.locale.strip() or cal.locale,
        )

    try:
        shown = await ui.read(_render)
    except TemplateLimitExceeded as exc:
        # A fragment for the preview box, with the status an API client would get.
        return HTMLResponse(f'<p class="error">{html.escape(str(exc))}</p>', status_code=422)
    return ui.render("calendars_preview.html.j2", **shown)


@router.post("/calendars/{calendar_id:int}/sync")
async def sync_now(ui: Page, calendar_id: RowId) -> Response:
    """Read the calendar now and plan its reminders; the counts come back as a message."""

    def _check(session: Session) -> None:
        data.scoped_calendar(session, ui.user.scope, calendar_id)

    await ui.read(_check)
    back = f"/console/calendars/{calendar_id}"
    try:
        # In a thread with its own event loop: a slow calendar server must not hold up the
        # pages (and sends) served by this one.
        report = await asyncio.to_thread(
            asyncio.run, sync_calendar(ui.hub.engine, ui.hub.config, calendar_id)
        )
    except HubError as exc:
        return redirect(back, gettext("Sync failed: %(why)s", why=exc))
    message = gettext(
        "Synced: %(seen)s appointments seen, %(planned)s reminders planned, "
        "%(rescheduled)s rescheduled, %(cancelled)s cancelled, %(skipped)s skipped.",
        seen=report.seen,
        planned=report.planned,
        rescheduled=report.rescheduled,
        cancelled=report.cancelled,
        skipped=report.skipped,
    )
    if report.problems:
        message += " " + gettext(
            "%(num)s appointment(s) cannot get a reminder (see below).", num=len(report.problems)
        )
    if report.warnings:
        message += " " + gettext(
            "%(num)s warning(s): %(warnings)s",
            num=len(report.warnings),
            warnings="; ".join(report.warnings[:3]),
        )
    return redirect(back, message)


@router.post("/calendars/{calendar_id:int}/remove")
async def remove(
    ui: Page,
    calendar_id: RowId,
    keep_history: Annotated[str, Form()] = "",
) -> Response:
    """Disconnect a calendar: its scheduled reminders are cancelled and refunded; deleted,
    the files the hub kept for it (cached copy, stored password or tokens) go with it."""

    def _remove() -> tuple[str, dict[str, Any]]:
        with session_scope(ui.hub.engine) as session:
            cal = data.scoped_calendar(session, ui.user.scope, calendar_id)
            name = cal.name
            report = remove_calendar(
                session, calendar_id, bool(keep_history), data_dir=ui.hub.config.hub.data_dir
            )
        # Complete once committed: the files are deleted then.
        return name, asdict(report)

    name, report = await asyncio.to_thread(_remove)
    message = (
        f"Calendar {name} {report['action']}: {len(report['cancelled'])} scheduled reminder(s) "
        f"cancelled, {report['credits_refunded']} credit(s) refunded."
    )
    if report["already_sending"]:
        message += f" {len(report['already_sending'])} already being sent could not be stopped."
    message += data.files_message(report)
    target = f"/console/calendars/{calendar_id}" if keep_history else "/console/calendars"
    return redirect(target, message)
