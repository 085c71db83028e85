"""Console pages: the message history (filters, keyset pages, CSV), one message, cancel."""

# No `from __future__ import annotations`: FastAPI reads these annotations at runtime.

import io
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from sqlmodel import Session

from hub.console import history_detail
from hub.console.actions import cancelled
from hub.console.auth import ConsoleUser
from hub.console.history_query import (
    SOURCES,
    STATES,
    Cursor,
    FilterForm,
    HistoryFilter,
    history_page,
    iter_history,
    parse_filter,
    state_counts,
)
from hub.console.page import Page
from hub.console.settings_common import account_region
from hub.core import csvout
from hub.core.config import Config
from hub.core.i18n import ngettext
from hub.core.timeutil import as_utc, utcnow
from hub.errors import InvalidInput, NotFound
from hub.sending import submit as sending
from hub.store.models import Message

router = APIRouter()

CSV_COLUMNS = [
    "created_at",
    "account",
    "to",
    "sender",
    "text",
    "type",
    "source",
    "parts",
    "credits",
    "status",
    "reason",
    "sent_at",
    "final_at",
    "campaign_id",
    "batch_id",
    "message_id",
]


def _filter(config: Config, session: Any, user: ConsoleUser, form: FilterForm) -> HistoryFilter:
    # The region only reads a national number: no query for it otherwise.
    region = account_region(config, user.account(session)) if form.number else ""
    return parse_filter(session, user, form, region)


@router.get("/messages", response_class=HTMLResponse)
async def history(ui: Page) -> Response:
    """Messages of the user's accounts, newest first, filtered, one page at a time."""
    params = ui.request.query_params
    form = FilterForm.from_params(params)
    size = ui.hub.config.console.page_size

    def _load(session: Session) -> tuple[int, dict[str, Any]]:
        accounts = ui.user.accounts(session)
        ctx: dict[str, Any] = {
            "form": form,
            "states": STATES,
            "sources": SOURCES,
            "accounts": [a.name for a in accounts],
            "names": {a.id: a.name for a in accounts},
            "rows": [],
            "counts": None,
            "next_url": None,
            "prev_url": None,
            "error": "",
        }
        try:
            f = _filter(ui.hub.config, session, ui.user, form)
            before = Cursor.decode(params["before"]) if params.get("before") else None
            after = Cursor.decode(params["after"]) if params.get("after") else None
        except (InvalidInput, NotFound) as exc:
            ctx["error"] = str(exc)
            return (404 if isinstance(exc, NotFound) else 400), ctx
        result = history_page(session, f, size, before=before, after=after)
        ctx["rows"] = result.rows
        ctx["counts"] = state_counts(session, f)
        if result.older:
            ctx["next_url"] = "/console/messages?" + form.query(before=result.older.encode())
        if result.newer:
            ctx["prev_url"] = "/console/messages?" + form.query(after=result.newer.encode())
        return 200, ctx

    status, ctx = await ui.read(_load)
    return ui.render("history_list.html.j2", status=status, nav="history", **ctx)


def _csv_chunks(engine: Any, f: HistoryFilter, names: dict[int, str]) -> Iterator[bytes]:
    def iso(value: Any) -> str:
        return as_utc(value).isoformat() if value else ""

    first = True
    chunks = iter_history(engine, f)
    while True:
        out = io.StringIO(newline="")
        writer = csvout.writer(out)
        if first:
            # The BOM makes Excel read UTF-8 (accents) instead of the local code page.
            out.write("\ufeff")
            writer.writerow(CSV_COLUMNS)
        rows: list[Message] = next(chunks, [])
        for m in rows:
            writer.writerow(
                [
                    iso(m.created_at),
                    names.get(m.account_id, m.account_id),
                    m.recipient,
                    m.sender or "",
                    m.text,
                    m.type,
                    m.source,
                    m.segments,
                    m.credits,
                    m.status,
                    m.reason or "",
                    iso(m.sent_at),
                    iso(m.final_at),
                    m.campaign_id or "",
                    m.batch_id,
                    m.id,
                ]
            )
        if rows or first:
            yield out.getvalue().encode("utf-8")
        first = False
        if not rows:
            return


@router.get("/messages.csv")
async def history_csv(ui: Page) -> Response:
    """The filtered history as CSV (UTF-8 with BOM), streamed in chunks."""
    form = FilterForm.from_params(ui.request.query_params)

    def _prepare(session: Session) -> tuple[HistoryFilter, dict[int, str]]:
        names = {int(a.id or 0): a.name for a in ui.user.accounts(session)}
        return _filter(ui.hub.config, session, ui.user, form), names

    f, names = await ui.read(_prepare)
    filename = f"messages-{utcnow():%Y%m%d-%H%M}.csv"
    headers = {
        "Content-Disposition": f'attachment; filename="{filename}"',
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    }
    return StreamingResponse(
        _csv_chunks(ui.hub.engine, f, names), media_type="text/csv; charset=utf-8", headers=headers
    )


@router.get("/messages/{message_id}", response_class=HTMLResponse)
async def message_detail(ui: Page, message_id: str) -> Response:
    """One message: its facts, its events, its links, and Cancel while it waits."""

    def _load(session: Session) -> dict[str, Any]:
        return history_detail.load(session, ui.user, message_id)

    ctx = await ui.read(_load)
    return ui.render("history_detail.html.j2", nav="history", **ctx)


@router.post("/messages/{message_id}/cancel")
async def cancel_message(ui: Page, message_id: str) -> Response:
    """Cancel a message that has not gone out yet; its credits are refunded."""
    url = f"/console/messages/{message_id}"

    def _cancel(session: Session) -> int:
        history_detail.own_message(session, ui.user, message_id)
        return sending.cancel(session, message_id, account_ids=set(ui.user.scope)).credits

    return await cancelled(
        ui.hub,
        url,
        _cancel,
        # English keeps "credits" for one too, as the hub always wrote it.
        lambda refunded: ngettext(
            "Message cancelled; %(num)s credits refunded.",
            "Message cancelled; %(num)s credits refunded.",
            refunded,
        ),
    )
