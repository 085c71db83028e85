"""Console settings pages: intake addresses and users, API tokens, webhooks, blacklist and
invalid numbers; each lists, adds and removes what it should, and only for its accounts."""

from __future__ import annotations

import re

import pytest
from sqlmodel import select

from hub.inbound.webhooks import add_endpoint
from hub.mail.intake.addresses import add_intake_address
from hub.sending.accounts import create_token, get_account
from hub.sending.optout import opt_out
from hub.store.db import session_scope
from hub.store.models import (
    ApiToken,
    BlacklistEntry,
    IntakeAddress,
    InvalidNumber,
    MailUser,
    WebhookDelivery,
    WebhookEndpoint,
)

from .conftest import PASSWORD


def _rows(engine, model, **where):
    with session_scope(engine) as s:
        query = select(model)
        for key, value in where.items():
            query = query.where(getattr(model, key) == value)
        return s.exec(query).all()


def _account_id(engine, name):
    with session_scope(engine) as s:
        return get_account(s, name).id


# -- intake addresses ----------------------------------------------------------------------
async def test_intake_page_lists_the_accounts_refused_mails(console, engine, hub):
    """Issue 17: staff see which of their mails sent nothing, and why."""
    from email.message import EmailMessage

    from hub.mail.intake.policy import IntakePolicy, MailEnvelope

    with session_scope(engine) as s:
        add_intake_address(s, "acme", "sms@acme.example", allowed_senders=["@acme.example"])
        add_intake_address(s, "other", "sms@other.example", allowed_senders=["@other.example"])
    policy = IntakePolicy(engine, hub.config)
    for to, sender, subject in (
        ("sms@acme.example", "mallory@elsewhere.example", "Pour acme"),
        ("sms@other.example", "mallory@elsewhere.example", "Pour other"),
    ):
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = sender, to, subject
        msg.set_content("Bonjour")
        outcome = policy.take(MailEnvelope(raw=msg.as_bytes(), mail_from=sender, rcpt_to=[to]))
        assert outcome.reply.startswith("550 5.7.1")

    alice = await console("alice")
    page = await alice.get("/console/intake")
    assert page.status_code == 200
    table = page.text.split('id="refused-mails"', 1)[1].split("</table>", 1)[0]
    assert "mallory@elsewhere.example" in table and "Pour acme" in table
    assert "SMTP" in table and "by their mail server" in table
    assert "is not allowed to send SMS through this address" in table
    # Another account's refusals are not shown.
    assert "Pour other" not in page.text


async def test_intake_addresses_add_edit_remove(console, engine):
    alice = await console("alice")
    r = await alice.get("/console/intake")
    assert r.status_code == 200
    assert "No intake address yet" in r.text
    assert 'aria-current="page">Intake addresses' in r.text

    r = await alice.post(
        "/console/intake/addresses",
        {
            "kind": "subject",
            "address": "SMS@Acme.example",
            "senders": "@acme.example\nboss@partner.example\n",
            "pin": "1234",
            "confirm": "1",
        },
    )
    assert r.status_code == 303 and r.headers["location"] == "/console/intake"
    r = await alice.post(
        "/console/intake/addresses", {"kind": "number_address", "address": "sms.acme.example"}
    )
    assert r.status_code == 303
    page = await alice.get("/console/intake")
    assert "Mail to *@sms.acme.example now sends SMS." in page.text
    assert "sms@acme.example" in page.text and "*@sms.acme.example" in page.text
    assert "number in the address" in page.text and "numbers in the subject" in page.text
    assert "PIN: set" in page.text and "PIN: none" in page.text
    assert "@acme.example, boss@partner.example" in page.text

    [subject] = _rows(engine, IntakeAddress, local_part="sms")
    assert subject.allowed_senders == "@acme.example\nboss@partner.example"
    [numbers] = _rows(engine, IntakeAddress, kind="number_address")
    assert not numbers.confirm and numbers.pin_hash is None

    r = await alice.post(
        f"/console/intake/addresses/{subject.id}/senders", {"senders": "ops@acme.example\n"}
    )
    assert r.status_code == 303
    [subject] = _rows(engine, IntakeAddress, local_part="sms")
    assert subject.allowed_senders == "ops@acme.example"

    bad = await alice.post(
        f"/console/intake/addresses/{subject.id}/senders", {"senders": "ok@acme.example\nnope"}
    )
    assert bad.status_code == 422
    assert "line 2" in bad.text and "nope" in bad.text
    assert _rows(engine, IntakeAddress, local_part="sms")[0].allowed_senders == "ops@acme.example"

    dup = await alice.post("/console/intake/addresses", {"address": "sms@acme.example"})
    assert dup.status_code == 409

    r = await alice.post(f"/console/intake/addresses/{subject.id}/remove")
    assert r.status_code == 303
    assert _rows(engine, IntakeAddress, local_part="sms") == []
    page = await alice.get("/console/intake")
    assert "sms@acme.example removed" in page.text


