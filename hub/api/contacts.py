"""/v1/lists: contact lists and their contacts, as `smshub lists|contacts` manage them.

A list belongs to one account and is named like a mail-subject token (``list:patients``);
``?account=`` picks one of the token's sub-accounts. Imports read the same files with the
same rules and report as ``smshub contacts import`` (hub.campaigns.contacts), preview included.
"""

# No `from __future__ import annotations` here: FastAPI resolves route annotations at runtime.

import asyncio
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy import func
from sqlmodel import select

from hub.api.auth import AccountQuery, CallerDep
from hub.api.errors import error_responses
from hub.api.models import NumbersBody, RejectedLine
from hub.api.support import (
    IdempotencyKey,
    LimitDep,
    check_count,
    file_print,
    idempotent,
    next_cursor,
    read_upload,
)
from hub.campaigns import contacts
from hub.core import phone
from hub.errors import NotFound
from hub.store.db import session_scope
from hub.store.models import Contact as ContactRow
from hub.web.edge import Text

if TYPE_CHECKING:
    from hub.app import Hub

TAG = "contacts"


class ListSummary(BaseModel):
    name: str = Field(examples=["patients"])
    contacts: int
    created_at: str


class ListPage(BaseModel):
    """One page of lists, by name; pass ``next`` as ``after`` for the following one."""

    lists: list[ListSummary]
    next: str | None = None


class ListDetail(BaseModel):
    name: str
    account: str
    contacts: int
    fields: list[str] = Field(description="The merge fields of the first contacts")


class NewList(BaseModel):
    name: Text = Field(description="1-64 letters, digits, '.', '_' or '-'", examples=["patients"])


class Contact(BaseModel):
    number: str = Field(examples=["+33612345678"])
    fields: dict[str, str] = Field(examples=[{"first_name": "Jeanne", "company": "Durand SA"}])


class ContactPage(BaseModel):
    """One page of a list's contacts, by number; pass ``next`` as ``after``."""

    contacts: list[Contact]
    next: str | None = None


class AddContacts(NumbersBody):
    fields: dict[Text, Text] = Field(
        default_factory=dict,
        description="Merge fields given to every number (merged over what they had)",
        examples=[{"first_name": "Jeanne"}],
    )


class ContactFields(BaseModel):
    fields: dict[Text, Text] = Field(examples=[{"first_name": "Jeanne"}])


class DuplicateLine(BaseModel):
    line: int
    input: str
    e164: str
    first_line: int


class ImportReport(BaseModel):
    """What an import or an addition did (or, with ``dry_run``, would do)."""

    list_name: str = Field(alias="list")
    dry_run: bool
    format: str = Field(examples=["csv (semicolon, utf-8)"])
    header: bool
    added: int
    updated: int
    unchanged: int
    duplicates: int
    rejected: list[RejectedLine]
    duplicate_lines: list[DuplicateLine]
    fields: list[str]
    preview: list[dict[str, str]] = Field(description="The first contacts as stored")


class RemoveReport(BaseModel):
    removed: list[str]
    not_found: list[RejectedLine]


class DeletedList(BaseModel):
    name: str
    deleted_contacts: int


