"""Templates with merge fields, personalised previews and sends, campaigns and their reports."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import col, select

from hub.campaigns import campaigns, contacts
from hub.campaigns import templates as mt
from hub.core.config import Config
from hub.core.timeutil import utcnow
from hub.errors import ConflictError, InvalidInput
from hub.sending import submit as sending
from hub.sending.credits import ledger_problems
from hub.store.db import session_scope
from hub.store.models import Account, Campaign, LinkClick, Message, ShortLink
from tests.conftest import make_config

# 4 merge fields from the list, plus the number.
FOUR = "{{ first_name }} {{ last_name }} ({{ company }}), code {{ custom1 }} for {{ number }}"
# 12 + 140 = 152 septets with a 2-letter name: one part; a 20-letter name makes 170: two.
FILLER = "Nos soldes commencent demain: -30% sur tout le magasin, retrait gratuit. " * 2
LONG = "Bonjour {{ first_name }}! " + FILLER[:140]


@pytest.fixture
def config(db_url: str, tmp_path: Path) -> Config:
    """The simulator reports +33698765432 invalid and refuses +33655555555 outright."""
    return make_config(
        db_url,
        tmp_path,
        providers={
            "simulator": {
                "type": "simulator",
                "report_delay": 3600.0,
                "invalid_numbers": ["+33698765432"],
                "reject_numbers": ["+33655555555"],
            }
        },
    )


def _list(engine: Engine, name: str, rows: list[list[str]]) -> None:
    data = "\r\n".join(";".join(r) for r in rows).encode("utf-8")
    with session_scope(engine) as s:
        report = contacts.import_contacts(
            s, "acme", name, data, f"{name}.csv", preview=False, region="FR"
        )
    assert not report.rejected, report.rejected


def _clients(engine: Engine) -> None:
    _list(
        engine,
        "clients",
        [
            ["Mobile", "First name", "Last name", "Company", "Custom 1"],
            ["06 12 34 56 78", "Al", "Roy", "ACME", "A1"],
            ["06 98 76 54 32", "Maximilien-Alexandre", "de La Tour", "Initech", "B2"],
            ["06 11 22 33 44", "Zoe", "Durand", "Globex", "C3"],
        ],
    )


def _balance(engine: Engine) -> int:
    with session_scope(engine) as s:
        account = s.exec(select(Account).where(Account.name == "acme")).one()
        return account.balance


def _messages(engine: Engine, campaign_id: int | None = None) -> list[Message]:
    with session_scope(engine) as s:
        query = select(Message).order_by(col(Message.recipient))
        if campaign_id is not None:
            query = query.where(Message.campaign_id == campaign_id)
        return list(s.exec(query).all())


# -- templates ----------------------------------------------------------------------------
def test_template_with_four_merge_fields_renders_per_recipient(engine, config, account):
    _clients(engine)
    with session_scope(engine) as s:
        saved = mt.create_template(s, "acme", "Promo", FOUR)
        assert saved.name == "promo"
        assert mt.template_fields(FOUR) == [
            "company",
            "custom1",
            "first_name",
            "last_name",
            "number",
        ]
        with pytest.raises(ConflictError, match="--replace"):
            mt.create_template(s, "acme", "promo", "x")
    with session_scope(engine) as s:
        shown = mt.preview_personalized(
            s, config, "acme", mt.get_template(s, "acme", "promo"), lists=["clients"]
        )
    texts = {r["number"]: r["text"] for r in shown["recipients"]}
    assert texts["+33612345678"] == "Al Roy (ACME), code A1 for +33612345678"
    assert texts["+33611223344"] == "Zoe Durand (Globex), code C3 for +33611223344"
    assert shown["totals"]["recipients"] == 3
    assert shown["totals"]["fields"] == ["company", "custom1", "first_name", "last_name", "number"]


def test_broken_template_says_where(engine, account):
    with session_scope(engine) as s, pytest.raises(InvalidInput, match="line 1"):
        mt.create_template(s, "acme", "bad", "Bonjour {{ first_name ")


def test_long_name_makes_two_parts_and_the_charge_matches_the_preview(engine, config, account):
    _clients(engine)
    with session_scope(engine) as s:
        shown = mt.preview_personalized(s, config, "acme", LONG, lists=["clients"])
    parts = {r["number"]: (r["segments"], r["credits"]) for r in shown["recipients"]}
    assert parts == {
        "+33612345678": (1, 1),
        "+33698765432": (2, 2),
        "+33611223344": (1, 1),
    }
    assert shown["totals"]["credits"] == 4
    assert shown["totals"]["max_segments"] == 2

    before = _balance(engine)
    with session_scope(engine) as s:
        created = campaigns.create_campaign(
            s, config, "acme", "soldes", text=LONG, lists=["clients"], type="alert"
        )
    assert created.campaign.credits == 4
    assert created.submit.segments == 2
    assert before - _balance(engine) == 4
    rows = {m.recipient: (m.segments, m.credits, m.text) for m in _messages(engine)}
    assert rows["+33698765432"][:2] == (2, 2)
    assert rows["+33698765432"][2].startswith("Bonjour Maximilien-Alexandre! ")
    assert rows["+33612345678"][:2] == (1, 1)
    with session_scope(engine) as s:
        assert ledger_problems(s) == []


def test_marketing_texts_each_get_the_optout_mention(engine, config, account):
    _clients(engine)
    with session_scope(engine) as s:
        created = campaigns.create_campaign(
            s,
            config,
            "acme",
            "promo",
            text="Hello {{ first_name }}",
            lists=["clients"],
            type="marketing",
            sender="ACME",
            send_at=utcnow() + timedelta(days=2),
        )
    assert created.campaign.status == "scheduled"
    texts = sorted(m.text for m in _messages(engine))
    assert texts == [
        "Hello Al\nSTOP au 36173",
        "Hello Maximilien-Alexandre\nSTOP au 36173",
        "Hello Zoe\nSTOP au 36173",
    ]


def test_missing_field_is_reported_per_recipient(engine, config, account):
    _list(engine, "mixed", [["Tel", "First name"], ["0612345678", "Al"], ["0698765432", ""]])
    with session_scope(engine) as s:
        created = campaigns.create_campaign(
            s,
            config,
            "acme",
            "c",
            text="Hi {{ first_name }}!",
            lists=["mixed"],
            # Given by hand: no merge fields; the second is already on the list.
            numbers=["0611223344", "06 12 34 56 78", "01 23 45 67 89"],
            type="alert",
        )
    rejected = {r["input"]: r["reason"] for r in created.rejected}
    assert "merge field 'first_name' is missing for +33611223344" in rejected["0611223344"]
    assert "already a recipient (from list:mixed)" in rejected["06 12 34 56 78"]
    assert "landline" in rejected["01 23 45 67 89"]
    # An empty cell is a known, empty value: it renders empty rather than failing.
    assert sorted(m.text for m in _messages(engine)) == ["Hi !", "Hi Al!"]
    assert created.campaign.recipients == 2


def test_no_usable_recipient_creates_nothing(engine, config, account):
    _list(engine, "mixed", [["Tel", "First name"], ["0612345678", "Al"]])
    with session_scope(engine) as s, pytest.raises(InvalidInput, match="'code' is missing"):
        campaigns.create_campaign(
            s, config, "acme", "c", text="{{ code }}", lists=["mixed"], type="alert"
        )
    with session_scope(engine) as s:
        assert s.exec(select(Campaign)).all() == []


def test_personalised_submit_caps_parts_per_text(engine, config, account):
    short_config = make_config(
        str(engine.url.render_as_string(hide_password=False)),
        Path(config.hub.data_dir),
        sending={"max_parts": 1},
    )
    result = sending.submit(
        engine,
        short_config,
        sending.SubmitRequest(
            account="acme",
            recipients=["0612345678", "0698765432", "0611223344"],
            text="common text",
            texts={"+33612345678": "short", "+33698765432": "x" * 200},
        ),
    )
    statuses = [(r.e164, r.status) for r in result.recipients]
    assert statuses == [
        ("+33612345678", "queued"),
        ("+33698765432", "rejected"),
        ("+33611223344", "queued"),
    ]
    assert "2 SMS parts" in (result.recipients[1].reason or "")
    assert result.credits_charged == 2
    assert sorted(m.text for m in _messages(engine)) == ["common text", "short"]


# -- free test SMS ------------------------------------------------------------------------
def test_template_test_sms_is_free_and_only_to_the_own_number(engine, config, account):
    _clients(engine)
    with session_scope(engine) as s:
        mt.create_template(s, "acme", "promo", FOUR)
        with pytest.raises(InvalidInput, match="no own number"):
            mt.send_test(s, config, "acme", "promo", "0612345678")
        s.exec(select(Account).where(Account.name == "acme")).one().alert_sms = "+33612345678"
    before = _balance(engine)
    with session_scope(engine) as s:
        with pytest.raises(InvalidInput, match="own number"):
            mt.send_test(s, config, "acme", "promo", "0698765432")
        result = mt.send_test(s, config, "acme", "promo", "06 12 34 56 78")
    assert result.credits_charged == 0
    assert _balance(engine) == before
    [message] = _messages(engine)
    assert (message.source, message.credits) == ("test", 0)
    # The fields came from the number's entry in the list.
    assert message.text == "Al Roy (ACME), code A1 for +33612345678"
    for _ in range(mt.FREE_TESTS_PER_DAY - 1):
        with session_scope(engine) as s:
            mt.send_test(s, config, "acme", "promo", "0612345678", fields={"company": "X"})
    with session_scope(engine) as s, pytest.raises(ConflictError, match="limit"):
        mt.send_test(s, config, "acme", "promo", "0612345678")
    with session_scope(engine) as s:
        assert ledger_problems(s) == []


# -- campaigns ----------------------------------------------------------------------------
def test_scheduled_campaign_cancelled_with_refunds(engine, config, account):
    _clients(engine)
    before = _balance(engine)
    with session_scope(engine) as s:
        created = campaigns.create_campaign(
            s,
            config,
            "acme",
            "later",
            # A number given by hand has no merge fields: the default fills in.
            text=LONG.replace("{{ first_name }}", "{{ first_name|default('client') }}"),
            lists=["clients"],
            numbers=["0655555555"],
            type="alert",
            send_at=utcnow() + timedelta(hours=3),
        )
        campaign_id = created.campaign.id
    assert created.campaign.status == "scheduled"
    assert before - _balance(engine) == 5
    with session_scope(engine) as s:
        done = campaigns.cancel_campaign(s, campaign_id, "acme")
    assert done == {"id": campaign_id, "cancelled": 4, "credits_refunded": 5}
    assert _balance(engine) == before
    assert {m.status for m in _messages(engine, campaign_id)} == {"cancelled"}
    with session_scope(engine) as s:
        assert ledger_problems(s) == []
        report = campaigns.campaign_report(s, campaign_id)
    assert report["status"] == "cancelled"
    assert report["counts"]["cancelled"] == 4
    assert (report["credits_charged"], report["credits_refunded"], report["credits_net"]) == (
        5,
        5,
        0,
    )
    with session_scope(engine) as s, pytest.raises(ConflictError, match="already cancelled"):
        campaigns.cancel_campaign(s, campaign_id)


async def test_report_after_dispatch_clicks_and_export(hub, engine, config, account):
    _clients(engine)
    with session_scope(engine) as s:
        created = campaigns.create_campaign(
            s,
            config,
            "acme",
            "now",
            text="Hi {{ first_name|default('you') }}: https://hub.test/s/{{ custom1|default(0) }}",
            lists=["clients"],
            numbers=["0655555555"],
            type="alert",
        )
        campaign_id = created.campaign.id
        assert created.campaign.status == "sending"
    await hub.dispatcher.drain()
    # Sent: the campaign has started and can no longer be cancelled.
    with session_scope(engine) as s, pytest.raises(ConflictError, match="started sending"):
        campaigns.cancel_campaign(s, campaign_id)
    await hub.providers["simulator"].flush_reports()

    # Two clicks on Al's personal link, none on the others'.
    by_number = {m.recipient: m.id for m in _messages(engine, campaign_id)}
    with session_scope(engine) as s:
        link = ShortLink(account_id=1, code="a1", message_id=by_number["+33612345678"])
        s.add(link)
        s.flush()
        assert link.id is not None
        s.add_all([LinkClick(link_id=link.id), LinkClick(link_id=link.id)])

    with session_scope(engine) as s:
        report = campaigns.campaign_report(s, campaign_id, "acme")
    counts = {k: v for k, v in report["counts"].items() if v}
    assert counts == {"delivered": 2, "undelivered": 1, "failed": 1}
    assert report["status"] == "sent"
    assert (report["credits_charged"], report["credits_refunded"], report["credits_net"]) == (
        4,
        1,
        3,
    )
    assert (report["clicks"], report["recipients_who_clicked"]) == (2, 1)
    with session_scope(engine) as s:
        assert ledger_problems(s) == []
        listed = campaigns.list_campaigns(s, "acme")
        exported = campaigns.export_campaign(s, campaign_id)
    assert [(c["id"], c["status"]) for c in listed] == [(campaign_id, "sent")]

    rows = list(csv.DictReader(io.StringIO(exported.decode("utf-8-sig"))))
    assert list(rows[0]) == campaigns.EXPORT_COLUMNS
    table = {r["number"]: r for r in rows}
    assert table["+33612345678"]["status"] == "delivered"
    assert table["+33612345678"]["clicks"] == "2"
    assert table["+33612345678"]["text"] == "Hi Al: https://hub.test/s/A1"
    assert table["+33698765432"]["status"] == "undelivered"
    assert table["+33698765432"]["reason"] == "invalid_number"
    assert table["+33655555555"]["status"] == "failed"
    assert table["+33611223344"]["clicks"] == "0"


# -- command line -------------------------------------------------------------------------
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


def test_cli_templates_and_campaigns(smshub, tmp_path):
    assert smshub("accounts", "create", "acme", "--region", "FR")[0] == 0
    assert smshub("accounts", "credit", "acme", "100")[0] == 0
    path = tmp_path / "c.csv"
    path.write_text("Mobile;First name\n0612345678;Al\n0698765432;Maximilien-Alexandre\n")
    assert smshub("contacts", "import", str(path), "--list", "clients")[0] == 0

    code, out, _ = smshub("templates", "create", "soldes", "--text", "-", input=LONG + "\n")
    assert code == 0 and "first_name" in out
    code, out, _ = smshub("templates", "list", "--json")
    assert [t["name"] for t in json.loads(out)] == ["soldes"]
    code, out, _ = smshub("templates", "preview", "soldes", "--list", "clients", "--json")
    assert code == 0
    assert [r["segments"] for r in json.loads(out)["recipients"]] == [1, 2]
    code, out, _ = smshub("templates", "preview", "soldes", "--list", "clients")
    assert "2 recipient(s), 0 left out, 3 part(s), 3 credits" in out

    at = (utcnow() + timedelta(days=1)).isoformat()
    code, out, err = smshub(
        "campaigns", "create", "Soldes", "--list", "clients", "--template", "soldes",
        "--type", "alert", "--at", at, "--json",
    )  # fmt: skip
    assert code == 0, err
    created = json.loads(out)
    assert (created["status"], created["recipients"], created["credits"]) == ("scheduled", 2, 3)
    cid = str(created["id"])
    code, out, _ = smshub("campaigns", "list", "--json")
    assert json.loads(out)[0]["name"] == "Soldes"
    code, out, _ = smshub("campaigns", "show", cid, "--json")
    assert json.loads(out)["counts"]["queued"] == 2
    export = tmp_path / "campaign.csv"
    assert smshub("campaigns", "export", cid, "--output", str(export))[0] == 0
    assert len(export.read_bytes().decode("utf-8-sig").splitlines()) == 3
    code, out, _ = smshub("campaigns", "cancel", cid)
    assert code == 0 and "3 credits refunded" in out
    code, _, err = smshub("campaigns", "cancel", cid)
    assert code == 1 and "already cancelled" in err
    code, _, err = smshub(
        "campaigns", "create", "x", "--list", "clients", "--text", "{{ nope }}", "--type", "alert"
    )
    assert code == 1 and "'nope' is missing" in err
