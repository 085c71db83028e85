"""Contact lists: numbers with merge fields, imported from the files people actually have.

A list belongs to one account and is named like a subject token (``list:patients``), so
names are lower-case letters, digits, ``.``, ``_`` and ``-``. Each contact is one E.164
number with its merge fields (``first_name``, ``company``, ...) stored as JSON.

Files
-----
* CSV: comma, semicolon or tab separated (sniffed from the first lines), in UTF-8 with
  or without BOM, UTF-16 with BOM (Excel's "Unicode text"), or Windows-1252 (Excel's
  plain "CSV" on a Western Windows).
* TXT: one number per line, nothing split; or tab-separated columns, as Excel saves
  "Unicode text" (UTF-16).
* XLSX (openpyxl) and old XLS (xlrd): the first sheet.

The number is in the first column, in any usual format (read with the account's default
country). The first row is a header when its first cell is not a number: its other cells
name the merge fields, normalized to snake_case ("Prénom" → ``prenom``, "First name" →
``first_name``). Without a header the other columns are ``custom1``, ``custom2``, ...

Rules
-----
* The same number twice in one file: the **first row wins**; later ones are counted as
  duplicates and listed with the line they repeat, so the report shows exactly what was
  ignored (a later row silently overwriting an earlier one would be invisible).
* A number already on the list gets the file's fields **merged** over its own: columns
  the file has replace the old values, columns it lacks keep them (importing a bare
  number list must not wipe the names).
* Landlines and numbers that are invalid or too short for their country are left out and
  reported with their line, their input and why; the other rows go on.
* ``preview=True`` does every check and reports what would happen, writing nothing.
"""

from __future__ import annotations

import csv
import io
import json
import keyword
import re
import unicodedata
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time
from typing import Any, TypeVar

from sqlalchemy import func
from sqlmodel import Session, col, delete, select

from hub.campaigns.named import find_named, get_named
from hub.core import csvout, phone
from hub.errors import ConflictError, InvalidInput, NotFound, TooLarge
from hub.sending.accounts import get_account
from hub.store.models import Account, Contact, ContactList

# A list name is written in mail subjects (list:NAME) and on command lines.
LIST_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
# One import is held in memory and written in one transaction; past this, split the file
# (the default of ``[contacts] max_import_rows``).
MAX_ROWS = 100_000
# The default of ``[contacts] max_import_size``: the largest file one import reads, in bytes.
MAX_IMPORT_SIZE = 10 * 1024 * 1024
# How many rows the report shows as a sample (the preview).
PREVIEW_ROWS = 5
T = TypeVar("T")
# Merge field names Jinja2 cannot use as plain variables.
_RESERVED = {"true", "false", "none", "True", "False", "None", "loop", "number"}
_DELIMITERS = (";", "\t", ",")
_TEL = re.compile(r"^\s*tel:", re.IGNORECASE)
_XLSX_MAGIC = b"PK\x03\x04"
_XLS_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


@dataclass
class RejectedLine:
    """A row left out of an import: its line in the file, what it said, and why."""

    line: int
    input: str
    reason: str


@dataclass
class DuplicateLine:
    """A row whose number an earlier row already had (the earlier one is kept)."""

    line: int
    input: str
    e164: str
    first_line: int


@dataclass
class ImportReport:
    """What an import did (or, as a preview, would do)."""

    list_name: str
    preview: bool
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: int = 0
    rejected: list[RejectedLine] = field(default_factory=list)
    duplicate_lines: list[DuplicateLine] = field(default_factory=list)
    fields: list[str] = field(default_factory=list)
    # The first contacts as they would be stored: {"number": E.164, **fields}.
    rows: list[dict[str, str]] = field(default_factory=list)
    header: bool = False
    format: str = ""

    def summary(self) -> str:
        """One line saying what the import did (or, as a preview, would do)."""
        verb = "would add" if self.preview else "added"
        return (
            f"list {self.list_name} ({self.format}, "
            f"{'header row' if self.header else 'no header'}): {verb} {self.added}, "
            f"updated {self.updated}, unchanged {self.unchanged}, "
            f"{self.duplicates} duplicate(s), {len(self.rejected)} left out"
        )

    def to_dict(self) -> dict[str, Any]:
        """The report as `smshub contacts import --json` prints it."""
        return {
            "list": self.list_name,
            "dry_run": self.preview,
            "format": self.format,
            "header": self.header,
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "duplicates": self.duplicates,
            "rejected": [asdict(r) for r in self.rejected],
            "duplicate_lines": [asdict(d) for d in self.duplicate_lines],
            "fields": self.fields,
            "preview": self.rows,
        }


