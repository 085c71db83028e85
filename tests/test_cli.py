"""The `smshub` command line: JSON outputs, one-line errors, nothing written half-way."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hub.cli import main as cli


@pytest.fixture
def smshub(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run `smshub ARGS` in-process against the test database; returns (code, out, err)."""
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


def test_numbers_check_json(smshub):
    code, out, _ = smshub(
        "numbers", "check", "06 12 34 56 78", "+41 79 123 45 67", "hello", "--json"
    )
    assert code == 0
    data = json.loads(out)
    assert [d["e164"] for d in data] == ["+33612345678", "+41791234567", None]
    assert data[1] == {
        "input": "+41 79 123 45 67",
        "e164": "+41791234567",
        "country": "CH",
        "type": "mobile",
        "valid": True,
        "reason": None,
    }
    assert set(data[2]) == {"input", "e164", "country", "type", "valid", "reason"}


def test_sms_count_reads_stdin(smshub):
    code, out, _ = smshub("sms", "count", "-", "--json", input="Hello {world} 😀\n")
    assert code == 0
    assert (
        json.loads(out).items()
        >= {
            "encoding": "UCS-2",
            "segments": 1,
            "characters": 15,
            "length": 16,
            "remaining": 54,
        }.items()
    )


def test_accounts_tokens_send_and_show(smshub):
    assert smshub("accounts", "create", "acme", "--region", "FR")[0] == 0
    assert smshub("accounts", "credit", "acme", "50")[0] == 0
    assert smshub("accounts", "create", "lyon", "--parent", "acme")[0] == 0
    code, out, _ = smshub("accounts", "transfer", "acme", "lyon", "10")
    assert code == 0 and "lyon has 10" in out
    code, out, _ = smshub("tokens", "create", "acme", "--json")
    assert json.loads(out)["token"].startswith("smh_")
    code, out, _ = smshub(
        "send", "--to", "0612345678", "--text", "hello", "--account", "acme", "--json"
    )
    assert code == 0, out
    mid = json.loads(out)["id"]
    code, out, _ = smshub("messages", "show", mid, "--json")
    assert json.loads(out)["status"] == "queued"
    code, out, _ = smshub("accounts", "reset", "lyon")
    assert "returned 10" in out
    code, out, _ = smshub("accounts", "show", "acme", "--json")
    assert json.loads(out)["balance"] == 49
    assert smshub("accounts", "check")[0] == 0


def test_idempotency_key_names_one_request_as_in_the_api(smshub):
    smshub("accounts", "create", "acme", "--region", "FR")
    smshub("accounts", "credit", "acme", "10")
    first = ("send", "--to", "0612345678", "--text", "Votre commande est prête")
    code, out, _ = smshub(*first, "--idempotency-key", "order-42")
    assert code == 0 and "queued" in out
    # The same request again sends nothing new.
    code, out, _ = smshub(*first, "--idempotency-key", "order-42")
    assert "already submitted with this idempotency key" in out
    for other in (
        ("send", "--to", "0612345678", "--text", "Votre commande est annulée"),
        ("send", "--to", "0612345678", "--to", "0698765432", "--text", "Votre commande est prête"),
        (*first, "--type", "marketing"),
    ):
        code, out, err = smshub(*other, "--idempotency-key", "order-42")
        assert code != 0
        assert "Idempotency-Key 'order-42' was used with a different request" in out + err
    code, out, _ = smshub("messages", "list", "--json")
    assert [(m["to"], m["text"]) for m in json.loads(out)] == [
        ("+33612345678", "Votre commande est prête")
    ]
    # A new key is a new request.
    code, out, _ = smshub(*first, "--idempotency-key", "order-43")
    assert code == 0 and "queued" in out


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--to", "0612345678", "--text", "hi", "--account", "ghost"], "no account named 'ghost'"),
        (["--to", "not-a-number", "--text", "hi", "--account", "acme"], "rejected"),
        (["--to", "0612345678", "--text", "  ", "--account", "acme"], "the text is empty"),
        (["--to", "0612345678", "--text", "x" * 1200, "--account", "acme"], "max_parts"),
        (
            ["--to", "0612345678", "--text", "hi", "--at", "tomorrow", "--account", "acme"],
            "ISO 8601",
        ),
    ],
)
def test_bad_send_is_one_line_nonzero_and_writes_nothing(smshub, args, words):
    smshub("accounts", "create", "acme")
    smshub("accounts", "credit", "acme", "5")
    code, out, err = smshub("send", *args)
    assert code != 0
    assert words in out + err
    if err:
        assert len(err.strip().splitlines()) == 1
    code, out, _ = smshub("messages", "list", "--json")
    assert json.loads(out) == []
    _, out, _ = smshub("accounts", "show", "acme", "--json")
    assert json.loads(out)["balance"] == 5