async def test_intake_domain_of_another_customer_cannot_be_claimed(console, engine, hub):
    with session_scope(engine) as s:
        add_intake_address(s, "acme", "sms@acme.example")
    eve = await console("eve")
    for form in (
        {"address": "other@acme.example"},
        {"kind": "number_address", "address": "acme.example"},
    ):
        r = await eve.post("/console/intake/addresses", form)
        assert r.status_code == 409, form
        assert "another customer" in r.text
    assert len(_rows(engine, IntakeAddress)) == 1
    # Within one's own accounts, a domain is shared freely.
    lyon = await console("alice")
    r = await lyon.post(
        "/console/intake/addresses", {"account": "acme-lyon", "address": "lyon@acme.example"}
    )
    assert r.status_code == 303
    assert r.headers["location"] == "/console/intake?account=acme-lyon"
    hub.config.smtp.reply_domain = "reply.hub.example"
    r = await eve.post("/console/intake/addresses", {"address": "x@reply.hub.example"})
    assert r.status_code == 422 and "reply domain" in r.text


# -- account users ----------------------------------------------------------------------------
async def test_users_add_disable_enable_and_password(console, engine):
    alice = await console("alice")
    short = await alice.post(
        "/console/intake/users", {"username": "bob", "password": "short", "password2": "short"}
    )
    assert short.status_code == 422 and "at least 10" in short.text
    differ = await alice.post(
        "/console/intake/users",
        {"username": "bob", "password": "0123456789", "password2": "0123456789x"},
    )
    assert differ.status_code == 422 and "differ" in differ.text
    r = await alice.post(
        "/console/intake/users",
        {"username": "bob", "password": "bob password 1", "password2": "bob password 1"},
    )
    assert r.status_code == 303
    page = await alice.get("/console/intake")
    assert "User bob created" in page.text and "bob" in page.text
    assert "alice" in page.text and "(you)" in page.text

    bob = await console("")
    assert (await bob.login("bob", "bob password 1")).status_code == 303

    [row] = _rows(engine, MailUser, username="bob")
    r = await alice.post(f"/console/intake/users/{row.id}/disable", {"disabled": "1"})
    assert r.status_code == 303
    assert (await bob.get("/console/intake")).status_code == 303  # session ended
    assert (await bob.login("bob", "bob password 1")).status_code == 401
    r = await alice.post(f"/console/intake/users/{row.id}/disable", {"disabled": "0"})
    assert r.status_code == 303
    # Enabled again, bob logs in anew: the session he had before stays ended.
    assert (await bob.get("/console/intake")).status_code == 303
    bob = await console("")
    assert (await bob.login("bob", "bob password 1")).status_code == 303

    r = await alice.post(
        f"/console/intake/users/{row.id}/password",
        {"password": "new bob password", "password2": "new bob password"},
    )
    assert r.status_code == 303
    assert (await bob.get("/console/intake")).status_code == 303
    assert (await bob.login("bob", "new bob password")).status_code == 303


async def test_user_cannot_disable_self_and_own_password_needs_the_current_one(console, engine):
    alice = await console("alice")
    [me] = _rows(engine, MailUser, username="alice")
    r = await alice.post(f"/console/intake/users/{me.id}/disable", {"disabled": "1"})
    assert r.status_code == 409 and "your own login" in r.text
    assert not _rows(engine, MailUser, username="alice")[0].disabled

    new = {"password": "alice new password", "password2": "alice new password"}
    wrong = await alice.post(
        f"/console/intake/users/{me.id}/password", {**new, "current": "not it at all"}
    )
    assert wrong.status_code == 422 and "current password is wrong" in wrong.text
    r = await alice.post(f"/console/intake/users/{me.id}/password", {**new, "current": PASSWORD})
    assert r.status_code == 303 and r.headers["location"] == "/console/login"
    again = await console("")
    assert (await again.login("alice", "alice new password")).status_code == 303


