"""Contact lists: imports of the files Excel and people write, previews, edits, list:NAME."""

from __future__ import annotations

import io
import json
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func
from sqlmodel import select

from hub.campaigns import contacts
from hub.errors import InvalidInput, NotFound
from hub.store.db import session_scope
from hub.store.models import Contact, ContactList, Message

HEADER = ["Numéro", "Prénom", "Nom", "Société", "First name"]
ROWS = [
    ["06 12 34 56 78", "Zoé", "Dupont", "Café Ça", "Zoe"],
    ["+33 6 98 76 54 32", "Jérôme", "Martin", "ACME", "Jerome"],
    ["0041 79 123 45 67", "Ueli", "Müller", "Käserei", "Ueli"],
]
FIELDS = ["prenom", "nom", "societe", "first_name"]


def _csv(rows: list[list[str]], sep: str) -> str:
    return "\r\n".join(sep.join(r) for r in rows) + "\r\n"


def _import(engine: Engine, data: bytes, filename: str, **kw: Any) -> contacts.ImportReport:
    args: dict[str, Any] = {"preview": False, "region": "FR"}
    args.update(kw)
    with session_scope(engine) as s:
        return contacts.import_contacts(s, "acme", "clients", data, filename, **args)


def _members(engine: Engine, name: str = "clients") -> dict[str, dict[str, str]]:
    with session_scope(engine) as s:
        return dict(contacts.list_members(s, 1, name))


def _count(engine: Engine, model: type) -> int:
    with session_scope(engine) as s:
        return int(s.exec(select(func.count()).select_from(model)).one())


@pytest.mark.parametrize(
    ("filename", "encode"),
    [
        # Excel "CSV UTF-8": comma, with a BOM.
        ("clients.csv", lambda: ("\ufeff" + _csv([HEADER, *ROWS], ",")).encode("utf-8")),
        # French Excel's plain "CSV": semicolon, Windows-1252.
        ("clients.csv", lambda: _csv([HEADER, *ROWS], ";").encode("cp1252")),
        # UTF-8 without BOM, semicolon (LibreOffice, scripts).
        ("clients.csv", lambda: _csv([HEADER, *ROWS], ";").encode("utf-8")),
        # UTF-16 with BOM, semicolon.
        ("clients.csv", lambda: _csv([HEADER, *ROWS], ";").encode("utf-16")),
        # Excel "Unicode text": UTF-16 LE with BOM, tab-separated, named .txt.
        ("clients.txt", lambda: _csv([HEADER, *ROWS], "\t").encode("utf-16")),
    ],
    ids=["utf8-bom-comma", "cp1252-semicolon", "utf8-semicolon", "utf16-semicolon", "utf16-tab"],
)
def test_csv_files_as_excel_writes_them(engine, account, filename, encode):
    report = _import(engine, encode(), filename)
    assert report.header is True
    assert report.fields == FIELDS
    assert (report.added, report.duplicates, report.rejected) == (3, 0, [])
    members = _members(engine)
    assert members["+33612345678"] == {
        "prenom": "Zoé",
        "nom": "Dupont",
        "societe": "Café Ça",
        "first_name": "Zoe",
    }
    assert members["+41791234567"]["nom"] == "Müller"
    assert report.rows[0]["number"] == "+33612345678"


def test_xlsx_made_with_openpyxl(engine, account):
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Mobile", "First Name", "LastName", "Company", "Member since"])
    # Excel turns 0612345678 typed in a cell into the number 612345678.
    sheet.append([612345678, "Zoé", "Dupont", "ACME", 2019])
    sheet.append(["+33 6 98 76 54 32", "Jérôme", None, "ACME", 2021.5])
    sheet.append([33611223344, "Anne", "Roy", "", None])
    sheet.append([None, None, None, None, None])  # an empty row is skipped
    sheet.append(["01 23 45 67 89", "Fixe", "", "", ""])
    buf = io.BytesIO()
    book.save(buf)
    report = _import(engine, buf.getvalue(), "export.xlsx")
    assert report.format == "xlsx"
    assert report.fields == ["first_name", "last_name", "company", "member_since"]
    assert report.added == 3
    assert [(r.line, r.input) for r in report.rejected] == [(6, "01 23 45 67 89")]
    assert "landline" in report.rejected[0].reason
    members = _members(engine)
    assert members["+33612345678"] == {
        "first_name": "Zoé",
        "last_name": "Dupont",
        "company": "ACME",
        "member_since": "2019",
    }
    assert members["+33698765432"]["last_name"] == ""
    assert members["+33698765432"]["member_since"] == "2021.5"
    assert "+33611223344" in members