def test_unknown_config_key_stops_with_its_name(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[dispatcher]\nbatch = 10\n")
    proc = subprocess.run(
        [sys.executable, "-m", "hub", "--config", str(cfg), "accounts", "list"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"error: {cfg}: unknown key 'dispatcher.batch' (see config.example.toml for the options)"
    )


def test_mail_parse_dry_run_sends_nothing(smshub):
    sample = Path(__file__).parent / "data" / "mail" / "gmail_reply.eml"
    code, out, _ = smshub("mail", "parse", str(sample), "--json")
    assert code == 0
    data = json.loads(out)
    assert set(data) >= {"recipients", "text", "segments", "encoding", "rejected", "warnings"}
    assert data["text"] and "wrote:" not in data["text"]
    code, out, _ = smshub("messages", "list", "--json")
    assert json.loads(out) == []


def test_blacklist_add_import_list_remove(smshub, tmp_path):
    smshub("accounts", "create", "acme")
    code, out, _ = smshub("blacklist", "add", "acme", "06 12 34 56 78", "garbage")
    assert code == 0 and "1 added" in out and "'garbage' left out" in out
    csv_file = tmp_path / "optouts.csv"
    csv_file.write_bytes("numéro;nom\n0698765432;Durand\n+33612345678;Dupont\n".encode("cp1252"))
    code, out, _ = smshub("blacklist", "import", "acme", str(csv_file))
    assert "1 added, 1 already" in out and "line 1" in out
    code, out, _ = smshub("blacklist", "list", "--json")
    assert sorted(d["number"] for d in json.loads(out)) == ["+33612345678", "+33698765432"]
    code, _, err = smshub("blacklist", "remove", "acme", "0612345678", "--reason", " ")
    assert code != 0 and "consent" in err
    code, out, _ = smshub("blacklist", "remove", "acme", "0612345678", "--reason", "phoned us")
    assert code == 0


def test_reply_parse_prints_only_the_new_text(smshub):
    sample = Path(__file__).parent / "data" / "mail" / "outlook_desktop_reply.eml"
    code, out, _ = smshub("reply", "parse", str(sample), "--json")
    assert code == 0
    text = json.loads(out)["text"]
    assert text and "Original Message" not in text and "From:" not in text


def test_accounts_set_changes_only_what_is_given(smshub):
    smshub("accounts", "create", "acme")
    code, out, _ = smshub(
        "accounts",
        "set",
        "acme",
        "--reply-mailbox",
        "accueil@acme.example",
        "--autoreply",
        "Merci, nous vous rappelons.",
        "--route",
        "simulator",
    )
    assert code == 0, out
    code, _, err = smshub("accounts", "set", "acme", "--route", "carrier-pigeon")
    assert code != 0 and "carrier-pigeon" in err
    from hub.cli.common import get_engine
    from hub.store.db import session_scope
    from hub.store.models import Account

    with session_scope(get_engine()) as s:
        acc = s.get(Account, 1)
        assert (acc.reply_mailbox, acc.autoreply_enabled, acc.route) == (
            "accueil@acme.example",
            True,
            "simulator",
        )


def test_accounts_set_applies_the_consoles_rules(smshub):
    smshub("accounts", "create", "acme")
    for option, value, said in [
        ("--region", "XX", "two-letter country code"),
        ("--reply-mailbox", "accueil at acme", "not an e-mail address"),
        ("--autoreply-period", "0", "number of hours"),
        ("--sender", "MY-VERY-LONG-SENDER-NAME", "Default sender"),
    ]:
        code, _, err = smshub("accounts", "set", "acme", option, value)
        assert code != 0 and said in err, (option, err)
    code, out, _ = smshub("accounts", "set", "acme", "--autoreply", "Fermé le lundi.")
    assert code == 0 and "at most one reply per number every 24 hours" in out
    code, out, _ = smshub("accounts", "set", "acme", "--autoreply", "")
    assert code == 0 and "Auto-responder of acme is off." in out


def test_users_add_and_list(smshub):
    assert smshub("accounts", "create", "acme")[0] == 0
    code, out, _ = smshub(
        "users", "add", "acme", "reception", "--password-stdin", input="s3cret-pass-1\n"
    )
    assert code == 0 and "/console" in out
    code, out, err = smshub("users", "add", "acme", "shorty", "--password-stdin", input="short\n")
    assert code != 0 and "at least 10 characters" in err
    code, out, _ = smshub("users", "list", "--json")
    assert json.loads(out) == [{"username": "reception", "account": "acme", "disabled": False}]