@dataclass
class RemoveReport:
    """What `lists remove` did: removed numbers, and inputs that were not on the list."""

    removed: list[str] = field(default_factory=list)
    not_found: list[RejectedLine] = field(default_factory=list)


# -- names --------------------------------------------------------------------------------
def check_list_name(name: str) -> str:
    """The list name as stored (lower case); InvalidInput says what a name may contain."""
    clean = name.strip().lower()
    if not LIST_NAME_RE.match(clean):
        raise InvalidInput(
            f"list name {name!r} cannot be used: write 1-64 letters, digits, '.', '_' or '-' "
            "(it goes in mail subjects as list:NAME)"
        )
    return clean


def field_name(header: str) -> str:
    """A header cell as a merge field name: ASCII snake_case ("Prénom" → "prenom")."""
    decomposed = unicodedata.normalize("NFKD", header)
    ascii_text = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    # "FirstName" and "firstName" read as two words, like "First name".
    ascii_text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", ascii_text)
    name = re.sub(r"[^a-z0-9]+", "_", ascii_text.lower()).strip("_")
    # "Custom 1" is {{ custom1 }}, as people write it (and as headerless columns are named).
    name = re.sub(r"(?<=[a-z])_(?=\d+(?:_|$))", "", name)
    if name and name[0].isdigit():
        name = "f_" + name
    return name


def _field_names(headers: Sequence[str]) -> list[str]:
    """Merge field names for the columns after the first, unique and usable in templates."""
    names: list[str] = []
    for position, header in enumerate(headers, start=1):
        name = field_name(header) or f"custom{position}"
        if keyword.iskeyword(name) or name in _RESERVED:
            # {{ number }} is always the contact's own number; {{ if }} would not parse.
            name += "_field"
        base, n = name, 2
        while name in names:
            name = f"{base}_{n}"
            n += 1
        names.append(name)
    return names


def _is_number_cell(cell: str) -> bool:
    """True when CELL is written like a phone number (even a bad one), not like a title."""
    text = _TEL.sub("", cell).strip()
    return any(ch.isdecimal() for ch in text) and not any(ch.isalpha() for ch in text)


# -- reading files ------------------------------------------------------------------------
def _decode(data: bytes) -> tuple[str, str]:
    """The text of a CSV/TXT file and the encoding it was read as."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace"), "utf-8-sig"
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace"), "utf-16"
    head = data[:400]
    if head.count(b"\x00") > len(head) // 4:
        # UTF-16 without its BOM: the zero bytes sit on the odd (LE) or even (BE) offsets.
        odd = head[1::2].count(b"\x00")
        even = head[0::2].count(b"\x00")
        codec = "utf-16-le" if odd >= even else "utf-16-be"
        return data.decode(codec, errors="replace"), codec
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        # Not UTF-8: Excel's "CSV" on Western Windows writes the ANSI code page.
        return data.decode("cp1252", errors="replace"), "cp1252"


def _sniff_delimiter(text: str) -> str | None:
    """The delimiter that splits the first lines into the same number of columns."""
    sample = [line for line in text.splitlines()[:20] if line.strip()]
    if not sample:
        return None
    best: tuple[int, int, str] | None = None
    for delimiter in _DELIMITERS:
        widths = [len(row) for row in csv.reader(sample, delimiter=delimiter)]
        if max(widths) < 2:
            continue
        # Consistent widths first (every line splits the same way), then more columns;
        # ";" before "," on ties, since French Excel writes ";" and "," may be a decimal.
        consistent = sum(1 for w in widths if w == widths[0])
        score = (consistent, widths[0], delimiter)
        if best is None or score[:2] > best[:2]:
            best = score
    return best[2] if best else None


def _csv_rows(text: str, delimiter: str | None) -> Iterator[tuple[int, list[str]]]:
    if delimiter is None:
        for number, line in enumerate(text.splitlines(), start=1):
            yield number, [line]
        return
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    for row in reader:
        # line_num is where the record ends; a quoted field may span lines.
        yield reader.line_num, row


def _cell_text(value: Any) -> str:
    """A spreadsheet cell as the text a person sees (numbers without a trailing .0)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time() else value.isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    return str(value).strip()


