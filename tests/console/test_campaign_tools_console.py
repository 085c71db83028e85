"""Campaigns from the console (issue 17): contact lists (import with preview and rejection
report, edit, delete), templates with each recipient's preview, and the campaign form (lists
or numbers, template or text, sender, type, schedule, short links, a file) with its cost
preview and the free test SMS to the account's own number. Every route, its limits and its
errors, on SQLite and PostgreSQL."""

from __future__ import annotations

import html
import io
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from sqlmodel import col, select

from hub.core.config import Config
from hub.core.timeutil import utcnow
from hub.store.db import session_scope
from hub.store.models import (
    Account,
    Campaign,
    Contact,
    ContactList,
    HostedFile,
    Message,
    MessageTemplate,
)
from tests.conftest import make_config
from tests.test_cli import smshub  # noqa: F401  (the CLI fixture, on the same database)

CSV = (
    "Numéro;Prénom;Ville\n"
    "06 12 34 56 78;Jeanne;Lyon\n"
    "not a number;Paul;Paris\n"
    "+33 6 98 76 54 32;Marc;Nice\n"
    "0612345678;Jeanne bis;Lyon\n"
)
PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


@pytest.fixture
def config(db_url: str, tmp_path: Path) -> Config:
    """Small upload limits, so the tests can cross them."""
    return make_config(
        db_url,
        tmp_path,
        contacts={"max_import_size": 16384, "max_import_rows": 20},
        links={"max_file_size": 2048},
        sending={"max_recipients": 5},
    )


