"""Console home: balance, recent messages, and the send form with its live preview."""

# No `from __future__ import annotations`: FastAPI reads these annotations at runtime.

import asyncio
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session

from hub.campaigns.links import preview_text as preview_links
from hub.compliance import time_zones
from hub.compliance.night import NightHours
from hub.console.forms import local_time
from hub.console.history_query import HistoryFilter, history_page
from hub.console.page import Page
from hub.console.render import redirect
from hub.console.settings_common import account_region
from hub.core.config import Config
from hub.core.i18n import gettext as _
from hub.core.i18n import ngettext
from hub.core.phone import NumberInfo, parse_number, split_numbers
from hub.core.timeutil import utcnow
from hub.errors import InvalidInput
from hub.sending import submit as sending
from hub.sending.accounts import ancestors
from hub.sending.preview import preview_for
from hub.store.db import read_scope
from hub.store.views import account_view

router = APIRouter()


@dataclass(frozen=True)
class SendForm:
    """The home page's send form as posted (the live preview posts the same fields)."""

    to: str
    text: str
    account: str
    sender: str
    type: str
    send_at: str
    tz: str
    # The short-links box; None (the account's default) for a form without it.
    track: bool | None


def _send_form(
    to: Annotated[str, Form()] = "",
    text: Annotated[str, Form()] = "",
    account: Annotated[str, Form()] = "",
    sender: Annotated[str, Form()] = "",
    type: Annotated[str, Form()] = "alert",
    send_at: Annotated[str, Form()] = "",
    tz: Annotated[str, Form()] = "",
    links: Annotated[str, Form()] = "",
    links_offered: Annotated[str, Form()] = "",
) -> SendForm:
    track = links == "on" if links_offered else None
    return SendForm(to, text, account, sender, type, send_at, tz, track)


Posted = Annotated[SendForm, Depends(_send_form)]


@router.get("/", response_class=HTMLResponse)
async def home(ui: Page) -> Response:
    """Balance, the last messages and the send form."""

    def _load(session: Session) -> dict[str, Any]:
        account = ui.user.account(session)
        # Newest first across the accounts, through the history's per-account index walk.
        recent = history_page(session, HistoryFilter(tuple(sorted(ui.user.scope))), 10).rows
        return {
            "account": account_view(session, account, ancestors(session, account)),
            "accounts": [a.name for a in ui.user.accounts(session)],
            "recent": recent,
        }

    return ui.render("home.html.j2", nav="home", **await ui.read(_load))


@router.post("/send")
async def send(ui: Page, form: Posted) -> Response:
    """Queue an SMS from the console (the same submit() as every other door)."""
    if form.type not in {"alert", "marketing"}:
        raise InvalidInput("type must be alert or marketing")

    def _submit() -> sending.SubmitResult:
        with read_scope(ui.hub.engine) as session:
            acc = ui.user.account(session, form.account or None)
            name, region = acc.name, account_region(ui.hub.config, acc)
        recipients = split_numbers(form.to, region)
        if not recipients:
            raise InvalidInput(_("give at least one phone number in To"))
        return ui.hub.submit(
            sending.SubmitRequest(
                account=name,
                recipients=recipients,
                text=form.text,
                sender=form.sender.strip() or None,
                type=form.type,
                send_at=local_time(form.send_at, form.tz),
                source="console",
                shorten_links=form.track,
            )
        )

    result = await asyncio.to_thread(_submit)
    accepted = len(result.accepted)
    refused = [r for r in result.recipients if r.status == "rejected"]
    # English keeps "credits" for one too, as the hub always wrote it; French says "crédit".
    message = ngettext(
        "Queued %(count)s SMS (%(num)s credits).",
        "Queued %(count)s SMS (%(num)s credits).",
        result.credits_charged,
        count=accepted,
    )
    if refused:
        message += " " + _(
            "Left out: %(numbers)s.",
            numbers="; ".join(f"{r.input} ({r.reason})" for r in refused),
        )
    if result.warnings:
        message += " " + " ".join(result.warnings)
    return redirect(f"/console/messages?batch={result.batch_id}", message)


@router.post("/preview", response_class=HTMLResponse)
async def live_preview(ui: Page, form: Posted) -> Response:
    """Parts, encoding and cost of a text being written (an HTML fragment for console.js)."""
    config = ui.hub.config
    text, to, sender, type = form.text, form.to, form.sender, form.type

    def _region(session: Session) -> tuple[str, NightHours, bool]:
        acc = ui.user.account(session, form.account or None)
        night = NightHours.of(acc.night_mode, acc.night_start, acc.night_end)
        track = acc.track_links if form.track is None else form.track
        return account_region(config, acc), night, track

    region, night, track = await ui.read(_region)
    # Counted and shown as sent: each URL a short link of the same length as the real ones.
    linked = preview_links(config, text) if track else text
    numbers = [parse_number(n, region) for n in split_numbers(to, region)] if to else []
    valid = [n for n in numbers if n.valid]
    country = valid[0].country if valid else region
    kind = type if type in {"alert", "marketing"} else "alert"
    shown = preview_for(config, linked, sender.strip() or None, kind, country)
    warning = _night_warning(config, night, valid)
    if warning:
        shown["warnings"].append(warning)
    cost = _cost(config, linked, sender.strip() or None, kind, valid, country, shown["segments"])
    return ui.render(
        "_preview.html.j2",
        shown=shown,
        recipients=len(valid),
        invalid=[n for n in numbers if not n.valid],
        cost=cost,
        max_parts=config.sending.max_parts,
        links_shown=linked != text,
    )


def _night_warning(config: Config, night: NightHours, valid: list[NumberInfo]) -> str:
    """Sent now, would it arrive at night for someone? Said whatever the account's setting
    (its hours, default 21:00-08:00), with what the setting will do about it ("": no)."""
    now = utcnow()
    nights = [
        n
        for n in valid
        if night.morning_after(
            now,
            time_zones(n.country, n.e164) or (config.marketing_hours.fallback_time_zone,),
        )
    ]
    if not nights:
        return ""
    effect = {
        "hold": _("they will wait until the night ends (account setting)"),
        "warn": _("they go out anyway (the account warns only)"),
        "off": _("they go out anyway; the account page can hold them until morning"),
    }[night.mode]
    return ngettext(
        "%(num)s SMS would arrive at night (%(hours)s in the recipient's time): %(effect)s",
        "%(num)s SMS would arrive at night (%(hours)s in the recipient's time): %(effect)s",
        len(nights),
        hours=night.describe(),
        effect=effect,
    )


def _cost(
    config: Config,
    text: str,
    sender: str | None,
    kind: str,
    valid: list[NumberInfo],
    country: str | None,
    segments: int,
) -> int:
    """Credits for every valid recipient (SEGMENTS parts each in COUNTRY, the shown one's).

    Each destination country has its own opt-out mention, hence its own parts: the cost
    counts every recipient's, and the shown text is the first recipient's.
    """
    parts: dict[str | None, int] = {country: segments}
    for n in valid:
        if n.country not in parts:
            other = preview_for(config, text, sender, kind, n.country)
            parts[n.country] = other["segments"]
    return sum(
        sending.credits_for(config, n.country, parts[n.country]) for n in valid
    ) or sending.credits_for(config, country, segments)
