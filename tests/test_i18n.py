"""French and English: the catalogs are complete, the reader gets the right language.

- every msgid of the French catalog has a French text that keeps its placeholders
  (``%(name)s``, ``{name}``, ``{{ name }}``) and its python-format flag, and the catalog holds
  every text marked in the code and templates (a fresh ``pybabel extract``);
- mails and SMS texts follow the account's language (French for a French account, English
  for an English one, the region's by default);
- the console follows the user's choice, else the browser's Accept-Language.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.pofile import read_po
from sqlalchemy import Engine
from sqlmodel import select

from hub.core import i18n
from hub.core.config import Config
from hub.core.templating import render
from hub.core.timeutil import utcnow
from hub.inbound import texts as sms_texts
from hub.inbound.alerts import sms_text
from hub.reminders.render import render_reminder
from hub.sending.accounts import create_account
from hub.store.db import session_scope
from hub.store.models import Account, OutgoingMail
from tests.conftest import MakeHub, make_config

REPO = Path(__file__).parent.parent
FRENCH = REPO / "hub" / "locale" / "fr" / "LC_MESSAGES" / "messages.po"

_PERCENT = re.compile(r"%\((\w+)\)[-#0 +]?\d*(?:\.\d+)?[diouxXeEfFgGcrs]")
_BRACES = re.compile(r"(?<!\{)\{(\w+)\}(?!\})")
_JINJA = re.compile(r"\{\{\s*(\w+)")


def placeholders(text: str) -> tuple[set[str], set[str], set[str]]:
    return set(_PERCENT.findall(text)), set(_BRACES.findall(text)), set(_JINJA.findall(text))


def _catalog(path: Path):  # type: ignore[no-untyped-def]
    with path.open("rb") as handle:
        return read_po(handle, locale="fr")


def test_every_message_has_a_french_text_with_the_same_placeholders() -> None:
    problems = []
    for message in _catalog(FRENCH):
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        texts = message.string if isinstance(message.string, tuple) else (message.string,)
        if message.fuzzy or not all(texts):
            problems.append(f"no French text: {ids[0]!r}")
            continue
        expected = placeholders(ids[-1])
        for text in texts:
            if placeholders(text) != expected:
                problems.append(f"placeholders differ: {ids[0]!r} -> {text!r}")
            # The flag Babel sets says the text is %-formatted: both sides must agree.
            if bool(_PERCENT.search(text)) != bool(_PERCENT.search(ids[-1])):
                problems.append(f"python-format differs: {ids[0]!r} -> {text!r}")
        # (Babel also flags Jinja's "{% if" as python-format: only named fields count.)
        if "python-format" in message.flags and expected[0]:
            for text in texts:
                try:
                    text % dict.fromkeys(expected[0], 1)
                except (KeyError, ValueError, TypeError) as exc:
                    problems.append(f"broken format {text!r}: {exc}")
    assert not problems, "\n".join(problems)


def test_the_catalog_holds_every_marked_text(tmp_path: Path) -> None:
    pot = tmp_path / "messages.pot"
    subprocess.run(
        [
            sys.executable, "-m", "babel.messages.frontend", "extract", "-F", "babel.cfg",
            "-o", str(pot), "--no-location", "--omit-header", "-k", "lazy_gettext", "-k", "_",
            ".",
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
    )  # fmt: skip
    marked = {m.id if isinstance(m.id, str) else m.id[0] for m in _catalog(pot) if m.id}
    known = {m.id if isinstance(m.id, str) else m.id[0] for m in _catalog(FRENCH) if m.id}
    missing = sorted(marked - known)
    assert not missing, f"marked but not in the French catalog (see hub/core/i18n.py): {missing}"


def test_a_broken_placeholder_is_found() -> None:
    assert placeholders("Il reste %(num)s crédits") != placeholders("%(num)s credits %(x)s")
    assert placeholders("SMS de {account}") != placeholders("SMS from {acount}")


# -- the reader's language ------------------------------------------------------------------
def test_accept_language_is_negotiated() -> None:
    assert i18n.negotiate("fr-FR,fr;q=0.9,en-US;q=0.8") == "fr"
    assert i18n.negotiate("de-DE, en;q=0.5, fr;q=0.4") == "en"
    assert i18n.negotiate("en;q=0.1, fr-CH;q=0.9") == "fr"
    assert i18n.negotiate("de, it") is None
    assert i18n.negotiate("fr;q=0, en") == "en"
    assert i18n.console_language(None, "de") == "en"
    # The user's choice wins over the browser.
    assert i18n.console_language("en", "fr-FR") == "en"
    assert i18n.console_language("fr", "en-GB") == "fr"


@pytest.mark.parametrize(
    ("region", "locale", "configured", "expected"),
    [
        ("FR", None, "", "fr"),
        ("BE", None, "", "fr"),
        ("CH", None, "", "fr"),
        ("GB", None, "", "en"),
        ("DE", None, "", "en"),
        ("GB", "fr", "", "fr"),
        ("FR", "en", "", "en"),
        ("FR", None, "en", "en"),
        ("GB", "fr", "en", "fr"),
    ],
)
def test_account_language(
    db_url: str, tmp_path: Path, region: str, locale: str | None, configured: str, expected: str
) -> None:
    config = make_config(db_url, tmp_path, hub={"locale": configured})
    account = Account(name="x", default_region=region, locale=locale)
    assert i18n.account_language(account, config) == expected


def test_dates_and_numbers_in_the_readers_way() -> None:
    when = utcnow().replace(year=2026, month=12, day=6, hour=19, minute=5, second=0)
    with i18n.use("fr"):
        assert i18n.format_number(1234.5) == "1\u202f234,5"
        assert "décembre" in i18n.format_datetime(when, "Europe/Paris", "long")
        assert "20:05" in i18n.format_datetime(when, "Europe/Paris", "short")
    with i18n.use("en"):
        assert i18n.format_number(1234.5) == "1,234.5"
        assert "December" in i18n.format_datetime(when, "Europe/Paris", "long")


# -- mails and SMS texts by the account's language -----------------------------------------
def _accounts(engine: Engine) -> None:
    with session_scope(engine) as session:
        create_account(session, "cabinet", region="FR")
        create_account(session, "surgery", region="GB")
        english = create_account(session, "clinique-en", region="FR")
        english.locale = "en"
        session.add(english)


@pytest.fixture
def french_hub_config(db_url: str, tmp_path: Path) -> Config:
    # The region decides (no [hub] locale), as on a real install.
    return make_config(db_url, tmp_path, hub={"locale": ""})


def test_sms_defaults_follow_the_account(engine: Engine, french_hub_config: Config) -> None:
    _accounts(engine)
    with session_scope(engine) as session:
        by_name = {a.name: a for a in session.exec(select(Account)).all()}
        cabinet, surgery, english = by_name["cabinet"], by_name["surgery"], by_name["clinique-en"]
        assert sms_texts.stop_confirmation(french_hub_config, cabinet) == (
            "Vous ne recevrez plus de SMS de cabinet. Répondez START pour vous réinscrire."
        )
        assert sms_texts.stop_confirmation(french_hub_config, surgery) == (
            "You will no longer receive SMS from surgery. Reply START to subscribe again."
        )
        assert sms_texts.stop_confirmation(french_hub_config, english).startswith("You will")
        assert sms_texts.start_confirmation(french_hub_config, cabinet) == (
            "Vous recevrez à nouveau les SMS de cabinet."
        )
        assert sms_texts.default_autoreply(french_hub_config, cabinet).startswith("Merci")
        assert sms_texts.default_autoreply(french_hub_config, surgery).startswith("Thank you")
    with i18n.use("fr"):
        assert sms_text(cabinet, 3, 10).startswith("smshub : il reste 3 crédits")
    with i18n.use("en"):
        assert sms_text(surgery, 1, 10).startswith("smshub: account surgery has 1 credit left")


def test_an_operators_own_stop_text_wins(db_url: str, tmp_path: Path) -> None:
    config = make_config(db_url, tmp_path, inbound={"stop_confirmation": "Bye from {account}"})
    assert sms_texts.stop_confirmation(config, Account(name="acme")) == "Bye from acme"


def test_reminder_default_text_in_the_calendars_language() -> None:
    start = utcnow().replace(year=2027, month=3, day=9, hour=8, minute=30, second=0)
    fields = {"name": "Jeanne", "title": "", "location": ""}
    french = render_reminder("", locale="fr_FR", tz="Europe/Paris", start=start, **fields)
    english = render_reminder("", locale="en_GB", tz="Europe/London", start=start, **fields)
    assert french == (
        "Bonjour Jeanne, rappel de votre RDV le mardi 9 mars à 09:30. "
        "Répondez OUI pour confirmer ou NON pour annuler."
    )
    assert english == (
        "Hello Jeanne, this is a reminder of your appointment on Tuesday, March 9 at 8:30 am. "
        "Reply YES to confirm or NO to cancel."
    )


def test_mails_in_french_and_english() -> None:
    context = {"account": "cabinet", "balance": 3, "threshold": 10, "parent": None}
    with i18n.use("fr"):
        french = render("email/balance_alert.txt.j2", **context)
    with i18n.use("en"):
        english = render("email/balance_alert.txt.j2", **context)
    assert "Les crédits SMS du compte « cabinet » s'épuisent : il reste 3 crédits" in french
    assert 'The SMS credits of account "cabinet" are running low: 3 credits left' in english
    received = utcnow().replace(year=2026, month=12, day=6, hour=9, minute=0, second=0)
    forwarded = {
        "sender": "+33 6 12 34 56 78",
        "text": "Merci",
        "received_at": received,
        "original": None,
        "can_reply": True,
        "account": "cabinet",
    }
    with i18n.use("fr"):
        body = render("email/inbound_sms.txt.j2", tz="Europe/Paris", **forwarded)
    assert "SMS de +33 6 12 34 56 78, reçu le 6 déc. 2026, 10:00:00." in body
    assert "Répondez à cet e-mail pour répondre par SMS" in body
    with i18n.use("en"):
        body = render("email/inbound_sms.txt.j2", tz="UTC", **forwarded)
    assert "SMS from +33 6 12 34 56 78, received Dec 6, 2026, 9:00:00\u202fAM UTC." in body


def test_balance_alert_mail_in_the_accounts_language(
    engine: Engine, french_hub_config: Config
) -> None:
    from hub.inbound.alerts import check_balance
    from hub.sending.credits import top_up

    _accounts(engine)
    with session_scope(engine) as session:
        for name in ("cabinet", "surgery"):
            top_up(session, name, 5)
            account = session.exec(select(Account).where(Account.name == name)).one()
            account.alert_threshold = 10
            account.alert_email = f"office@{name}.example"
            session.add(account)
    config = french_hub_config.model_copy(
        update={"mail_out": french_hub_config.mail_out.model_copy(update={"host": "127.0.0.1"})}
    )
    with session_scope(engine) as session:
        for name in ("cabinet", "surgery"):
            account = session.exec(select(Account).where(Account.name == name)).one()
            account.alert_armed = True
            check_balance(session, config, account)
    with session_scope(engine) as session:
        subjects = {m.recipient: m.subject for m in session.exec(select(OutgoingMail)).all()}
    assert subjects == {
        "office@cabinet.example": "Alerte de solde : il reste 5 crédits à cabinet",
        "office@surgery.example": "Balance alert: surgery has 5 credits left",
    }


def test_smtp_refusals_stay_ascii_in_french() -> None:
    from hub.mail.intake.smtp_text import smtp_line

    with i18n.use("fr"):
        line = smtp_line("550 5.1.1 " + i18n.gettext("no SMS intake address among the recipients"))
    assert line == "550 5.1.1 aucune adresse d'envoi de SMS parmi les destinataires"
    with i18n.use("fr"):
        line = smtp_line(
            "550 5.6.0 " + i18n.gettext("the mail has no text: write the SMS in the body")
        )
    assert line.isascii() and "ecrivez le SMS dans le corps" in line


async def test_smtp_refusals_in_the_hubs_language(
    engine: Engine, french_hub_config: Config, account: str, make_hub: MakeHub
) -> None:
    """A hub whose region is French refuses in French, as ASCII, on a real SMTP session."""
    import asyncio
    import smtplib

    from hub.mail.intake.addresses import add_intake_address
    from hub.mail.intake.policy import IntakePolicy
    from hub.mail.intake.smtp import start_smtp

    with session_scope(engine) as session:
        add_intake_address(session, "acme", "sms@hub.test", allowed_senders=["@clinic.example"])
    hub = await make_hub(config=french_hub_config)
    server = await start_smtp(IntakePolicy(engine, french_hub_config), french_hub_config, port=0)
    port = server.sockets[0].getsockname()[1]

    def talk() -> tuple[tuple[int, bytes], tuple[int, bytes]]:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.ehlo("client.example")
            client.mail("anne@clinic.example")
            return client.rcpt("someone@elsewhere.example"), client.rcpt("sms@hub.test")

    try:
        refused, accepted = await asyncio.to_thread(talk)
    finally:
        server.close()
        await server.wait_closed()
        await hub.stop()
        i18n.set_hub_language("en")
    assert refused[0] == 550
    assert refused[1].decode("ascii") == (
        "5.7.1 <someone@elsewhere.example> n'est pas une adresse d'envoi de SMS de ce hub "
        "(relais refuse)"
    )
    assert accepted[0] == 250