def test_old_xls_read_with_xlrd(engine, account):
    xlwt = pytest.importorskip("xlwt")
    book = xlwt.Workbook()
    sheet = book.add_sheet("Contacts")
    for r, row in enumerate([["Téléphone", "Prénom"], [612345678, "Zoé"], ["0698765432", "Léa"]]):
        for c, value in enumerate(row):
            sheet.write(r, c, value)
    buf = io.BytesIO()
    book.save(buf)
    report = _import(engine, buf.getvalue(), "vieux.xls")
    assert (report.format, report.fields, report.added) == ("xls", ["prenom"], 2)
    assert _members(engine)["+33612345678"] == {"prenom": "Zoé"}


def test_txt_one_number_per_line_without_header(engine, account):
    data = b"06 12 34 56 78\n+33 6 98 76 54 32\n\n06.11.22.33.44\n"
    report = _import(engine, data, "numeros.txt")
    assert report.header is False
    assert report.fields == []
    assert report.added == 3
    assert _members(engine)["+33611223344"] == {}


def test_no_header_means_custom_fields(engine, account):
    data = b"0612345678,Zoe,VIP\n0698765432,Lea,\n"
    report = _import(engine, data, "x.csv")
    assert report.header is False
    assert report.fields == ["custom1", "custom2"]
    assert _members(engine)["+33612345678"] == {"custom1": "Zoe", "custom2": "VIP"}


def test_duplicates_first_row_wins_and_are_reported(engine, account):
    data = _csv(
        [
            ["Number", "First name"],
            ["06 12 34 56 78", "Zoé"],
            ["0698765432", "Léa"],
            ["+33612345678", "Autre"],
            ["0033 6 12 34 56 78", "Encore"],
        ],
        ";",
    ).encode()
    report = _import(engine, data, "dups.csv")
    assert (report.added, report.duplicates) == (2, 2)
    assert [(d.line, d.first_line, d.e164) for d in report.duplicate_lines] == [
        (4, 2, "+33612345678"),
        (5, 2, "+33612345678"),
    ]
    assert _members(engine)["+33612345678"] == {"first_name": "Zoé"}


def test_landlines_short_and_invalid_numbers_are_reported_by_line(engine, account):
    data = _csv(
        [
            ["Tel", "Nom"],
            ["06 12 34 56 78", "ok"],
            ["01 23 45 67 89", "fixe"],
            ["06 12 34", "court"],
            ["+41 79 123", "court CH"],
            ["bonjour", "texte"],
            ["", "vide"],
        ],
        ",",
    ).encode()
    report = _import(engine, data, "bad.csv")
    assert report.added == 1
    reasons = {r.line: (r.input, r.reason) for r in report.rejected}
    assert reasons[3] == ("01 23 45 67 89", "a landline number cannot receive SMS")
    assert reasons[4][0] == "06 12 34" and "too short" in reasons[4][1]
    assert reasons[5][0] == "+41 79 123" and "CH" in reasons[5][1]
    assert reasons[6] == ("bonjour", "not a phone number")
    assert reasons[7] == ("", "no number in the first column")


def test_preview_saves_nothing(engine, account):
    data = _csv([HEADER, *ROWS, ["0123456789", "x", "y", "z", "w"]], ";").encode()
    report = _import(engine, data, "clients.csv", preview=True)
    assert report.preview is True
    assert (report.added, len(report.rejected)) == (3, 1)
    assert report.rows[1] == {
        "number": "+33698765432",
        "prenom": "Jérôme",
        "nom": "Martin",
        "societe": "ACME",
        "first_name": "Jerome",
    }
    assert _count(engine, ContactList) == 0
    assert _count(engine, Contact) == 0