# -- API tokens -----------------------------------------------------------------------------
async def test_token_is_shown_once_and_works_right_away(console, engine, hub):
    alice = await console("alice")
    r = await alice.post("/console/tokens", {"name": "booking site"})
    assert r.status_code == 200
    assert "Copy it now" in r.text
    assert r.headers["cache-control"] == "no-store"
    token = re.search(r'id="new-token" readonly value="([^"]+)"', r.text).group(1)
    assert token and "set-cookie" not in r.headers

    api = await alice.http.get("/v1/account", headers={"Authorization": f"Bearer {token}"})
    assert api.status_code == 200 and api.json()["name"] == "acme"

    listing = await alice.get("/console/tokens")
    assert token not in listing.text
    assert "booking site" in listing.text and token[:10] in listing.text

    [record] = _rows(engine, ApiToken, name="booking site")
    r = await alice.post(f"/console/tokens/{record.id}/revoke")
    assert r.status_code == 303
    assert "revoked" in (await alice.get("/console/tokens")).text
    api = await alice.http.get("/v1/account", headers={"Authorization": f"Bearer {token}"})
    assert api.status_code == 401


async def test_token_for_a_sub_account(console, engine):
    alice = await console("alice")
    r = await alice.post("/console/tokens", {"name": "lyon app", "account": "acme-lyon"})
    assert r.status_code == 200
    [record] = _rows(engine, ApiToken, name="lyon app")
    assert record.account_id == _account_id(engine, "acme-lyon")
    page = await alice.get("/console/tokens?account=acme-lyon")
    assert "lyon app" in page.text and "API tokens of acme-lyon" in page.text
    assert "lyon app" not in (await alice.get("/console/tokens")).text


# -- webhooks -------------------------------------------------------------------------------
async def test_webhook_add_shows_secret_once_then_test_disable_remove(console, engine):
    alice = await console("alice")
    r = await alice.post(
        "/console/webhooks",
        {"url": "https://hooks.acme.example/sms", "events": ["message.failed", "optout.created"]},
    )
    assert r.status_code == 200
    secret = re.search(r'id="new-secret" readonly value="([^"]+)"', r.text).group(1)
    assert secret.startswith("whsec_") and "Copy it now" in r.text
    [endpoint] = _rows(engine, WebhookEndpoint)
    assert endpoint.events == "message.failed,optout.created"
    assert endpoint.account_id == _account_id(engine, "acme")
    # A customer's endpoint: the sender refuses hosts that resolve to non-public addresses.
    assert endpoint.private_ok is False

    page = await alice.get("/console/webhooks")
    assert "https://hooks.acme.example/sms" in page.text.replace("<wbr>", "")
    assert "message.failed, optout.created" in page.text
    assert secret not in page.text

    r = await alice.post(f"/console/webhooks/{endpoint.id}/test")
    assert r.status_code == 303
    [ping] = _rows(engine, WebhookDelivery, endpoint_id=endpoint.id)
    assert ping.event_type == "ping"
    page = await alice.get("/console/webhooks")
    assert "Test event queued" in page.text and "Last deliveries" in page.text

    r = await alice.post(f"/console/webhooks/{endpoint.id}/disable")
    assert r.status_code == 303 and not _rows(engine, WebhookEndpoint)[0].enabled
    r = await alice.post(f"/console/webhooks/{endpoint.id}/enable")
    assert r.status_code == 303 and _rows(engine, WebhookEndpoint)[0].enabled
    r = await alice.post(f"/console/webhooks/{endpoint.id}/remove")
    assert r.status_code == 303
    assert _rows(engine, WebhookEndpoint) == [] and _rows(engine, WebhookDelivery) == []