def _text(page: str) -> str:
    """The page's visible text, tags removed and entities decoded, spaces collapsed."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def _lists(engine: Any, account: str = "acme") -> dict[str, dict[str, str]]:
    """{list name: {number: fields JSON}} of ACCOUNT."""
    with session_scope(engine) as s:
        acc = s.exec(select(Account).where(Account.name == account)).one()
        out: dict[str, dict[str, str]] = {}
        for lst in s.exec(select(ContactList).where(ContactList.account_id == acc.id)).all():
            out[lst.name] = {
                c.number: c.fields
                for c in s.exec(select(Contact).where(Contact.list_id == lst.id)).all()
            }
        return out


def _list_id(engine: Any, name: str) -> int:
    with session_scope(engine) as s:
        found = s.exec(select(ContactList).where(ContactList.name == name)).one()
        assert found.id is not None
        return found.id


def _xlsx(rows: list[list[str]]) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


async def _import(client: Any, name: str, data: bytes, filename: str, **form: str) -> Any:
    return await client.post(
        "/console/lists/import",
        {"list_name": name, **form},
        files={"file": (filename, data, "application/octet-stream")},
    )


# -- contact lists ----------------------------------------------------------------------------
async def test_import_preview_then_import_with_rejection_report(console, hub):
    alice = await console("alice")
    page = await alice.get("/console/lists")
    assert page.status_code == 200
    assert "No contact list yet" in page.text

    # The preview fragment (what console.js asks for while the file is chosen) writes nothing.
    shown = await alice.post(
        "/console/lists/import/preview",
        {"list_name": "patients"},
        files={"file": ("patients.csv", CSV.encode("utf-8"), "text/csv")},
    )
    assert shown.status_code == 200, shown.text
    text = _text(shown.text)
    assert "Preview: nothing saved yet" in text
    assert "would add 2" in text and "1 left out" in text and "1 duplicate" in text
    assert "line 3: not a number" in text
    assert "line 5: 0612345678 repeats line 2" in text
    assert "{{ prenom }}" in text and "Jeanne" in text
    assert _lists(hub.engine) == {}

    # "Preview only" without JavaScript: the same report, in the page.
    page = await _import(alice, "patients", CSV.encode("utf-8"), "patients.csv", preview="1")
    assert page.status_code == 200
    assert "Preview: nothing saved yet" in page.text and _lists(hub.engine) == {}

    page = await _import(alice, "Patients", CSV.encode("cp1252"), "patients.csv")
    assert page.status_code == 200, page.text
    text = _text(page.text)
    assert "Imported." in text and "added 2" in text and "line 3: not a number" in text
    lists = _lists(hub.engine)
    assert set(lists["patients"]) == {"+33612345678", "+33698765432"}
    assert '"prenom": "Jeanne"' in lists["patients"]["+33612345678"]
    assert f'href="/console/lists/{_list_id(hub.engine, "patients")}"' in page.text

    # An XLSX adds to the same list; a TXT is one number a line.
    xlsx = _xlsx([["Tel", "Prénom"], ["0611223344", "Zoé"], ["12", "Bad"]])
    page = await _import(alice, "patients", xlsx, "more.xlsx")
    assert "added 1" in _text(page.text) and "line 3: 12" in _text(page.text)
    page = await _import(alice, "staff", b"06 11 22 33 44\n06 55 44 33 22\n", "staff.txt")
    assert "added 2" in _text(page.text)
    page = await alice.get("/console/lists")
    assert "patients" in page.text and "staff" in page.text


async def test_import_limits_and_errors_name_the_setting(console, hub):
    alice = await console("alice")
    big = ("0612345678;x\n" * 2000).encode()
    page = await _import(alice, "big", big, "big.csv")
    assert page.status_code == 413
    assert "contacts.max_import_size" in _text(page.text)
    many = "".join(f"06123456{i:02d}\n" for i in range(30)).encode()
    page = await _import(alice, "many", many, "many.csv")
    assert page.status_code == 413
    assert "contacts.max_import_rows" in _text(page.text)
    # The preview fragment says the same, as a fragment.
    shown = await alice.post(
        "/console/lists/import/preview",
        {"list_name": "many"},
        files={"file": ("many.csv", many, "text/csv")},
    )
    assert shown.status_code == 422 and "contacts.max_import_rows" in shown.text
    page = await _import(alice, "bad name!", b"0612345678\n", "x.csv")
    assert page.status_code == 422 and "list name" in _text(page.text)
    page = await alice.post("/console/lists/import", {"list_name": "x"})
    assert page.status_code == 422 and "choose a file" in _text(page.text)
    page = await _import(alice, "x", b"PK\x03\x04junk", "x.xlsx")
    assert page.status_code == 422 and "XLSX" in _text(page.text)
    assert _lists(hub.engine) == {}


async def test_edit_add_remove_contacts_and_delete_the_list(console, hub):
    alice = await console("alice")
    await _import(alice, "patients", CSV.encode(), "p.csv")
    list_id = _list_id(hub.engine, "patients")
    page = await alice.get(f"/console/lists/{list_id}")
    assert page.status_code == 200
    assert "2 contacts" in page.text and "Jeanne" in page.text

    with session_scope(hub.engine) as s:
        jeanne = s.exec(select(Contact).where(Contact.number == "+33612345678")).one()
        marc = s.exec(select(Contact).where(Contact.number == "+33698765432")).one()
    edit = f"/console/lists/{list_id}/contacts/{jeanne.id}"
    done = await alice.post(
        edit,
        {
            "number": "06 12 34 56 79",
            "field:prenom": "Jeanne-Marie",
            "field:ville": "",
            "new_field": "Civilité",
            "new_value": "Mme",
        },
    )
    assert done.status_code == 303
    fields = _lists(hub.engine)["patients"]["+33612345679"]
    assert '"prenom": "Jeanne-Marie"' in fields and "ville" not in fields
    assert '"civilite": "Mme"' in fields
    # Another contact's number, a landline, a reserved field name: refused with why.
    page = await alice.post(edit, {"number": "+33698765432"})
    assert page.status_code == 422 and "already on the list" in _text(page.text)
    page = await alice.post(edit, {"number": "01 23 45 67 89"})
    assert page.status_code == 422 and "landline" in _text(page.text)
    page = await alice.post(edit, {"number": "0612345679", "new_field": "number"})
    assert page.status_code == 422 and "merge field name" in _text(page.text)

    done = await alice.post(
        f"/console/lists/{list_id}/add", {"number": "0611223344", "field:prenom": "Zoé"}
    )
    assert done.status_code == 303
    assert "+33611223344" in _lists(hub.engine)["patients"]
    page = await alice.post(f"/console/lists/{list_id}/add", {"number": "hello"})
    assert page.status_code == 422

    done = await alice.post(f"/console/lists/{list_id}/contacts/{marc.id}/delete")
    assert done.status_code == 303
    assert "+33698765432" not in _lists(hub.engine)["patients"]

    csv_page = await alice.get(f"/console/lists/{list_id}.csv")
    assert csv_page.status_code == 200
    assert csv_page.content.startswith(b"\xef\xbb\xbfnumber")
    assert "+33611223344" in csv_page.text

    # Another customer sees none of it: not found, exactly like a missing list.
    eve = await console("eve")
    for url in (f"/console/lists/{list_id}", f"/console/lists/{list_id}.csv"):
        assert (await eve.get(url)).status_code == 404
    assert (await eve.post(f"/console/lists/{list_id}/delete")).status_code == 404
    assert (await eve.post(edit, {"number": "0612345670"})).status_code == 404

    done = await alice.post(f"/console/lists/{list_id}/delete")
    assert done.status_code == 303
    assert _lists(hub.engine) == {}
    assert (await alice.get(f"/console/lists/{list_id}")).status_code == 404


async def test_sub_account_lists_are_its_own(console, hub):
    alice = await console("alice")
    page = await _import(alice, "lyon-team", b"0611223344\n", "t.txt", account="acme-lyon")
    assert page.status_code == 200
    assert "lyon-team" in _lists(hub.engine, "acme-lyon")
    assert _lists(hub.engine) == {}
    lyon = await console("lyon")
    page = await lyon.get("/console/lists")
    assert "lyon-team" in page.text
    page = await _import(lyon, "x", b"0611223344\n", "t.txt", account="acme")
    assert page.status_code == 404


# -- templates --------------------------------------------------------------------------------
async def test_templates_with_each_recipients_preview(console, hub):
    alice = await console("alice")
    await _import(alice, "patients", CSV.encode(), "p.csv")
    page = await alice.get("/console/templates")
    assert page.status_code == 200 and "No template yet" in page.text

    # The live preview: each recipient's text as the send renders it, parts and credits.
    shown = await alice.post(
        "/console/templates/preview",
        {"text": "Bonjour {{ prenom }} de {{ ville }}", "preview_list": "patients",
         "type": "alert"},
    )  # fmt: skip
    assert shown.status_code == 200, shown.text
    text = _text(shown.text)
    assert "Bonjour Jeanne de Lyon" in text and "Bonjour Marc de Nice" in text
    assert "2 recipients" in text and "2 credits" in text
    # Typed numbers have no fields: that recipient is left out, named, the others go on.
    shown = await alice.post(
        "/console/templates/preview",
        {"text": "Bonjour {{ prenom }}", "preview_list": "patients",
         "preview_numbers": "0611223344", "type": "alert"},
    )  # fmt: skip
    text = _text(shown.text)
    assert "merge field 'prenom' is missing for +33611223344" in text
    assert "1 left out" in text
    # Syntax errors and the sandbox's bounds are named.
    shown = await alice.post("/console/templates/preview", {"text": "Bonjour {{ prenom "})
    assert shown.status_code == 422 and "cannot be used" in _text(shown.text)
    shown = await alice.post(
        "/console/templates/preview",
        {"text": "{% for i in range(100000) %}x{% endfor %}", "preview_numbers": "0611223344"},
    )
    assert shown.status_code == 422
    shown = await alice.post(
        "/console/templates/preview",
        {"text": "Hi", "preview_list": "patients",
         "preview_numbers": "0611223301 0611223302 0611223303 0611223304"},
    )  # fmt: skip
    assert shown.status_code == 422 and "sending.max_recipients" in shown.text
    shown = await alice.post("/console/templates/preview", {"text": "Hi {{ prenom }}"})
    assert "Choose a list" in _text(shown.text) and "prenom" in shown.text

    done = await alice.post(
        "/console/templates", {"name": "Rappel", "text": "Bonjour {{ prenom }}, à bientôt"}
    )
    assert done.status_code == 303
    template_url = done.headers["location"]
    page = await alice.get(template_url)
    assert page.status_code == 200 and "Template rappel" in _text(page.text)
    again = await alice.post("/console/templates", {"name": "rappel", "text": "x"})
    assert again.status_code == 409 and "already has a template" in _text(again.text)
    bad = await alice.post("/console/templates", {"name": "b", "text": "{{ oops"})
    assert bad.status_code == 422
    assert (await alice.post("/console/templates", {"name": "e", "text": " "})).status_code == 422

    done = await alice.post(template_url, {"text": "Salut {{ prenom }}"})
    assert done.status_code == 303
    with session_scope(hub.engine) as s:
        saved = s.exec(select(MessageTemplate)).one()
        assert saved.text == "Salut {{ prenom }}"
    eve = await console("eve")
    assert (await eve.get(template_url)).status_code == 404
    assert (await eve.post(template_url, {"text": "x"})).status_code == 404
    done = await alice.post(f"{template_url}/delete")
    assert done.status_code == 303
    with session_scope(hub.engine) as s:
        assert s.exec(select(MessageTemplate)).all() == []


# -- the campaign form ------------------------------------------------------------------------
async def test_campaign_form_preview_then_schedule_with_link_and_pdf(console, hub):
    alice = await console("alice")
    await _import(alice, "patients", CSV.encode(), "p.csv")
    page = await alice.get("/console/campaigns/new?list=patients")
    assert page.status_code == 200
    assert 'name="list" value="patients" checked' in page.text

    form = {
        "name": "Flu shots",
        "list": "patients",
        "numbers": "0611223344",
        "text": "Bonjour {{ prenom|default('client') }}, vaccin: https://clinic.example/flu-vaccine-2026",
        "type": "marketing",
        "sender": "CLINIC",
        "shorten_links": "1",
        "send_at": (utcnow() + timedelta(days=3)).strftime("%Y-%m-%dT10:00"),
        "tz": "Europe/Paris",
    }  # fmt: skip
    files = {"file": ("flyer.pdf", PDF, "application/pdf")}
    shown = await alice.post("/console/campaigns/new/preview", form, files=files)
    assert shown.status_code == 200, shown.text
    text = _text(shown.text)
    assert "3 recipients" in text and "Bonjour Jeanne" in text and "Bonjour client" in text
    # The link is counted as a short link, the file as its own, the STOP mention is there.
    assert "http://127.0.0.1:8025/s/xxxxxxxx" in text
    assert "clinic.example" not in text
    assert "STOP" in text
    credits = int(re.search(r'data-cost="(\d+)"', shown.text).group(1))  # type: ignore[union-attr]
    parts = int(re.search(r'data-parts="(\d+)"', shown.text).group(1))  # type: ignore[union-attr]
    assert parts >= 3 and credits == parts

    # Without JavaScript, the Preview button shows the same in the page, the form kept.
    page = await alice.post("/console/campaigns/new", {**form, "action": "preview"}, files=files)
    assert page.status_code == 200
    assert f'data-cost="{credits}"' in page.text and 'value="Flu shots"' in page.text

    done = await alice.post("/console/campaigns/new", {**form, "action": "create"}, files=files)
    assert done.status_code == 303, done.text
    assert re.match(r"/console/campaigns/\d+$", done.headers["location"])
    with session_scope(hub.engine) as s:
        campaign = s.exec(select(Campaign)).one()
        assert campaign.status == "scheduled" and campaign.recipients == 3
        assert campaign.credits == credits and campaign.sender == "CLINIC"
        assert campaign.send_at is not None
        messages = s.exec(select(Message).where(Message.campaign_id == campaign.id)).all()
        hosted = s.exec(select(HostedFile)).one()
        assert hosted.name == "flyer.pdf" and hosted.content_type == "application/pdf"
    texts = [m.text for m in messages]
    assert all("clinic.example" not in t for t in texts)
    # Each recipient its own short link for the URL and for the file (its link ends the
    # text): clicks on either say who clicked.
    codes = [re.findall(r"/s/([0-9A-Za-z]{8})", t) for t in texts]
    assert all(len(c) == 2 for c in codes) and len({c[0] for c in codes}) == 3
    assert len({c[1] for c in codes}) == 3
    assert sum(m.credits for m in messages) == credits
    page = await alice.get("/console/campaigns")
    assert "Flu shots" in page.text and "scheduled" in page.text


async def test_campaign_form_with_template_and_pasted_numbers_only(console, hub):
    alice = await console("alice")
    await alice.post("/console/templates", {"name": "promo", "text": "Promo -20% ce samedi"})
    page = await alice.get("/console/campaigns/new?template=promo")
    assert '<option value="promo" selected>' in page.text
    done = await alice.post(
        "/console/campaigns/new",
        {"name": "Promo", "numbers": "06 11 22 33 44\n06 55 44 33 22", "template": "promo",
         "type": "alert", "action": "create"},
    )  # fmt: skip
    assert done.status_code == 303, done.text
    with session_scope(hub.engine) as s:
        campaign = s.exec(select(Campaign)).one()
        assert campaign.text == "Promo -20% ce samedi" and campaign.recipients == 2
        assert campaign.status == "sending"


async def test_campaign_form_errors(console, hub):
    alice = await console("alice")
    base = {"name": "C", "numbers": "0611223344", "text": "Hi", "type": "alert"}

    async def create(**changes: Any) -> str:
        files = changes.pop("files", None)
        page = await alice.post(
            "/console/campaigns/new", {**base, "action": "create", **changes}, files=files
        )
        assert page.status_code == 422, page.text
        assert 'value="C"' in page.text  # the form comes back filled in
        return _text(page.text)

    assert "needs recipients" in await create(numbers="")
    assert "not both" in await create(template="promo")
    assert "no template named" in await create(text="", template="promo")
    assert "is in the past" in await create(send_at="2020-01-01T10:00", tz="Europe/Paris")
    assert "landline" in await create(numbers="01 23 45 67 89")
    assert "type is marketing or alert" in await create(type="spam")
    too_big = {"file": ("big.pdf", PDF + b"0" * 4096, "application/pdf")}
    assert "links.max_file_size" in await create(files=too_big)
    not_pdf = {"file": ("x.pdf", b"MZ\x90\x00 not a pdf", "application/pdf")}
    assert "PNG, GIF, JPEG or PDF" in await create(files=not_pdf)
    too_many = "\n".join(f"06112233{i:02d}" for i in range(6))
    assert "sending.max_recipients" in await create(numbers=too_many)
    # The preview fragment names the same errors.
    shown = await alice.post("/console/campaigns/new/preview", {**base, "numbers": "12"})
    assert shown.status_code == 200 and "Left out" in _text(shown.text)
    shown = await alice.post("/console/campaigns/new/preview", {**base, "text": "{{ x"})
    assert shown.status_code == 422 and "cannot be used" in _text(shown.text)
    shown = await alice.post("/console/campaigns/new/preview", {**base, "numbers": ""})
    assert shown.status_code == 200 and shown.text.strip() == ""
    with session_scope(hub.engine) as s:
        assert s.exec(select(Campaign)).all() == []
        assert s.exec(select(HostedFile)).all() == []


async def test_test_sms_goes_free_to_the_own_number_only(console, hub):
    alice = await console("alice")
    form = {"name": "C", "numbers": "0611223344", "text": "Bonjour {{ prenom|default('toi') }}",
            "type": "alert", "action": "test"}  # fmt: skip
    page = await alice.post("/console/campaigns/new", form)
    assert page.status_code == 422
    assert "balance-alert SMS number" in _text(page.text)
    with session_scope(hub.engine) as s:
        acc = s.exec(select(Account).where(Account.name == "acme")).one()
        acc.alert_sms = "+33600000001"
        s.add(acc)
    page = await alice.post(
        "/console/campaigns/new", form, files={"file": ("f.pdf", PDF, "application/pdf")}
    )
    assert page.status_code == 200, page.text
    text = _text(page.text)
    assert "Test SMS sent to +33600000001" in text and "Choose the file again" in text
    with session_scope(hub.engine) as s:
        sent = s.exec(select(Message).where(col(Message.source) == "test")).one()
        assert sent.recipient == "+33600000001" and sent.credits == 0
        assert sent.text.startswith("Bonjour toi\n") and "/s/" in sent.text
        assert s.exec(select(Campaign)).all() == []


async def test_cli_import_reads_the_same_limits_and_report(account, smshub, tmp_path):  # noqa: F811
    """`smshub contacts import` prints the console's summary and obeys the same settings."""
    source = tmp_path / "p.csv"
    source.write_text(CSV, "utf-8")
    code, out, _ = smshub("contacts", "import", str(source), "--list", "patients")
    assert code == 0
    assert "list patients (csv (semicolon, utf-8), header row): added 2" in out
    assert "line 3: 'not a number' left out" in out
    with (tmp_path / "smshub.toml").open("a") as cfg:
        cfg.write("[contacts]\nmax_import_rows = 3\nmax_import_size = 1024\n")
    code, _, err = smshub("contacts", "import", str(source), "--list", "patients")
    assert code != 0 and "contacts.max_import_rows" in err
    source.write_text("0612345678\n" * 200, "utf-8")
    code, _, err = smshub("contacts", "import", str(source), "--list", "patients")
    assert code != 0 and "contacts.max_import_size" in err
