"""/v1/lists: contact lists and their contacts, as `smshub lists|contacts` manage them.

A list belongs to one account and is named like a mail-subject token (``list:patients``);
``?account=`` picks one of the token's sub-accounts. Imports read the same files with the
same rules and report as ``smshub contacts import`` (hub.campaigns.contacts), preview included.
"""

# No `from __future__ import annotations` here: FastAPI resolves route annotations at runtime.

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy import func
from sqlmodel import Session, select

from hub.api.auth import AccountQuery, CallerDep
from hub.api.errors import error_responses
from hub.api.models import NumbersBody, RejectedLine
from hub.api.support import (
    AccountWork,
    ChangeDep,
    LimitDep,
    check_count,
    file_print,
    in_session,
    next_cursor,
    read_upload,
)
from hub.campaigns import contacts
from hub.core import phone
from hub.errors import NotFound
from hub.store.models import Account
from hub.store.models import Contact as ContactRow
from hub.web.deps import HubDep
from hub.web.edge import Text

TAG = "contacts"
router = APIRouter(prefix="/v1/lists", tags=[TAG])


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


def _detail(session: Session, account: Account, name: str) -> dict[str, Any]:
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
    who: CallerDep, hub: HubDep, limit: LimitDep, account: AccountQuery = None, after: str = ""
) -> ListPage:
    """The account's contact lists with their sizes, by name."""

    def _run(session: Session, acc: Account) -> ListPage:
        rows = contacts.list_summaries(session, acc, after=after, limit=limit)
        return ListPage(
            lists=[ListSummary(**r) for r in rows],
            next=next_cursor(rows, limit, lambda r: r["name"]),
        )

    return await in_session(hub, who.on_account(account, _run))


@router.post(
    "",
    status_code=201,
    summary="Create an empty list",
    response_model=ListDetail,
    responses=error_responses(404, 409),
)
async def create_list(body: NewList, change: ChangeDep, account: AccountQuery = None) -> Response:
    """A new list; add contacts with POST /v1/lists/{name}/contacts or an import."""

    def _run(session: Session, acc: Account) -> dict[str, Any]:
        created = contacts.create_list(session, acc, body.name)
        return {"name": created.name, "account": acc.name, "contacts": 0, "fields": []}

    work = change.who.on_account(account, _run)
    return await change.answer(body, 201, work)


@router.get("/{name}", summary="One list", responses=error_responses(404))
async def get_list(
    name: str, who: CallerDep, hub: HubDep, account: AccountQuery = None
) -> ListDetail:
    """A list's size and merge fields."""
    detail = await in_session(hub, who.on_account(account, lambda s, acc: _detail(s, acc, name)))
    return ListDetail(**detail)


@router.delete("/{name}", summary="Delete a list", responses=error_responses(404))
async def delete_list(
    name: str, who: CallerDep, hub: HubDep, account: AccountQuery = None
) -> DeletedList:
    """Delete a list and its contacts (messages already sent are kept)."""

    def _run(session: Session, acc: Account) -> DeletedList:
        count = contacts.delete_list(session, acc, name)
        return DeletedList(name=name.strip().lower(), deleted_contacts=count)

    return await in_session(hub, who.on_account(account, _run))


@router.get("/{name}/contacts", summary="A list's contacts", responses=error_responses(404))
async def get_contacts(
    name: str,
    who: CallerDep,
    hub: HubDep,
    limit: LimitDep,
    account: AccountQuery = None,
    after: str = "",
) -> ContactPage:
    """The list's contacts with their merge fields, by number."""

    def _run(session: Session, acc: Account) -> ContactPage:
        found = contacts.get_list(session, acc, name)
        rows = contacts.members_page(session, found, after=after, limit=limit)
        return ContactPage(
            contacts=[Contact(number=n, fields=f) for n, f in rows],
            next=next_cursor(rows, limit, lambda r: r[0]),
        )

    return await in_session(hub, who.on_account(account, _run))


def _adder(name: str, numbers: list[str], fields: dict[str, str], region: str) -> AccountWork:
    """The work of adding NUMBERS (with FIELDS) to the list NAME: its report as a dict."""

    def _run(session: Session, acc: Account) -> dict[str, Any]:
        report = contacts.add_numbers(session, acc, name, numbers, region=region, fields=fields)
        return report.to_dict()

    return _run


def _remover(name: str, numbers: list[str], region: str, *, one: bool = False) -> AccountWork:
    """The work of taking NUMBERS off the list NAME; with ONE, a NotFound when it was not on it."""

    def _run(session: Session, acc: Account) -> dict[str, Any]:
        report = contacts.remove_numbers(session, acc, name, numbers, region=region)
        if one and not report.removed:
            raise NotFound(report.not_found[0].reason)
        return {"removed": report.removed, "not_found": report.not_found}

    return _run