def test_reimport_merges_fields_and_counts_updates(engine, account):
    _import(engine, _csv([HEADER, *ROWS], ";").encode(), "a.csv")
    again = _csv(
        [["Numéro", "Prénom", "Ville"], ["0612345678", "Zoé-Marie", "Lyon"], ROWS[1][:2] + [""]],
        ";",
    ).encode()
    preview = _import(engine, again, "b.csv", preview=True)
    assert (preview.added, preview.updated) == (0, 2)
    report = _import(engine, again, "b.csv")
    assert (report.added, report.updated, report.unchanged) == (0, 2, 0)
    member = _members(engine)["+33612345678"]
    # The file's columns replace, the others stay.
    assert member["prenom"] == "Zoé-Marie" and member["ville"] == "Lyon"
    assert member["nom"] == "Dupont"
    assert _import(engine, again, "b.csv").unchanged == 2


def test_field_names_are_snake_case_and_usable():
    assert contacts.field_name("Prénom") == "prenom"
    assert contacts.field_name("First name") == "first_name"
    assert contacts.field_name("FirstName") == "first_name"
    assert contacts.field_name("Custom 1") == "custom1"
    assert contacts.field_name("Adresse ligne 2") == "adresse_ligne2"
    assert contacts.field_name("  Société (siège) ") == "societe_siege"
    assert contacts._field_names(["Nom", "nom", "", "2e adresse", "if", "number"]) == [
        "nom",
        "nom_2",
        "custom3",
        "f_2e_adresse",
        "if_field",
        "number_field",
    ]


def test_add_remove_export_delete(engine, account):
    with session_scope(engine) as s:
        report = contacts.add_numbers(
            s, "acme", "VIP", ["06 12 34 56 78", "0698765432", "0123456789"], region="FR"
        )
        assert (report.list_name, report.added, len(report.rejected)) == ("vip", 2, 1)
        contacts.add_numbers(
            s, "acme", "vip", ["0612345678"], region="FR", fields={"First name": "Zoé"}
        )
    assert _members(engine, "vip")["+33612345678"] == {"first_name": "Zoé"}
    with session_scope(engine) as s:
        csv_bytes = contacts.export_list(s, "acme", "vip")
    assert csv_bytes.startswith(b"\xef\xbb\xbf")
    assert csv_bytes.decode("utf-8-sig").splitlines() == [
        "number,first_name",
        "+33612345678,Zoé",
        "+33698765432,",
    ]
    # The export imports back unchanged.
    with session_scope(engine) as s:
        back = contacts.import_contacts(
            s, "acme", "copy", csv_bytes, "vip.csv", preview=False, region="FR"
        )
    assert (back.added, back.fields) == (2, ["first_name"])
    with session_scope(engine) as s:
        removed = contacts.remove_numbers(
            s, "acme", "vip", ["+33698765432", "0611111111"], region="FR"
        )
    assert removed.removed == ["+33698765432"]
    assert "not on the list" in removed.not_found[0].reason
    with session_scope(engine) as s:
        assert contacts.delete_list(s, "acme", "vip") == 1
    with session_scope(engine) as s, pytest.raises(NotFound, match="lists list"):
        contacts.list_members(s, 1, "vip")


def test_bad_names_and_files_are_refused(engine, account):
    with session_scope(engine) as s, pytest.raises(InvalidInput, match="list name"):
        contacts.import_contacts(
            s, "acme", "a b", b"0612345678", "x.txt", preview=True, region="FR"
        )
    with session_scope(engine) as s, pytest.raises(InvalidInput, match="not an Excel"):
        contacts.import_contacts(s, "acme", "x", b"hello", "x.xlsx", preview=True, region="FR")
    with session_scope(engine) as s, pytest.raises(InvalidInput, match="no rows"):
        contacts.import_contacts(s, "acme", "x", b"\n\n", "x.csv", preview=True, region="FR")