def _xlsx_rows(data: bytes) -> Iterator[tuple[int, list[str]]]:
    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (InvalidFileException, KeyError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise InvalidInput(f"the file is not a readable XLSX workbook ({exc})") from None
    try:
        sheet = book.worksheets[0]
        for number, row in enumerate(sheet.iter_rows(values_only=True), start=1):
            yield number, [_cell_text(v) for v in row]
    finally:
        book.close()


def _xls_rows(data: bytes) -> Iterator[tuple[int, list[str]]]:
    import xlrd

    try:
        book = xlrd.open_workbook(file_contents=data)
    except xlrd.XLRDError as exc:
        raise InvalidInput(f"the file is not a readable XLS workbook ({exc})") from None
    sheet = book.sheet_by_index(0)
    for r in range(sheet.nrows):
        cells: list[str] = []
        for c in range(sheet.ncols):
            kind = sheet.cell_type(r, c)
            value = sheet.cell_value(r, c)
            if kind == xlrd.XL_CELL_DATE:
                value = xlrd.xldate_as_datetime(value, book.datemode)
            elif kind == xlrd.XL_CELL_BOOLEAN:
                value = bool(value)
            cells.append(_cell_text(value))
        yield r + 1, cells


def check_import_size(size: int, filename: str, max_size: int = MAX_IMPORT_SIZE) -> None:
    """Refuse a contact file over MAX_SIZE bytes, naming the setting that allows more."""
    if size > max_size:
        raise TooLarge(
            f"{filename} is {size} bytes; one import takes at most {max_size} bytes "
            "(contacts.max_import_size): split the file, or raise the setting"
        )


def read_table(
    data: bytes,
    filename: str,
    max_rows: int = MAX_ROWS,
    limit_name: str = "contacts.max_import_rows",
) -> tuple[str, list[tuple[int, list[str]]]]:
    """The rows of a contact file as (line, cells), and the format it was read as.

    More than MAX_ROWS rows is refused (TooLarge); LIMIT_NAME names the setting that sets
    MAX_ROWS, so the message can say which one to change."""
    name = filename.lower()
    if data.startswith(_XLSX_MAGIC) or name.endswith((".xlsx", ".xlsm")):
        if not data.startswith(_XLSX_MAGIC):
            raise InvalidInput(f"{filename} is named .xlsx but is not an Excel workbook")
        kind, rows = "xlsx", _xlsx_rows(data)
    elif data.startswith(_XLS_MAGIC) or name.endswith(".xls"):
        if not data.startswith(_XLS_MAGIC):
            raise InvalidInput(
                f"{filename} is named .xls but is not an Excel 97-2003 workbook; "
                "save it as .xlsx or CSV"
            )
        kind, rows = "xls", _xls_rows(data)
    else:
        text, encoding = _decode(data)
        if name.endswith(".txt"):
            # One number per line: "06 12 34 56 78" must not be split on spaces or commas.
            # Only tabs split it, as in Excel's "Unicode text" (UTF-16, tab-separated).
            delimiter = "\t" if "\t" in text else None
            kind, rows = f"txt ({encoding})", _csv_rows(text, delimiter)
        else:
            delimiter = _sniff_delimiter(text)
            label = {";": "semicolon", ",": "comma", "\t": "tab", None: "one column"}[delimiter]
            kind, rows = f"csv ({label}, {encoding})", _csv_rows(text, delimiter)
    table: list[tuple[int, list[str]]] = []
    for line, cells in rows:
        cells = [c.strip() for c in cells]
        if not any(cells):
            continue
        if len(table) >= max_rows:
            raise TooLarge(
                f"{filename} has more than {max_rows} rows ({limit_name}); "
                "split it into several imports, or raise the setting"
            )
        table.append((line, cells))
    return kind, table


# -- lists --------------------------------------------------------------------------------
def find_list(session: Session, account_id: int, name: str) -> ContactList | None:
    """The account's list NAME (case-insensitive), or None."""
    return find_named(session, ContactList, account_id, name)


def get_list(session: Session, account: Account | str | int, name: str) -> ContactList:
    """The account's list NAME; NotFound says how to see the lists."""
    return get_named(
        session,
        ContactList,
        get_account(session, account),
        name,
        kind="contact list",
        hint="see them with `smshub lists list`, create one with `smshub contacts import`",
    )


def _get_or_create_list(session: Session, account: Account, name: str) -> ContactList:
    assert account.id is not None
    found = find_list(session, account.id, name)
    if found is None:
        found = ContactList(account_id=account.id, name=check_list_name(name))
        session.add(found)
        session.flush()
    return found


def create_list(session: Session, account: Account | str | int, name: str) -> ContactList:
    """A new, empty list NAME of the account; ConflictError if it has one of that name."""
    acc = get_account(session, account)
    assert acc.id is not None
    clean = check_list_name(name)
    if find_list(session, acc.id, clean) is not None:
        raise ConflictError(f"account {acc.name!r} already has a contact list named {clean!r}")
    return _get_or_create_list(session, acc, clean)


def contact_fields(contact: Contact) -> dict[str, str]:
    try:
        value = json.loads(contact.fields or "{}")
    except ValueError:
        return {}
    return {str(k): "" if v is None else str(v) for k, v in value.items()}


def _dump(fields: dict[str, str]) -> str:
    # Column order is kept: exports and `lists show` list the fields as the file had them.
    return json.dumps(fields, ensure_ascii=False)


def list_members(
    session: Session, account_id: int, list_name: str
) -> list[tuple[str, dict[str, str]]]:
    """The list's contacts as (E.164, merge fields), in the order they were added."""
    found = find_list(session, account_id, list_name)
    if found is None:
        account = session.get(Account, account_id)
        raise NotFound(
            f"account {account.name if account else account_id!r} has no contact list named "
            f"{list_name!r} (see them with `smshub lists list`)"
        )
    contacts = session.exec(
        select(Contact).where(Contact.list_id == found.id).order_by(col(Contact.id))
    ).all()
    return [(c.number, contact_fields(c)) for c in contacts]


def members_page(
    session: Session, found: ContactList, *, after: str = "", limit: int
) -> list[tuple[str, dict[str, str]]]:
    """LIMIT contacts of the list FOUND as (E.164, merge fields), in number order after
    AFTER (a page: the list may be far longer than one answer)."""
    query = select(Contact).where(Contact.list_id == found.id)
    if after:
        query = query.where(col(Contact.number) > after)
    contacts = session.exec(query.order_by(col(Contact.number)).limit(limit)).all()
    return [(c.number, contact_fields(c)) for c in contacts]


def list_summaries(
    session: Session, account: Account | str | int, *, after: str = "", limit: int | None = None
) -> list[dict[str, Any]]:
    """Each list of the account with its size, by name (after AFTER, at most LIMIT)."""
    acc = get_account(session, account)
    query = select(ContactList).where(ContactList.account_id == acc.id)
    if after:
        query = query.where(col(ContactList.name) > after)
    query = query.order_by(col(ContactList.name))
    if limit is not None:
        query = query.limit(limit)
    lists = session.exec(query).all()
    sizes = dict(
        session.exec(
            select(Contact.list_id, func.count())
            .where(col(Contact.list_id).in_([x.id for x in lists]))
            .group_by(col(Contact.list_id))
        ).all()
    )
    return [
        {
            "id": x.id,
            "name": x.name,
            "contacts": int(sizes.get(x.id or 0, 0)),
            "created_at": x.created_at.isoformat(),
        }
        for x in lists
    ]


def field_names(members: Iterable[tuple[str, dict[str, str]]]) -> list[str]:
    """Every merge field the members have, in order of first appearance."""
    seen: dict[str, None] = {}
    for _, fields in members:
        for name in fields:
            seen.setdefault(name, None)
    return list(seen)


def delete_list(session: Session, account: Account | str | int, list_name: str) -> int:
    """Delete a list and its contacts; returns how many contacts went with it."""
    found = get_list(session, account, list_name)
    count = session.exec(
        select(func.count()).select_from(Contact).where(Contact.list_id == found.id)
    ).one()
    session.exec(delete(Contact).where(col(Contact.list_id) == found.id))
    session.delete(found)
    session.flush()
    return int(count)


def export_list(session: Session, account: Account | str | int, list_name: str) -> bytes:
    """The list as CSV (UTF-8 with BOM so Excel shows accents; the header names the fields).

    The file imports back as is: ``number`` first, then one column per merge field.
    """
    acc = get_account(session, account)
    assert acc.id is not None
    members = list_members(session, acc.id, list_name)
    names = field_names(members)
    out = io.StringIO(newline="")
    writer = csvout.writer(out)
    writer.writerow(["number", *names])
    for number, fields in members:
        writer.writerow([number, *(fields.get(n, "") for n in names)])
    return b"\xef\xbb\xbf" + out.getvalue().encode("utf-8")


# -- import -------------------------------------------------------------------------------
def _check_number(raw: str, region: str) -> tuple[str | None, str]:
    """(E.164, "") for a number that can receive SMS, else (None, why not)."""
    if not raw.strip():
        return None, "no number in the first column"
    info = phone.parse_number(raw, region)
    if not info.valid or info.e164 is None:
        return None, info.reason or "not a valid phone number"
    if info.type == phone.LANDLINE:
        return None, "a landline number cannot receive SMS"
    return info.e164, ""


def _store(
    session: Session,
    account: Account,
    list_name: str,
    wanted: dict[str, dict[str, str]],
    report: ImportReport,
    preview: bool,
) -> None:
    """Add or merge WANTED (E.164 → fields) into the list, counting what changes."""
    assert account.id is not None
    existing: dict[str, Contact] = {}
    found = find_list(session, account.id, list_name)
    if found is not None and wanted:
        numbers = list(wanted)
        # Chunked: some drivers cap the parameters of one statement.
        for start in range(0, len(numbers), 1000):
            for contact in session.exec(
                select(Contact).where(
                    Contact.list_id == found.id,
                    col(Contact.number).in_(numbers[start : start + 1000]),
                )
            ).all():
                existing[contact.number] = contact
    target = None if preview else _get_or_create_list(session, account, list_name)
    for e164, fields in wanted.items():
        old = existing.get(e164)
        if old is None:
            report.added += 1
            if target is not None:
                assert target.id is not None
                session.add(Contact(list_id=target.id, number=e164, fields=_dump(fields)))
            continue
        before = contact_fields(old)
        merged = {**before, **fields}
        if merged == before:
            report.unchanged += 1
            continue
        report.updated += 1
        if not preview:
            old.fields = _dump(merged)
            session.add(old)
    if not preview:
        session.flush()


def _first_sightings(
    report: ImportReport, rows: Iterable[tuple[int, str, T]], region: str
) -> Iterator[tuple[str, T]]:
    """The E.164 number and ITEM of each row (line or position, raw number, ITEM) whose number
    was not seen before; REPORT gets the rows that are not numbers and the repeats (with the
    line of the number's first sighting)."""
    first_seen: dict[str, int] = {}
    for line, raw, item in rows:
        e164, why = _check_number(raw, region)
        if e164 is None:
            report.rejected.append(RejectedLine(line, raw, why))
        elif e164 in first_seen:
            report.duplicates += 1
            report.duplicate_lines.append(DuplicateLine(line, raw, e164, first_seen[e164]))
        else:
            first_seen[e164] = line
            yield e164, item


def import_contacts(
    session: Session,
    account: Account | str | int,
    list_name: str,
    data: bytes,
    filename: str,
    *,
    preview: bool,
    region: str,
    max_rows: int = MAX_ROWS,
    limit_name: str = "contacts.max_import_rows",
) -> ImportReport:
    """Import a contact file into the account's list (created if needed).

    REGION is the country for national numbers when the account has no default region.
    With PREVIEW nothing is written; the report says what an import would do. MAX_ROWS and
    LIMIT_NAME bound the file as in read_table.
    """
    acc = get_account(session, account)
    name = check_list_name(list_name)
    region = acc.default_region or region
    kind, table = read_table(data, filename, max_rows=max_rows, limit_name=limit_name)
    report = ImportReport(list_name=name, preview=preview, format=kind)
    if not table:
        raise InvalidInput(f"{filename} has no rows; put one number per line")
    first_line, first_cells = table[0]
    report.header = not _is_number_cell(first_cells[0])
    width = max(len(cells) for _, cells in table)
    if report.header:
        table = table[1:]
        headers = first_cells[1:] + [""] * (width - len(first_cells))
        names = _field_names(headers)
    else:
        names = [f"custom{i}" for i in range(1, width)]
    report.fields = names

    wanted: dict[str, dict[str, str]] = {}
    rows = ((line, cells[0], cells) for line, cells in table)
    for e164, cells in _first_sightings(report, rows, region):
        # Empty cells are stored as "" so a template can tell "known empty" from "no column".
        values = cells[1:] + [""] * (len(names) + 1 - len(cells))
        wanted[e164] = dict(zip(names, values, strict=False))
    report.rows = [{"number": n, **f} for n, f in list(wanted.items())[:PREVIEW_ROWS]]
    _store(session, acc, name, wanted, report, preview)
    return report


def add_numbers(
    session: Session,
    account: Account | str | int,
    list_name: str,
    numbers: Sequence[str],
    *,
    region: str,
    fields: dict[str, str] | None = None,
) -> ImportReport:
    """Add numbers (with the same FIELDS, if any) to a list, creating it if needed."""
    acc = get_account(session, account)
    name = check_list_name(list_name)
    region = acc.default_region or region
    report = ImportReport(list_name=name, preview=False, format="arguments")
    if not numbers:
        raise InvalidInput("name at least one number to add")
    clean = {field_name(k) or k: v for k, v in (fields or {}).items()}
    inputs = ((position, raw, None) for position, raw in enumerate(numbers, start=1))
    wanted = {e164: dict(clean) for e164, _ in _first_sightings(report, inputs, region)}
    report.fields = list(clean)
    _store(session, acc, name, wanted, report, preview=False)
    return report


def remove_numbers(
    session: Session,
    account: Account | str | int,
    list_name: str,
    numbers: Sequence[str],
    *,
    region: str,
) -> RemoveReport:
    """Take numbers off a list; inputs that are not numbers or not on it are reported."""
    acc = get_account(session, account)
    found = get_list(session, acc, list_name)
    region = acc.default_region or region
    report = RemoveReport()
    for position, raw in enumerate(numbers, start=1):
        info = phone.parse_number(raw, region)
        if info.e164 is None:
            report.not_found.append(RejectedLine(position, raw, info.reason or "not a number"))
            continue
        contact = session.exec(
            select(Contact).where(Contact.list_id == found.id, Contact.number == info.e164)
        ).first()
        if contact is None:
            report.not_found.append(
                RejectedLine(position, raw, f"{info.e164} is not on the list {found.name!r}")
            )
            continue
        session.delete(contact)
        report.removed.append(info.e164)
    session.flush()
    return report


# -- one contact ----------------------------------------------------------------------------
def contacts_page(
    session: Session, contact_list: ContactList, *, after: int = 0, size: int
) -> tuple[list[Contact], int | None]:
    """One page of the list's contacts in the order they were added (keyset on the id),
    and the id to continue after (None on the last page)."""
    rows = list(
        session.exec(
            select(Contact)
            .where(Contact.list_id == contact_list.id, col(Contact.id) > after)
            .order_by(col(Contact.id))
            .limit(size + 1)
        ).all()
    )
    more = len(rows) > size
    rows = rows[:size]
    return rows, (rows[-1].id if more and rows else None)


def list_size(session: Session, contact_list: ContactList) -> int:
    """How many contacts the list has."""
    return int(
        session.exec(
            select(func.count()).select_from(Contact).where(Contact.list_id == contact_list.id)
        ).one()
    )


def get_contact(session: Session, contact_list: ContactList, contact_id: int) -> Contact:
    """Contact CONTACT_ID of the list; NotFound otherwise (another list's is not found)."""
    contact = session.get(Contact, contact_id)
    if contact is None or contact.list_id != contact_list.id:
        raise NotFound(f"the list {contact_list.name!r} has no contact {contact_id}")
    return contact


def update_contact(
    session: Session,
    contact_list: ContactList,
    contact_id: int,
    *,
    number: str,
    fields: dict[str, str],
    region: str,
) -> Contact:
    """Give a contact a new NUMBER and merge FIELDS (these replace its fields: a field left
    out is removed). The number is checked as an import checks it; one already on the list
    (another contact) is refused."""
    contact = get_contact(session, contact_list, contact_id)
    account = session.get(Account, contact_list.account_id)
    region = (account.default_region if account else None) or region
    e164, why = _check_number(number, region)
    if e164 is None:
        raise InvalidInput(f"{number!r} cannot be used: {why}")
    if e164 != contact.number:
        taken = session.exec(
            select(Contact.id).where(Contact.list_id == contact_list.id, Contact.number == e164)
        ).first()
        if taken is not None:
            raise InvalidInput(
                f"{e164} is already on the list {contact_list.name!r} (contact {taken}); "
                "edit that one, or delete it first"
            )
    clean: dict[str, str] = {}
    for key, value in fields.items():
        name = field_name(key)
        if not name:
            raise InvalidInput(f"merge field name {key!r} has no letter or digit; rename it")
        if keyword.iskeyword(name) or name in _RESERVED:
            raise InvalidInput(
                f"{name!r} cannot be a merge field name (templates use it); rename it"
            )
        clean[name] = value.strip()
    contact.number = e164
    contact.fields = _dump(clean)
    session.add(contact)
    session.flush()
    return contact


def delete_contact(session: Session, contact_list: ContactList, contact_id: int) -> str:
    """Take a contact off its list; returns its number."""
    contact = get_contact(session, contact_list, contact_id)
    session.delete(contact)
    session.flush()
    return contact.number