async def test_webhook_default_events_and_bad_input(console, engine):
    alice = await console("alice")
    r = await alice.post("/console/webhooks", {"url": "https://hooks.acme.example/all"})
    assert r.status_code == 200
    assert _rows(engine, WebhookEndpoint)[0].events == "*"
    for url, words in (
        ("ftp://hooks.acme.example/", "https://"),
        ("http://127.0.0.1:8080/admin", "private or local"),
        ("http://10.1.2.3/", "private or local"),
        ("http://[::1]/", "private or local"),
        ("http://localhost:9000/", "the hub itself"),
    ):
        r = await alice.post("/console/webhooks", {"url": url})
        assert r.status_code == 422, url
        assert words in r.text, (url, r.text)
    r = await alice.post(
        "/console/webhooks", {"url": "https://hooks.acme.example/x", "events": ["nope"]}
    )
    assert r.status_code == 422 and "unknown webhook event" in r.text
    assert len(_rows(engine, WebhookEndpoint)) == 1


async def test_webhook_whose_name_resolves_to_a_private_address_is_refused_at_once(
    console, engine, monkeypatch
):
    from hub.outbound import guard

    def resolve(host: str, port: int) -> list[str]:
        if host == "intranet.acme.example":
            return ["10.0.0.5"]
        raise OSError(-2, "Name or service not known")

    # The outbound guard's lookup (the names are made up).
    monkeypatch.setattr(guard, "system_resolver", resolve)
    alice = await console("alice")
    r = await alice.post("/console/webhooks", {"url": "https://intranet.acme.example/hook"})
    assert r.status_code == 422
    assert "intranet.acme.example resolves to 10.0.0.5, a private address" in r.text
    # A name that does not resolve yet is accepted: each delivery checks it again.
    r = await alice.post("/console/webhooks", {"url": "https://hooks.acme.example/later"})
    assert r.status_code == 200
    assert [e.url for e in _rows(engine, WebhookEndpoint)] == ["https://hooks.acme.example/later"]


# -- blacklist ------------------------------------------------------------------------------
async def test_blacklist_add_search_remove(console, engine):
    alice = await console("alice")
    assert "The blacklist is empty" in (await alice.get("/console/blacklist")).text
    r = await alice.post("/console/blacklist", {"number": "06 12 34 56 78", "reason": "asked"})
    assert r.status_code == 303
    await alice.post("/console/blacklist", {"number": "+44 7911 123456"})
    page = await alice.get("/console/blacklist")
    assert "+33 6 12 34 56 78" in page.text and "+44 7911 123456" in page.text
    assert "added by hand" in page.text and "asked" in page.text

    bad = await alice.post("/console/blacklist", {"number": "12ab"})
    assert bad.status_code == 422 and "not a phone number" in bad.text

    for query in ("0612345678", "+3361", "06 12", "0033612"):
        found = await alice.get("/console/blacklist", params={"q": query})
        assert "+33 6 12 34 56 78" in found.text, query
        assert "+44 7911 123456" not in found.text, query
    none = await alice.get("/console/blacklist", params={"q": "0699"})
    assert "No blacklisted number matches" in none.text
    assert (await alice.get("/console/blacklist", params={"q": "abc"})).status_code == 422

    no_reason = await alice.post("/console/blacklist/remove", {"number": "+33612345678"})
    assert no_reason.status_code == 422 and "consent reason" in no_reason.text
    r = await alice.post(
        "/console/blacklist/remove",
        {"number": "+33612345678", "reason": "customer called on 2026-01-15"},
    )
    assert r.status_code == 303
    numbers = [e.number for e in _rows(engine, BlacklistEntry)]
    assert numbers == ["+447911123456"]
    missing = await alice.post(
        "/console/blacklist/remove", {"number": "+33612345678", "reason": "again"}
    )
    assert missing.status_code == 404


async def test_blacklist_stop_entries_explain_consent(console, engine):
    with session_scope(engine) as s:
        opt_out(s, get_account(s, "acme").id, "+33612345678", "sms", "STOP")
    alice = await console("alice")
    page = await alice.get("/console/blacklist")
    assert "sent STOP" in page.text
    assert "asked to receive SMS again" in page.text


async def test_blacklist_import_reports_bad_lines(console, engine):
    alice = await console("alice")
    r = await alice.post(
        "/console/blacklist/import",
        {"numbers": "0612345678\nnot a number\n\n+33698765432\n0612345678", "reason": "old"},
    )
    assert r.status_code == 200
    assert "2 added, 1 already on the blacklist." in r.text
    assert "line 2" in r.text and "not a number" in r.text
    # The bad lines go back in the text area, to be fixed.
    assert re.search(r'name="numbers" rows="6" required>not a number</textarea>', r.text)
    assert sorted(e.number for e in _rows(engine, BlacklistEntry)) == [
        "+33612345678",
        "+33698765432",
    ]
    assert {e.source for e in _rows(engine, BlacklistEntry)} == {"import"}