def contacts_router(hub: "Hub") -> APIRouter:
    """The routes of contact lists for HUB."""
    router = APIRouter(prefix="/v1/lists", tags=[TAG])
    engine, config = hub.engine, hub.config
    region = config.hub.default_region

    def _detail(session: Any, account: Any, name: str) -> dict[str, Any]:
        found = contacts.get_list(session, account, name)
        first = contacts.members_page(session, found, limit=50)
        count = session.exec(
            select(func.count()).select_from(ContactRow).where(ContactRow.list_id == found.id)
        ).one()
        return {
            "name": found.name,
            "account": account.name,
            "contacts": int(count),
            "fields": contacts.field_names(first),
        }

    @router.get("", summary="List contact lists", responses=error_responses(404))
    async def get_lists(
        who: CallerDep, limit: LimitDep, account: AccountQuery = None, after: str = ""
    ) -> ListPage:
        """The account's contact lists with their sizes, by name."""

        def _run() -> ListPage:
            with session_scope(engine) as session:
                acc = who.account(session, account)
                rows = contacts.list_summaries(session, acc, after=after, limit=limit)
                return ListPage(
                    lists=[ListSummary(**r) for r in rows],
                    next=next_cursor(rows, limit, lambda r: r["name"]),
                )

        return await asyncio.to_thread(_run)

    @router.post(
        "",
        status_code=201,
        summary="Create an empty list",
        response_model=ListDetail,
        responses=error_responses(404, 409),
    )
    async def create_list(
        body: NewList,
        who: CallerDep,
        request: Request,
        account: AccountQuery = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        """A new list; add contacts with POST /v1/lists/{name}/contacts or an import."""

        def _run() -> dict[str, Any]:
            with session_scope(engine) as session:
                acc = who.account(session, account)
                created = contacts.create_list(session, acc, body.name)
                return {"name": created.name, "account": acc.name, "contacts": 0, "fields": []}

        return await idempotent(request, who, idempotency_key, body, 201, _run)

    @router.get("/{name}", summary="One list", responses=error_responses(404))
    async def get_list(name: str, who: CallerDep, account: AccountQuery = None) -> ListDetail:
        """A list's size and merge fields."""

        def _run() -> dict[str, Any]:
            with session_scope(engine) as session:
                return _detail(session, who.account(session, account), name)

        return ListDetail(**await asyncio.to_thread(_run))

    @router.delete("/{name}", summary="Delete a list", responses=error_responses(404))
    async def delete_list(name: str, who: CallerDep, account: AccountQuery = None) -> DeletedList:
        """Delete a list and its contacts (messages already sent are kept)."""

        def _run() -> DeletedList:
            with session_scope(engine) as session:
                acc = who.account(session, account)
                count = contacts.delete_list(session, acc, name)
                return DeletedList(name=name.strip().lower(), deleted_contacts=count)

        return await asyncio.to_thread(_run)

    @router.get("/{name}/contacts", summary="A list's contacts", responses=error_responses(404))
    async def get_contacts(
        name: str, who: CallerDep, limit: LimitDep, account: AccountQuery = None, after: str = ""
    ) -> ContactPage:
        """The list's contacts with their merge fields, by number."""

        def _run() -> ContactPage:
            with session_scope(engine) as session:
                found = contacts.get_list(session, who.account(session, account), name)
                rows = contacts.members_page(session, found, after=after, limit=limit)
                return ContactPage(
                    contacts=[Contact(number=n, fields=f) for n, f in rows],
                    next=next_cursor(rows, limit, lambda r: r[0]),
                )

        return await asyncio.to_thread(_run)

    @router.post(
        "/{name}/contacts",
        status_code=201,
        summary="Add contacts",
        response_model=ImportReport,
        responses=error_responses(404, 409, 413),
    )
    async def add_contacts(
        name: str,
        body: AddContacts,
        who: CallerDep,
        request: Request,
        account: AccountQuery = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        """Add numbers (with the same merge fields) to a list, created if needed; numbers
        that cannot receive SMS are reported, the others added."""
        check_count(request, body.numbers, "numbers")

        def _run() -> dict[str, Any]:
            with session_scope(engine) as session:
                report = contacts.add_numbers(
                    session,
                    who.account(session, account),
                    name,
                    body.numbers,
                    region=region,
                    fields=body.fields,
                )
                return report.to_dict()

        return await idempotent(request, who, idempotency_key, body, 201, _run)

    @router.post(
        "/{name}/contacts/remove",
        summary="Remove contacts",
        response_model=RemoveReport,
        responses=error_responses(404, 409, 413),
    )
    async def remove_contacts(
        name: str,
        body: NumbersBody,
        who: CallerDep,
        request: Request,
        account: AccountQuery = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        """Take numbers off a list; inputs not on it are reported."""
        check_count(request, body.numbers, "numbers")

        def _run() -> dict[str, Any]:
            with session_scope(engine) as session:
                report = contacts.remove_numbers(
                    session, who.account(session, account), name, body.numbers, region=region
                )
                return {"removed": report.removed, "not_found": report.not_found}

        return await idempotent(request, who, idempotency_key, body, 200, _run)

    @router.get("/{name}/contacts/{number}", summary="One contact", responses=error_responses(404))
    async def get_contact(
        name: str, number: str, who: CallerDep, account: AccountQuery = None
    ) -> Contact:
        """A contact of the list with its merge fields (NUMBER in E.164, e.g. +33612345678)."""

        def _run() -> Contact:
            with session_scope(engine) as session:
                acc = who.account(session, account)
                found = contacts.get_list(session, acc, name)
                e164 = phone.parse_number(number, acc.default_region or region).e164
                row = session.exec(
                    select(ContactRow).where(
                        ContactRow.list_id == found.id, ContactRow.number == e164
                    )
                ).first()
                if row is None:
                    raise NotFound(f"{number} is not on the list {found.name!r}")
                return Contact(number=row.number, fields=contacts.contact_fields(row))

        return await asyncio.to_thread(_run)

    @router.put(
        "/{name}/contacts/{number}",
        summary="Set a contact's merge fields",
        response_model=ImportReport,
        responses=error_responses(404),
    )
    async def put_contact(
        name: str, number: str, body: ContactFields, who: CallerDep, account: AccountQuery = None
    ) -> dict[str, Any]:
        """Add the number to the list or merge these fields over its own (fields not given
        keep their values)."""

        def _run() -> dict[str, Any]:
            with session_scope(engine) as session:
                report = contacts.add_numbers(
                    session,
                    who.account(session, account),
                    name,
                    [number],
                    region=region,
                    fields=body.fields,
                )
                return report.to_dict()

        return await asyncio.to_thread(_run)

    @router.delete(
        "/{name}/contacts/{number}",
        summary="Remove one contact",
        response_model=RemoveReport,
        responses=error_responses(404),
    )
    async def delete_contact(
        name: str, number: str, who: CallerDep, account: AccountQuery = None
    ) -> dict[str, Any]:
        """Take one number off the list."""

        def _run() -> dict[str, Any]:
            with session_scope(engine) as session:
                report = contacts.remove_numbers(
                    session, who.account(session, account), name, [number], region=region
                )
                if not report.removed:
                    raise NotFound(report.not_found[0].reason)
                return {"removed": report.removed, "not_found": []}

        return await asyncio.to_thread(_run)

    @router.post(
        "/{name}/import",
        status_code=201,
        summary="Import a contact file",
        response_model=ImportReport,
        responses=error_responses(404, 409, 413),
    )
    async def import_file(
        name: str,
        who: CallerDep,
        request: Request,
        file: Annotated[
            UploadFile, File(description="CSV (comma, semicolon or tab), TXT, XLSX or XLS")
        ],
        preview: Annotated[
            bool, Form(description="Check the file and report what would happen; save nothing")
        ] = False,
        account: AccountQuery = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        """Import a file into a list (created if needed): the number in the first column,
        the other columns become merge fields (named by a header row). Rows that cannot be
        used are reported with their line and why; duplicates with the line they repeat.
        Bounded by api.max_upload_bytes and api.max_import_rows."""
        data, filename = await read_upload(request, file)
        limits = config.api

        def _run() -> dict[str, Any]:
            with session_scope(engine) as session:
                report = contacts.import_contacts(
                    session,
                    who.account(session, account),
                    name,
                    data,
                    filename,
                    preview=preview,
                    region=region,
                    max_rows=limits.max_import_rows,
                    limit_name="api.max_import_rows",
                )
                return report.to_dict()

        status = 200 if preview else 201
        printed = file_print(data, filename, preview=preview)
        return await idempotent(request, who, idempotency_key, printed, status, _run)

    @router.get(
        "/{name}/export",
        summary="Export a list as CSV",
        response_class=Response,
        responses={
            200: {"content": {"text/csv": {}}, "description": "number, then each merge field"},
            **error_responses(404),
        },
    )
    async def export_list(name: str, who: CallerDep, account: AccountQuery = None) -> Response:
        """The list as CSV (UTF-8 with BOM); it imports back as is."""

        def _run() -> bytes:
            with session_scope(engine) as session:
                return contacts.export_list(session, who.account(session, account), name)

        return Response(
            await asyncio.to_thread(_run),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{_safe(name)}.csv"'},
        )

    return router


def _safe(name: str) -> str:
    return "".join(c for c in name if c.isalnum() or c in "._-") or "list"
