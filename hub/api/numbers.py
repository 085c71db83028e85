"""/v1/blacklist and /v1/invalid-numbers: the numbers an account never sends to.

The blacklist (STOP) and the invalid-number (NPAI) list of `smshub blacklist|invalid` and
the console, through the same functions (hub.sending.optout, hub.sending.invalid_numbers): every
addition
is recorded with its source ("api", "import"), a removal from the blacklist needs the
consent reason, and lines that are not numbers are reported with their line.
"""

# No `from __future__ import annotations` here: FastAPI resolves route annotations at runtime.

import asyncio
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, Field

from hub.api.auth import AccountQuery, CallerDep
from hub.api.errors import error_responses
from hub.api.models import NumbersBody, RejectedLine
from hub.api.support import (
    IdempotencyKey,
    LimitDep,
    check_count,
    check_rows,
    file_print,
    idempotent,
    next_cursor,
    read_upload,
)
from hub.core.timeutil import as_utc
from hub.sending import invalid_numbers, optout
from hub.store.db import session_scope
from hub.web.edge import Text

if TYPE_CHECKING:
    from hub.app import Hub


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


def numbers_router(hub: "Hub") -> APIRouter:
    """The routes of the blacklist and the invalid-number list for HUB."""
    router = APIRouter()
    engine, config = hub.engine, hub.config
    region = config.hub.default_region

    # -- blacklist ------------------------------------------------------------------------
    @router.get(
        "/v1/blacklist",
        tags=["blacklist"],
        summary="List the blacklist",
        responses=error_responses(404),
    )
    async def get_blacklist(
        who: CallerDep, limit: LimitDep, account: AccountQuery = None, after: str = ""
    ) -> BlacklistPage:
        """The account's blacklisted numbers (STOP, unsubscribe link, by hand), by number.
        A parent's blacklist also blocks its sub-accounts' sends."""

        def _run() -> BlacklistPage:
            with session_scope(engine) as session:
                acc = who.account(session, account)
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

        return await asyncio.to_thread(_run)

    @router.post(
        "/v1/blacklist",
        status_code=201,
        tags=["blacklist"],
        summary="Blacklist numbers",
        response_model=AddReport,
        responses=error_responses(404, 409, 413),
    )
    async def add_blacklist(
        body: BlacklistAdd,
        who: CallerDep,
        request: Request,
        account: AccountQuery = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        """Put numbers on the blacklist (recorded with source "api"); nothing is sent to
        them any more, alert or marketing. Inputs that are not numbers are reported."""
        check_count(request, body.numbers, "numbers")

        def _run() -> dict[str, Any]:
            with session_scope(engine) as session:
                acc = who.account(session, account)
                assert acc.id is not None
                note = body.note or "added through the API"
                report = optout.add_numbers(
                    session, acc.id, body.numbers, source="api", note=note, region=region
                )
                return _blacklist_report(report)

        answer = await idempotent(request, who, idempotency_key, body, 201, _run)
        hub.webhook_sender.wake()  # optout.created events may be queued
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
        who: CallerDep,
        request: Request,
        file: Annotated[UploadFile, File(description="CSV or TXT; numbers in the first column")],
        note: Annotated[Text, Form(max_length=255, description="Why (kept with each)")] = "",
        account: AccountQuery = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        """Blacklist every number of a file, as `smshub blacklist import` does (source
        "import"); lines that are not numbers are reported with their line."""
        data, filename = await read_upload(request, file)
        numbers = optout.numbers_in_file(data)
        check_rows(request, len(numbers), filename)

        def _run() -> dict[str, Any]:
            with session_scope(engine) as session:
                acc = who.account(session, account)
                assert acc.id is not None
                report = optout.add_numbers(
                    session,
                    acc.id,
                    numbers,
                    source="import",
                    note=note or f"import of {filename}",
                    region=region,
                )
                return _blacklist_report(report)

        printed = file_print(data, filename, note=note)
        answer = await idempotent(request, who, idempotency_key, printed, 201, _run)
        hub.webhook_sender.wake()
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

        def _run() -> Removed:
            with session_scope(engine) as session:
                acc = who.account(session, account)
                assert acc.id is not None
                e164 = optout.remove_number(session, acc.id, number, reason, region)
                return Removed(number=e164, account=acc.name)

        return await asyncio.to_thread(_run)

    # -- invalid numbers ------------------------------------------------------------------
    @router.get(
        "/v1/invalid-numbers",
        tags=["invalid numbers"],
        summary="List the invalid numbers",
        responses=error_responses(404),
    )
    async def get_invalid(
        who: CallerDep, limit: LimitDep, account: AccountQuery = None, after: str = ""
    ) -> InvalidPage:
        """Numbers left out of the account's sends (reported invalid twice in a row, or
        added by hand), by number."""

        def _run() -> InvalidPage:
            with session_scope(engine) as session:
                acc = who.account(session, account)
                rows = invalid_numbers.entries(session, [acc.id or 0], after=after, limit=limit)
                return InvalidPage(
                    account=acc.name,
                    numbers=[
                        InvalidEntry(number=r.number, since=as_utc(r.created_at).isoformat())
                        for r, _name in rows
                    ],
                    next=next_cursor(rows, limit, lambda r: r[0].number),
                )

        return await asyncio.to_thread(_run)

    @router.post(
        "/v1/invalid-numbers",
        status_code=201,
        tags=["invalid numbers"],
        summary="Add invalid numbers",
        response_model=AddReport,
        responses=error_responses(404, 409, 413),
    )
    async def add_invalid(
        body: NumbersBody,
        who: CallerDep,
        request: Request,
        account: AccountQuery = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        """Put numbers on the invalid list by hand: the account's sends (and its
        sub-accounts') leave them out. Inputs that are not numbers are reported."""
        check_count(request, body.numbers, "numbers")

        def _run() -> dict[str, Any]:
            with session_scope(engine) as session:
                acc = who.account(session, account)
                lines = list(enumerate(body.numbers, 1))
                return invalid_numbers.add_numbers(session, acc, lines, region).to_dict()

        return await idempotent(request, who, idempotency_key, body, 201, _run)

    @router.post(
        "/v1/invalid-numbers/import",
        status_code=201,
        tags=["invalid numbers"],
        summary="Import invalid numbers",
        response_model=AddReport,
        responses=error_responses(404, 409, 413, 415),
    )
    async def import_invalid(
        who: CallerDep,
        request: Request,
        file: Annotated[
            UploadFile, File(description="CSV, TXT, XLSX or XLS; numbers in the first column")
        ],
        account: AccountQuery = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        """Add a file's numbers, read as contact imports are (a title row is skipped);
        each line that is not a number is reported."""
        data, filename = await read_upload(request, file)
        limits = config.api

        def _run() -> dict[str, Any]:
            with session_scope(engine) as session:
                report = invalid_numbers.import_file(
                    session,
                    who.account(session, account),
                    data,
                    filename,
                    region,
                    max_rows=limits.max_import_rows,
                    limit_name="api.max_import_rows",
                )
                return report.to_dict()

        printed = file_print(data, filename)
        return await idempotent(request, who, idempotency_key, printed, 201, _run)

    @router.delete(
        "/v1/invalid-numbers/{number}",
        tags=["invalid numbers"],
        summary="Take a number off the invalid list",
        responses=error_responses(404),
    )
    async def remove_invalid(number: str, who: CallerDep, account: AccountQuery = None) -> Removed:
        """The account's sends reach the number again."""

        def _run() -> Removed:
            with session_scope(engine) as session:
                acc = who.account(session, account)
                e164 = invalid_numbers.remove_number(session, acc, number, region)
                return Removed(number=e164, account=acc.name)

        return await asyncio.to_thread(_run)

    return router