async def test_blacklist_pages_by_number(console, engine, hub):
    hub.config.console.page_size = 5
    with session_scope(engine) as s:
        acme = get_account(s, "acme").id
        for i in range(12):
            opt_out(s, acme, f"+336123456{i:02d}", "manual")
    alice = await console("alice")
    seen: list[str] = []
    url = "/console/blacklist"
    pages = 0
    while url:
        page = await alice.get(url)
        seen += re.findall(r"\+33 6 12 34 56 \d\d", page.text)
        found = re.search(r'href="([^"]+)" rel="next"', page.text)
        url = found.group(1).replace("&amp;", "&") if found else ""
        pages += 1
    assert pages == 3
    assert seen == [f"+33 6 12 34 56 {i:02d}" for i in range(12)]
    last = await alice.get("/console/blacklist?after=%2B33612345609")
    prev = re.search(r'href="([^"]+)" rel="prev"', last.text).group(1).replace("&amp;", "&")
    back = await alice.get(prev)
    assert re.findall(r"\+33 6 12 34 56 \d\d", back.text) == [
        f"+33 6 12 34 56 {i:02d}" for i in range(5, 10)
    ]


# -- invalid numbers ------------------------------------------------------------------------
async def test_invalid_numbers_list_page_and_remove(console, engine, hub):
    hub.config.console.page_size = 5
    with session_scope(engine) as s:
        acme = get_account(s, "acme").id
        for i in range(7):
            s.add(InvalidNumber(account_id=acme, number=f"+336987654{i:02d}"))
    alice = await console("alice")
    page = await alice.get("/console/invalid")
    assert page.status_code == 200
    assert len(re.findall(r"\+33 6 98 76 54 \d\d", page.text)) == 5
    nxt = re.search(r'href="([^"]+)" rel="next"', page.text).group(1).replace("&amp;", "&")
    rest = await alice.get(nxt)
    assert re.findall(r"\+33 6 98 76 54 \d\d", rest.text) == [
        "+33 6 98 76 54 05",
        "+33 6 98 76 54 06",
    ]
    found = await alice.get("/console/invalid", params={"q": "06 98 76 54 03"})
    assert re.findall(r"\+33 6 98 76 54 \d\d", found.text) == ["+33 6 98 76 54 03"]

    row = _rows(engine, InvalidNumber, number="+33698765403")[0]
    r = await alice.post(f"/console/invalid/{row.id}/remove")
    assert r.status_code == 303
    assert _rows(engine, InvalidNumber, number="+33698765403") == []
    assert "removed from the invalid list" in (await alice.get("/console/invalid")).text


# -- access control -------------------------------------------------------------------------
@pytest.fixture
def acme_rows(engine, users):
    """One row of each kind on acme (the parent of lyon's account)."""
    with session_scope(engine) as s:
        acme = get_account(s, "acme")
        address = add_intake_address(
            s, "acme", "sms@acme.example", allowed_senders=["@acme.example"]
        )
        token = create_token(s, "acme", "acme app").record
        endpoint, _secret = add_endpoint(s, "acme", "https://hooks.acme.example/")
        opt_out(s, acme.id, "+33612345678", "manual")
        invalid = InvalidNumber(account_id=acme.id, number="+33698765432")
        s.add(invalid)
        s.flush()
        alice = s.exec(select(MailUser).where(MailUser.username == "alice")).one()
        return {
            "address": address.id,
            "token": token.id,
            "endpoint": endpoint.id,
            "invalid": invalid.id,
            "user": alice.id,
        }


PAGES = [
    "/console/intake",
    "/console/tokens",
    "/console/webhooks",
    "/console/blacklist",
    "/console/invalid",
]


