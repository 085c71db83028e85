"""/v1/blacklist and /v1/invalid-numbers: the numbers an account never sends to.

The blacklist (STOP) and the invalid-number (NPAI) list of `smshub blacklist|invalid` and
the console, through the same functions (hub.sending.optout, hub.sending.invalid_numbers):
every addition is recorded with its source ("api", "import"), a removal from the blacklist needs the
consent reason, and lines that are not numbers are reported with their line.
"""

# No `from __future__ import annotations` here: FastAPI resolves route annotations at runtime.

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlmodel import Session

from hub.api.auth import AccountQuery, CallerDep
from hub.api.errors import error_responses
from hub.api.models import NumbersBody, RejectedLine
from hub.api.support import (
    AccountWork,
    ChangeDep,
    LimitDep,
    check_count,
    check_rows,
    file_print,
    in_session,
    next_cursor,
    read_upload,
)
from hub.core.timeutil import as_utc
from hub.sending import invalid_numbers, optout
from hub.store.models import Account
from hub.web.deps import HubDep
from hub.web.edge import Text

router = APIRouter()


class BlacklistEntry(BaseModel):
    number: str = Field(examples=["+33612345678"])
    source: str = Field(examples=["sms", "link", "manual", "import", "api"])
    note: str
    since: str


class BlacklistPage(BaseModel):
    """One page of the blacklist, by number; pass ``next`` as ``after``."""

    account: str
    numbers: list[BlacklistEntry]
    next: str | None = None


class BlacklistAdd(NumbersBody):
    note: Text = Field("", max_length=255, description="Why (kept with each entry)")


class AddReport(BaseModel):
    added: int
    already: int = Field(description="Already on the list")
    rejected: list[RejectedLine]
    format: str = ""


class Removed(BaseModel):
    number: str
    account: str


class InvalidEntry(BaseModel):
    number: str
    since: str


class InvalidPage(BaseModel):
    """One page of the invalid-number list, by number; pass ``next`` as ``after``."""

    account: str
    numbers: list[InvalidEntry]
    next: str | None = None


def _blacklist_report(report: optout.ImportReport) -> dict[str, Any]:
    return {
        "added": report.added,
        "already": report.already,
        "rejected": [
            {"line": n, "input": raw, "reason": why} for n, raw, why in report.rejected or []
        ],
        "format": "",
    }


# -- blacklist ----------------------------------------------------------------------------
@router.get(
    "/v1/blacklist",
    tags=["blacklist"],
    summary="List the blacklist",
    responses=error_responses(404),
)
async def get_blacklist(
    who: CallerDep, hub: HubDep, limit: LimitDep, account: AccountQuery = None, after: str = ""
) -> BlacklistPage:
    """The account's blacklisted numbers (STOP, unsubscribe link, by hand), by number.
    A parent's blacklist also blocks its sub-accounts' sends."""

    def _run(session: Session, acc: Account) -> BlacklistPage:
        rows = optout.blacklist_entries(session, [acc.id or 0], after=after, limit=limit)
        return BlacklistPage(
            account=acc.name,
            numbers=[
                BlacklistEntry(
                    number=e.number,
                    source=e.source,
                    note=e.note,
                    since=as_utc(e.created_at).isoformat(),
                )
                for e, _name in rows
            ],
            next=next_cursor(rows, limit, lambda r: r[0].number),
        )

    return await in_session(hub, who.on_account(account, _run))


def _blacklister(numbers: list[str], source: str, note: str, region: str) -> AccountWork:
    """The work of blacklisting NUMBERS for an account: the report as a dict."""

    def _run(session: Session, acc: Account) -> dict[str, Any]:
        assert acc.id is not None
        report = optout.add_numbers(
            session, acc.id, numbers, source=source, note=note, region=region
        )
        return _blacklist_report(report)

    return _run


@router.post(
    "/v1/blacklist",
    status_code=201,
    tags=["blacklist"],
    summary="Blacklist numbers",
    response_model=AddReport,
    responses=error_responses(404, 409, 413),
)
async def add_blacklist(
    body: BlacklistAdd, change: ChangeDep, account: AccountQuery = None
) -> Response:
    """Put numbers on the blacklist (recorded with source "api"); nothing is sent to
    them any more, alert or marketing. Inputs that are not numbers are reported."""
    check_count(change.hub, body.numbers, "numbers")
    note = body.note or "added through the API"
    add = _blacklister(body.numbers, "api", note, change.hub.config.hub.default_region)
    work = change.who.on_account(account, add)
    answer = await change.answer(body, 201, work)
    change.hub.webhook_sender.wake()  # optout.created events may be queued
    return answer