# -- the command line ---------------------------------------------------------------------
@pytest.fixture
def smshub(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from typer.testing import CliRunner

    from hub.cli import main as cli

    cfg = tmp_path / "smshub.toml"
    cfg.write_text(
        f'[hub]\ndata_dir = "{tmp_path}"\n[database]\nurl = "{db_url}"\n'
        '[providers.simulator]\ntype = "simulator"\nreport_delay = 3600\n'
    )
    monkeypatch.setenv("SMSHUB_CONFIG", str(cfg))
    runner = CliRunner()

    def run(*args: str, input: str | None = None) -> tuple[int, str, str]:
        cli._state.clear()
        result = runner.invoke(cli.app, list(args), input=input)
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.stdout, result.stderr

    return run


def test_cli_import_preview_json_then_lists(smshub, tmp_path):
    assert smshub("accounts", "create", "acme", "--region", "FR")[0] == 0
    path = tmp_path / "clients.csv"
    path.write_bytes(_csv([HEADER, *ROWS, ["06 12", "a", "b", "c", "d"]], ";").encode("cp1252"))
    code, out, _ = smshub(
        "contacts", "import", str(path), "--list", "clients", "--preview", "--json"
    )
    assert code == 0
    data = json.loads(out)
    assert {k: data[k] for k in ("list", "added", "updated", "duplicates", "fields")} == {
        "list": "clients",
        "added": 3,
        "updated": 0,
        "duplicates": 0,
        "fields": FIELDS,
    }
    assert data["rejected"] == [{"line": 5, "input": "06 12", "reason": "too short for FR"}]
    assert data["preview"][0]["prenom"] == "Zoé"
    code, out, _ = smshub("lists", "list", "--json")
    assert json.loads(out) == []

    code, out, _ = smshub("contacts", "import", str(path), "--list", "clients")
    assert code == 0 and "added 3" in out and "line 5" in out
    code, out, _ = smshub("lists", "show", "clients", "--json")
    assert json.loads(out)["contacts"] == 3
    code, out, _ = smshub("lists", "add", "clients", "0611223344", "--field", "prenom=Anne")
    assert code == 0, out
    code, out, _ = smshub("lists", "remove", "clients", "0698765432")
    assert code == 0 and "1 removed" in out
    export = tmp_path / "out.csv"
    code, out, _ = smshub("lists", "export", "clients", "--output", str(export))
    assert code == 0
    lines = export.read_bytes().decode("utf-8-sig").splitlines()
    assert lines[0] == "number,prenom,nom,societe,first_name"
    assert len(lines) == 4
    code, out, _ = smshub("lists", "delete", "clients")
    assert code == 0 and "3 contact(s)" in out
    code, _, err = smshub("lists", "show", "clients")
    assert code == 1 and "no contact list named 'clients'" in err


# -- list:NAME in a mail subject ----------------------------------------------------------
def test_mail_subject_list_token_sends_to_the_members(engine, config, account):
    from hub.mail.intake.addresses import add_intake_address, add_mail_user, check_login
    from hub.mail.intake.policy import IntakePolicy, MailEnvelope

    with session_scope(engine) as s:
        add_intake_address(s, "acme", "sms@hub.test", require_auth=True)
        add_mail_user(s, "acme", "reception", "correct horse battery")
        contacts.add_numbers(s, "acme", "patients", ["0612345678", "0698765432"], region="FR")
        contacts.add_numbers(s, "acme", "empty", ["0611111111"], region="FR")
        contacts.remove_numbers(s, "acme", "empty", ["0611111111"], region="FR")
        login = check_login(s, "reception", "correct horse battery")

    def mail(subject: str) -> bytes:
        msg = EmailMessage()
        msg["From"] = "anne@clinic.example"
        msg["To"] = "sms@hub.test"
        msg["Subject"] = subject
        msg["Message-ID"] = make_msgid(domain="clinic.example")
        msg.set_content("Le cabinet est fermé demain.")
        return msg.as_bytes()

    policy = IntakePolicy(engine, config)

    def take(subject: str) -> Any:
        return policy.take(
            MailEnvelope(
                raw=mail(subject),
                mail_from="anne@clinic.example",
                rcpt_to=["sms@hub.test"],
                login=login,
            )
        )

    outcome = take("list:patients, 0611223344, list:nope, list:empty")
    assert outcome.accepted, outcome.reply
    assert "list:nope (no contact list" in outcome.reply
    assert "list:empty (the list is empty)" in outcome.reply
    with session_scope(engine) as s:
        sent = sorted(m.recipient for m in s.exec(select(Message)).all())
    assert sent == ["+33611223344", "+33612345678", "+33698765432"]

    refused = take("list:nope")
    assert not refused.accepted
    assert refused.reply.startswith("550 5.1.3") and "list:nope" in refused.reply

    preview = policy.preview(mail("list:patients"), account="acme")
    assert preview["recipients"] == ["+33612345678", "+33698765432"]