@pytest.mark.parametrize("who", ["lyon", "eve"])
async def test_others_cannot_see_acme_settings(console, acme_rows, who):
    client = await console(who)
    for url in PAGES:
        own = await client.get(url)
        assert own.status_code == 200, url
        for text in (
            "sms@acme.example",
            "acme app",
            "hooks.acme.example",
            "+33 6 12 34 56 78",
            "+33 6 98 76 54 32",
            ">alice<",
        ):
            assert text not in own.text, (url, text)
        r = await client.get(url, params={"account": "acme"})
        assert r.status_code == 404, url
        assert "sms@acme.example" not in r.text


@pytest.mark.parametrize("who", ["lyon", "eve"])
async def test_others_cannot_change_acme_settings(console, engine, acme_rows, who):
    client = await console(who)
    ids = acme_rows
    attempts = [
        ("/console/intake/addresses", {"account": "acme", "address": "x@lyon.example"}),
        (f"/console/intake/addresses/{ids['address']}/senders", {"senders": "@evil.example"}),
        (f"/console/intake/addresses/{ids['address']}/remove", {}),
        (
            "/console/intake/users",
            {"account": "acme", "username": "mole", "password": "x" * 12, "password2": "x" * 12},
        ),
        (f"/console/intake/users/{ids['user']}/disable", {"disabled": "1"}),
        (
            f"/console/intake/users/{ids['user']}/password",
            {"password": "taken over!!", "password2": "taken over!!"},
        ),
        ("/console/tokens", {"account": "acme", "name": "mine now"}),
        (f"/console/tokens/{ids['token']}/revoke", {}),
        ("/console/webhooks", {"account": "acme", "url": "https://evil.example/"}),
        (f"/console/webhooks/{ids['endpoint']}/disable", {}),
        (f"/console/webhooks/{ids['endpoint']}/test", {}),
        (f"/console/webhooks/{ids['endpoint']}/remove", {}),
        ("/console/blacklist", {"account": "acme", "number": "0611111111"}),
        ("/console/blacklist/import", {"account": "acme", "numbers": "0611111111"}),
        (
            "/console/blacklist/remove",
            {"account": "acme", "number": "+33612345678", "reason": "me"},
        ),
        (f"/console/invalid/{ids['invalid']}/remove", {}),
    ]
    for url, form in attempts:
        r = await client.post(url, form)
        assert r.status_code == 404, (url, r.status_code, r.text[:300])
    acme = _account_id(engine, "acme")
    [address] = _rows(engine, IntakeAddress)
    assert address.allowed_senders == "@acme.example"
    assert [u.username for u in _rows(engine, MailUser, account_id=acme)] == ["alice"]
    assert not _rows(engine, MailUser, username="alice")[0].disabled
    assert [(t.name, t.revoked_at) for t in _rows(engine, ApiToken)] == [("acme app", None)]
    [endpoint] = _rows(engine, WebhookEndpoint)
    assert endpoint.enabled and _rows(engine, WebhookDelivery, event_type="ping") == []
    assert [e.number for e in _rows(engine, BlacklistEntry)] == ["+33612345678"]
    assert len(_rows(engine, InvalidNumber)) == 1
    alice = await console("alice")
    assert (await alice.get("/console/intake")).status_code == 200  # password unchanged


async def test_parent_sees_and_manages_the_sub_account(console, engine):
    alice = await console("alice")
    for url in PAGES:
        r = await alice.get(url, params={"account": "acme-lyon"})
        assert r.status_code == 200, url
        assert "of acme-lyon" in r.text
        assert "?account=acme-lyon" in r.text  # the sub-navigation keeps the account
    r = await alice.post(
        "/console/blacklist", {"account": "acme-lyon", "number": "0612345678", "reason": "x"}
    )
    assert r.headers["location"] == "/console/blacklist?account=acme-lyon"
    [entry] = _rows(engine, BlacklistEntry)
    assert entry.account_id == _account_id(engine, "acme-lyon")


def test_number_search_ranges():
    from hub.console.settings_common import number_range

    assert number_range("", "FR") is None
    exact = number_range("06 12 34 56 78", "FR")
    assert exact is not None and exact.exact and exact.low == "+33612345678"
    assert (number_range("06 12", "FR").low, number_range("06 12", "FR").high) == (
        "+33612",
        "+33613",
    )
    assert number_range("+3369", "FR").high == "+337"  # carried, not "+3369:"
    assert number_range("00449", "FR").high == "+45"
    assert number_range("+99", "FR").high is None
    assert number_range("4478", "FR").low == "+4478"