@router.post(
    "/{name}/contacts",
    status_code=201,
    summary="Add contacts",
    response_model=ImportReport,
    responses=error_responses(404, 409, 413),
)
async def add_contacts(
    name: str, body: AddContacts, change: ChangeDep, account: AccountQuery = None
) -> Response:
    """Add numbers (with the same merge fields) to a list, created if needed; numbers
    that cannot receive SMS are reported, the others added."""
    check_count(change.hub, body.numbers, "numbers")
    region = change.hub.config.hub.default_region
    work = change.who.on_account(account, _adder(name, body.numbers, body.fields, region))
    return await change.answer(body, 201, work)


@router.post(
    "/{name}/contacts/remove",
    summary="Remove contacts",
    response_model=RemoveReport,
    responses=error_responses(404, 409, 413),
)
async def remove_contacts(
    name: str, body: NumbersBody, change: ChangeDep, account: AccountQuery = None
) -> Response:
    """Take numbers off a list; inputs not on it are reported."""
    check_count(change.hub, body.numbers, "numbers")
    work = change.who.on_account(
        account, _remover(name, body.numbers, change.hub.config.hub.default_region)
    )
    return await change.answer(body, 200, work)


@router.get("/{name}/contacts/{number}", summary="One contact", responses=error_responses(404))
async def get_contact(
    name: str, number: str, who: CallerDep, hub: HubDep, account: AccountQuery = None
) -> Contact:
    """A contact of the list with its merge fields (NUMBER in E.164, e.g. +33612345678)."""

    def _run(session: Session, acc: Account) -> Contact:
        found = contacts.get_list(session, acc, name)
        e164 = phone.parse_number(number, acc.default_region or hub.config.hub.default_region).e164
        row = session.exec(
            select(ContactRow).where(ContactRow.list_id == found.id, ContactRow.number == e164)
        ).first()
        if row is None:
            raise NotFound(f"{number} is not on the list {found.name!r}")
        return Contact(number=row.number, fields=contacts.contact_fields(row))

    return await in_session(hub, who.on_account(account, _run))


@router.put(
    "/{name}/contacts/{number}",
    summary="Set a contact's merge fields",
    response_model=ImportReport,
    responses=error_responses(404),
)
async def put_contact(
    name: str,
    number: str,
    body: ContactFields,
    who: CallerDep,
    hub: HubDep,
    account: AccountQuery = None,
) -> dict[str, Any]:
    """Add the number to the list or merge these fields over its own (fields not given
    keep their values)."""
    work = _adder(name, [number], body.fields, hub.config.hub.default_region)
    result: dict[str, Any] = await in_session(hub, who.on_account(account, work))
    return result


@router.delete(
    "/{name}/contacts/{number}",
    summary="Remove one contact",
    response_model=RemoveReport,
    responses=error_responses(404),
)
async def delete_contact(
    name: str, number: str, who: CallerDep, hub: HubDep, account: AccountQuery = None
) -> dict[str, Any]:
    """Take one number off the list."""
    work = _remover(name, [number], hub.config.hub.default_region, one=True)
    result: dict[str, Any] = await in_session(hub, who.on_account(account, work))
    return result


@router.post(
    "/{name}/import",
    status_code=201,
    summary="Import a contact file",
    response_model=ImportReport,
    responses=error_responses(404, 409, 413),
)
async def import_file(
    name: str,
    change: ChangeDep,
    file: Annotated[
        UploadFile, File(description="CSV (comma, semicolon or tab), TXT, XLSX or XLS")
    ],
    preview: Annotated[
        bool, Form(description="Check the file and report what would happen; save nothing")
    ] = False,
    account: AccountQuery = None,
) -> Response:
    """Import a file into a list (created if needed): the number in the first column,
    the other columns become merge fields (named by a header row). Rows that cannot be
    used are reported with their line and why; duplicates with the line they repeat.
    Bounded by api.max_upload_bytes and api.max_import_rows."""
    data, filename = await read_upload(change.hub, file)
    config = change.hub.config

    def _run(session: Session, acc: Account) -> dict[str, Any]:
        report = contacts.import_contacts(
            session,
            acc,
            name,
            data,
            filename,
            preview=preview,
            region=config.hub.default_region,
            max_rows=config.api.max_import_rows,
            limit_name="api.max_import_rows",
        )
        return report.to_dict()

    status = 200 if preview else 201
    printed = file_print(data, filename, preview=preview)
    work = change.who.on_account(account, _run)
    return await change.answer(printed, status, work)


@router.get(
    "/{name}/export",
    summary="Export a list as CSV",
    response_class=Response,
    responses={
        200: {"content": {"text/csv": {}}, "description": "number, then each merge field"},
        **error_responses(404),
    },
)
async def export_list(
    name: str, who: CallerDep, hub: HubDep, account: AccountQuery = None
) -> Response:
    """The list as CSV (UTF-8 with BOM); it imports back as is."""
    data = await in_session(
        hub, who.on_account(account, lambda s, acc: contacts.export_list(s, acc, name))
    )
    return Response(
        data,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{_safe(name)}.csv"'},
    )


def _safe(name: str) -> str:
    return "".join(c for c in name if c.isalnum() or c in "._-") or "list"