@router.post(
    "/v1/blacklist/import",
    status_code=201,
    tags=["blacklist"],
    summary="Import numbers into the blacklist",
    response_model=AddReport,
    responses=error_responses(404, 409, 413),
)
async def import_blacklist(
    change: ChangeDep,
    file: Annotated[UploadFile, File(description="CSV or TXT; numbers in the first column")],
    note: Annotated[Text, Form(max_length=255, description="Why (kept with each)")] = "",
    account: AccountQuery = None,
) -> Response:
    """Blacklist every number of a file, as `smshub blacklist import` does (source
    "import"); lines that are not numbers are reported with their line."""
    data, filename = await read_upload(change.hub, file)
    numbers = optout.numbers_in_file(data)
    check_rows(change.hub, len(numbers), filename)
    why = note or f"import of {filename}"
    add = _blacklister(numbers, "import", why, change.hub.config.hub.default_region)
    printed = file_print(data, filename, note=note)
    work = change.who.on_account(account, add)
    answer = await change.answer(printed, 201, work)
    change.hub.webhook_sender.wake()
    return answer


@router.delete(
    "/v1/blacklist/{number}",
    tags=["blacklist"],
    summary="Take a number off the blacklist",
    responses=error_responses(404),
)
async def remove_blacklist(
    number: str,
    who: CallerDep,
    hub: HubDep,
    reason: Annotated[
        Text,
        Query(
            min_length=1,
            max_length=500,
            description="The recorded consent: who asked, how, when",
            examples=["customer asked by phone on 2026-11-25"],
        ),
    ],
    account: AccountQuery = None,
) -> Removed:
    """The number can receive SMS again; the consent reason is recorded."""
    region = hub.config.hub.default_region

    def _run(session: Session, acc: Account) -> Removed:
        assert acc.id is not None
        e164 = optout.remove_number(session, acc.id, number, reason, region)
        return Removed(number=e164, account=acc.name)

    return await in_session(hub, who.on_account(account, _run))


# -- invalid numbers ------------------------------------------------------------------------
@router.get(
    "/v1/invalid-numbers",
    tags=["invalid numbers"],
    summary="List the invalid numbers",
    responses=error_responses(404),
)
async def get_invalid(
    who: CallerDep, hub: HubDep, limit: LimitDep, account: AccountQuery = None, after: str = ""
) -> InvalidPage:
    """Numbers left out of the account's sends (reported invalid twice in a row, or
    added by hand), by number."""

    def _run(session: Session, acc: Account) -> InvalidPage:
        rows = invalid_numbers.entries(session, [acc.id or 0], after=after, limit=limit)
        return InvalidPage(
            account=acc.name,
            numbers=[
                InvalidEntry(number=r.number, since=as_utc(r.created_at).isoformat())
                for r, _name in rows
            ],
            next=next_cursor(rows, limit, lambda r: r[0].number),
        )

    return await in_session(hub, who.on_account(account, _run))


@router.post(
    "/v1/invalid-numbers",
    status_code=201,
    tags=["invalid numbers"],
    summary="Add invalid numbers",
    response_model=AddReport,
    responses=error_responses(404, 409, 413),
)
async def add_invalid(
    body: NumbersBody, change: ChangeDep, account: AccountQuery = None
) -> Response:
    """Put numbers on the invalid list by hand: the account's sends (and its
    sub-accounts') leave them out. Inputs that are not numbers are reported."""
    check_count(change.hub, body.numbers, "numbers")
    region = change.hub.config.hub.default_region

    def _run(session: Session, acc: Account) -> dict[str, Any]:
        lines = list(enumerate(body.numbers, 1))
        return invalid_numbers.add_numbers(session, acc, lines, region).to_dict()

    work = change.who.on_account(account, _run)
    return await change.answer(body, 201, work)


@router.post(
    "/v1/invalid-numbers/import",
    status_code=201,
    tags=["invalid numbers"],
    summary="Import invalid numbers",
    response_model=AddReport,
    responses=error_responses(404, 409, 413, 415),
)
async def import_invalid(
    change: ChangeDep,
    file: Annotated[
        UploadFile, File(description="CSV, TXT, XLSX or XLS; numbers in the first column")
    ],
    account: AccountQuery = None,
) -> Response:
    """Add a file's numbers, read as contact imports are (a title row is skipped);
    each line that is not a number is reported."""
    data, filename = await read_upload(change.hub, file)
    config = change.hub.config

    def _run(session: Session, acc: Account) -> dict[str, Any]:
        report = invalid_numbers.import_file(
            session,
            acc,
            data,
            filename,
            config.hub.default_region,
            max_rows=config.api.max_import_rows,
            limit_name="api.max_import_rows",
        )
        return report.to_dict()

    printed = file_print(data, filename)
    work = change.who.on_account(account, _run)
    return await change.answer(printed, 201, work)


@router.delete(
    "/v1/invalid-numbers/{number}",
    tags=["invalid numbers"],
    summary="Take a number off the invalid list",
    responses=error_responses(404),
)
async def remove_invalid(
    number: str, who: CallerDep, hub: HubDep, account: AccountQuery = None
) -> Removed:
    """The account's sends reach the number again."""
    region = hub.config.hub.default_region

    def _run(session: Session, acc: Account) -> Removed:
        e164 = invalid_numbers.remove_number(session, acc, number, region)
        return Removed(number=e164, account=acc.name)

    return await in_session(hub, who.on_account(account, _run))
