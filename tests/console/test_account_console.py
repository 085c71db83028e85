"""Console account page: balance and ledger, sub-accounts and credit moves, settings, access."""

from __future__ import annotations

import html
import re
from typing import Any

from sqlmodel import select

from hub.sending.accounts import create_account
from hub.sending.credits import ledger_problems, top_up
from hub.store.db import session_scope
from hub.store.models import Account


def _accounts(engine: Any) -> dict[str, Account]:
    with session_scope(engine) as s:
        return {a.name: a for a in s.exec(select(Account)).all()}


def _balances(engine: Any) -> dict[str, int]:
    return {name: a.balance for name, a in _accounts(engine).items()}


def _consistent(engine: Any) -> None:
    with session_scope(engine) as s:
        assert ledger_problems(s) == []


def _ledger_notes(page: str) -> list[str]:
    section = page.split('id="ledger"', 1)[1].split("</section>", 1)[0]
    return re.findall(r'<td class="text">([^<]*)</td>', section)


def _link(page: str, rel: str) -> str | None:
    found = re.search(rf'<a href="([^"]+)" rel="{rel}">', page)
    return html.unescape(found.group(1)) if found else None


async def _flash(client: Any, response: Any) -> str:
    assert response.status_code == 303, response.text
    page = await client.get(response.headers["location"])
    found = re.search(r'<p class="flash" role="status">([^<]*)</p>', page.text)
    assert found, page.text
    return html.unescape(found.group(1))


# -- balance and ledger ------------------------------------------------------------------------


async def test_page_shows_balance_ledger_sub_accounts_and_nav(console):
    alice = await console("alice")
    r = await alice.get("/console/account")
    assert r.status_code == 200
    text = r.text
    assert '<p class="big">80 <span class="unit">credits available' in text
    assert "limited: its own balance" in text
    assert "Transfer to acme-lyon" in text and "Top-up" in text
    assert '<a href="/console/account?account=acme-lyon">acme-lyon</a>' in text
    # The sub-navigation shared with the settings pages.
    for href in ("/console/intake", "/console/tokens", "/console/webhooks", "/console/blacklist"):
        assert f'href="{href}"' in text
    assert 'href="/console/invalid"' in text
    assert 'aria-current="page">Balance and settings' in text
    assert 'data-confirm="Disable acme-lyon?' in text

    lyon_page = await alice.get("/console/account?account=acme-lyon")
    assert lyon_page.status_code == 200
    assert "Transfer from acme" in lyon_page.text
    assert 'href="/console/intake?account=acme-lyon"' in lyon_page.text


async def test_unlimited_sub_account_shows_who_pays(console, engine):
    alice = await console("alice")
    r = await alice.post(
        "/console/account/sub-accounts",
        {"account": "acme", "name": "acme-web", "mode": "unlimited"},
    )
    assert "Created acme-web (unlimited) under acme." in await _flash(alice, r)
    page = html.unescape((await alice.get("/console/account?account=acme-web")).text)
    assert "unlimited: spends its parent's credits" in page
    assert '<p class="big">80 ' in page
    assert '<a href="/console/account?account=acme">acme</a>' in page
    assert "set the alert on acme" in page


async def test_ledger_is_paginated_newest_first(console, engine, hub):
    hub.config.console.page_size = 5
    with session_scope(engine) as s:
        for i in range(1, 13):
            top_up(s, "other", 1, note=f"n{i}")
    eve = await console("eve")
    first = (await eve.get("/console/account")).text
    assert _ledger_notes(first) == ["n12", "n11", "n10", "n9", "n8"]
    assert _link(first, "prev") is None
    second = (await eve.get(_link(first, "next"))).text
    assert _ledger_notes(second) == ["n7", "n6", "n5", "n4", "n3"]
    third = (await eve.get(_link(second, "next"))).text
    # The initial top-up of the fixture has no note.
    assert _ledger_notes(third) == ["n2", "n1", ""]
    assert _link(third, "next") is None
    back = (await eve.get(_link(third, "prev"))).text
    assert _ledger_notes(back) == ["n7", "n6", "n5", "n4", "n3"]
    newest = (await eve.get(_link(back, "prev"))).text
    assert _ledger_notes(newest) == ["n12", "n11", "n10", "n9", "n8"]
    assert _link(newest, "prev") is None


# -- sub-accounts and credits --------------------------------------------------------------------


async def test_sub_accounts_are_paginated_by_name(console, engine, hub):
    hub.config.console.page_size = 5
    with session_scope(engine) as s:
        for i in range(6):
            create_account(s, f"acme-{i}", parent="acme")
    alice = await console("alice")
    first = (await alice.get("/console/account")).text
    names = re.findall(r'<td><a href="/console/account\?account=([^"]+)">', first)
    assert names == ["acme-0", "acme-1", "acme-2", "acme-3", "acme-4"]
    second = (await alice.get(_link(first, "next"))).text
    names = re.findall(r'<td><a href="/console/account\?account=([^"]+)">', second)
    assert names == ["acme-5", "acme-lyon"]
    assert _link(second, "next") is None
    assert "← First sub-accounts" in second


async def test_create_sub_account_with_initial_credits(console, engine):
    alice = await console("alice")
    r = await alice.post(
        "/console/account/sub-accounts",
        {"account": "acme", "name": "acme-paris", "mode": "limited", "initial": "15"},
    )
    flash = await _flash(alice, r)
    assert flash == "Created acme-paris (limited) under acme. Moved 15 credits to it from acme."
    accounts = _accounts(engine)
    assert accounts["acme-paris"].balance == 15
    assert accounts["acme-paris"].parent_id == accounts["acme"].id
    assert accounts["acme"].balance == 65
    _consistent(engine)


async def test_create_sub_account_refuses_bad_values_and_keeps_nothing(console, engine):
    alice = await console("alice")
    cases = [
        ({"name": "Bad Name"}, 422, "Name: account name"),
        ({"name": "acme-lyon"}, 409, "already exists"),
        ({"name": "web", "mode": "unlimited", "initial": "5"}, 422, "Initial credits:"),
        ({"name": "web", "initial": "-3"}, 422, "Initial credits:"),
        ({"name": "web", "mode": "both"}, 422, "Credit mode:"),
        ({"name": "web", "initial": "500"}, 402, "has 80 credits"),
    ]
    for form, status, message in cases:
        r = await alice.post(
            "/console/account/sub-accounts", {"account": "acme", "mode": "limited", **form}
        )
        assert r.status_code == status, (form, r.text)
        assert message in html.unescape(r.text), form
        # The form is shown again, open, with what was typed.
        assert "<details open>" in r.text
    assert set(_accounts(engine)) == {"acme", "acme-lyon", "other"}
    assert _balances(engine)["acme"] == 80


async def test_transfer_down_and_back_keeps_the_ledger_equal_to_the_balance(console, engine):
    alice = await console("alice")
    r = await alice.post(
        "/console/account/transfer",
        {"account": "acme", "sub": "acme-lyon", "direction": "down", "amount": "30"},
    )
    assert (
        await _flash(alice, r) == "Moved 30 credits from acme to acme-lyon; acme-lyon now has 50."
    )
    r = await alice.post(
        "/console/account/transfer",
        {"account": "acme", "sub": "acme-lyon", "direction": "up", "amount": "45"},
    )
    assert await _flash(alice, r) == "Moved 45 credits from acme-lyon to acme; acme now has 95."
    balances = _balances(engine)
    assert (balances["acme"], balances["acme-lyon"]) == (95, 5)
    _consistent(engine)
    page = (await alice.get("/console/account")).text
    assert "Transfer from acme-lyon" in page and "+45" in page


async def test_transfer_refuses_bad_amounts(console, engine):
    alice = await console("alice")
    for amount, status, message in [
        ("abc", 422, "Amount: 'abc' is not a positive whole number"),
        ("0", 422, "Amount: "),
        ("81", 402, "has 80 credits"),
    ]:
        r = await alice.post(
            "/console/account/transfer",
            {"account": "acme", "sub": "acme-lyon", "direction": "down", "amount": amount},
        )
        assert r.status_code == status
        assert message in html.unescape(r.text)
        assert f'value="{amount}"' in r.text
    assert _balances(engine)["acme"] == 80
    _consistent(engine)


async def test_reset_returns_the_balance_and_disable_enable(console, engine):
    alice = await console("alice")
    r = await alice.post("/console/account/reset", {"account": "acme", "sub": "acme-lyon"})
    assert await _flash(alice, r) == "Reset acme-lyon: 20 credits returned to acme."
    balances = _balances(engine)
    assert (balances["acme"], balances["acme-lyon"]) == (100, 0)
    _consistent(engine)

    r = await alice.post("/console/account/disable", {"account": "acme", "sub": "acme-lyon"})
    assert "Disabled acme-lyon" in await _flash(alice, r)
    assert _accounts(engine)["acme-lyon"].disabled
    lyon = await console("")
    assert (await lyon.login("lyon")).status_code != 303  # a disabled account cannot log in
    page = (await alice.get("/console/account")).text
    assert ">Enable</button>" in page
    r = await alice.post(
        "/console/account/disable", {"account": "acme", "sub": "acme-lyon", "enable": "1"}
    )
    assert await _flash(alice, r) == "Enabled acme-lyon again."
    assert not _accounts(engine)["acme-lyon"].disabled


async def test_own_account_cannot_be_reset_or_disabled(console, engine):
    alice = await console("alice")
    for url in ("/console/account/reset", "/console/account/disable"):
        r = await alice.post(url, {"account": "acme", "sub": "acme"})
        assert r.status_code == 403
        assert "your own account" in r.text
    assert not _accounts(engine)["acme"].disabled
    assert _balances(engine)["acme"] == 80


# -- settings ------------------------------------------------------------------------------------


async def test_balance_alert_form(console, engine):
    alice = await console("alice")
    r = await alice.post(
        "/console/account/alert",
        {
            "account": "acme",
            "threshold": "30",
            "email": "boss@acme.example",
            "sms": "06 12 34 56 78",
        },
    )
    assert await _flash(alice, r) == "Balance alert of acme: below 30 credits."
    acme = _accounts(engine)["acme"]
    assert (acme.alert_threshold, acme.alert_email, acme.alert_sms) == (
        30,
        "boss@acme.example",
        "+33612345678",
    )
    page = (await alice.get("/console/account")).text
    assert 'value="30"' in page and 'value="boss@acme.example"' in page

    for form, field in [
        ({"threshold": "-1", "email": "a@b.example"}, "Threshold:"),
        ({"threshold": "ten", "email": "a@b.example"}, "Threshold:"),
        ({"threshold": "10", "email": "not an address"}, "Alert e-mail:"),
        ({"threshold": "10", "sms": "12"}, "Alert SMS number:"),
        ({"threshold": "10"}, "would tell nobody"),
    ]:
        r = await alice.post("/console/account/alert", {"account": "acme", **form})
        assert r.status_code == 422, form
        assert field in html.unescape(r.text), form
        assert 'aria-invalid="true"' in r.text
    assert _accounts(engine)["acme"].alert_threshold == 30

    r = await alice.post("/console/account/alert", {"account": "acme", "threshold": ""})
    assert await _flash(alice, r) == "Balance alert of acme turned off."
    assert _accounts(engine)["acme"].alert_threshold is None


async def test_alert_above_the_balance_fires_at_once(console, engine):
    alice = await console("alice")
    r = await alice.post(
        "/console/account/alert",
        {"account": "acme", "threshold": "90", "email": "boss@acme.example"},
    )
    flash = await _flash(alice, r)
    assert "The balance (80) is already below it: alert sent." in flash
    assert not _accounts(engine)["acme"].alert_armed
    # Saving the same threshold again does not alert a second time.
    r = await alice.post(
        "/console/account/alert",
        {"account": "acme", "threshold": "90", "email": "other@acme.example"},
    )
    assert "already below" not in await _flash(alice, r)
    assert not _accounts(engine)["acme"].alert_armed


async def test_default_sender_is_checked_like_a_send(console, engine):
    alice = await console("alice")
    r = await alice.post("/console/account/sender", {"account": "acme", "sender": "ACME"})
    flash = await _flash(alice, r)
    assert flash.startswith("Default sender of acme: ACME.")
    assert "cannot reply" in flash
    assert _accounts(engine)["acme"].default_sender == "ACME"
    # France (acme's region) refuses spaces in names; over 11 characters is refused anywhere.
    for sender in ("ACME SHOP", "ACME-SHOP-LYON", "é"):
        r = await alice.post("/console/account/sender", {"account": "acme", "sender": sender})
        assert r.status_code == 422, sender
        assert "Default sender:" in html.unescape(r.text)
    assert _accounts(engine)["acme"].default_sender == "ACME"
    r = await alice.post("/console/account/sender", {"account": "acme", "sender": ""})
    assert "provider's default sender" in await _flash(alice, r)
    assert _accounts(engine)["acme"].default_sender is None


async def test_default_region_form(console, engine):
    alice = await console("alice")
    r = await alice.post("/console/account/region", {"account": "acme-lyon", "region": "be"})
    assert await _flash(alice, r) == "acme-lyon reads national numbers as BE."
    assert _accounts(engine)["acme-lyon"].default_region == "BE"
    for bad in ("XX", "FRA", "1"):
        r = await alice.post("/console/account/region", {"account": "acme-lyon", "region": bad})
        assert r.status_code == 422
        assert "Default region:" in html.unescape(r.text)
    r = await alice.post("/console/account/region", {"account": "acme-lyon", "region": ""})
    assert "(the hub's default)" in await _flash(alice, r)
    assert _accounts(engine)["acme-lyon"].default_region is None


async def test_reply_mailbox_form(console, engine):
    alice = await console("alice")
    r = await alice.post(
        "/console/account/reply-mailbox", {"account": "acme", "mailbox": "desk@acme.example"}
    )
    assert await _flash(alice, r) == "Replies to acme go to desk@acme.example."
    assert _accounts(engine)["acme"].reply_mailbox == "desk@acme.example"
    for bad in ("desk", "desk @acme.example", "@acme.example"):
        r = await alice.post("/console/account/reply-mailbox", {"account": "acme", "mailbox": bad})
        assert r.status_code == 422
        assert "Reply mailbox:" in html.unescape(r.text)
    assert _accounts(engine)["acme"].reply_mailbox == "desk@acme.example"


async def test_autoreply_form(console, engine):
    alice = await console("alice")
    page = (await alice.get("/console/account")).text
    assert 'data-preview="/console/preview"' in page  # parts and cost shown while typing
    r = await alice.post(
        "/console/account/autoreply",
        {"account": "acme", "enabled": "on", "text": "Closed until Monday.", "period": "12"},
    )
    assert await _flash(alice, r) == (
        "Auto-responder of acme is on: at most one reply per number every 12 hours."
    )
    acme = _accounts(engine)["acme"]
    assert (acme.autoreply_enabled, acme.autoreply_text, acme.autoreply_period_hours) == (
        True,
        "Closed until Monday.",
        12.0,
    )
    for form, field in [
        ({"enabled": "on", "text": "  ", "period": "24"}, "Auto-reply text:"),
        ({"enabled": "on", "text": "x" * 2000, "period": "24"}, "Auto-reply text:"),
        ({"enabled": "on", "text": "Hi", "period": "0"}, "Period:"),
        ({"enabled": "on", "text": "Hi", "period": "soon"}, "Period:"),
    ]:
        r = await alice.post("/console/account/autoreply", {"account": "acme", **form})
        assert r.status_code == 422, form
        assert field in html.unescape(r.text), form
    assert _accounts(engine)["acme"].autoreply_text == "Closed until Monday."

    # Turned off, the text is kept for next time.
    r = await alice.post(
        "/console/account/autoreply",
        {"account": "acme", "text": "Closed until Monday.", "period": "12"},
    )
    assert await _flash(alice, r) == "Auto-responder of acme is off."
    acme = _accounts(engine)["acme"]
    assert not acme.autoreply_enabled and acme.autoreply_text == "Closed until Monday."


# -- access control ------------------------------------------------------------------------------


async def test_sub_account_user_sees_only_its_own_account(console):
    lyon = await console("lyon")
    page = (await lyon.get("/console/account")).text
    assert "<h1>Account acme-lyon</h1>" in page
    assert 'value="acme"' not in page  # neither in a select nor in a form
    assert 'href="/console/account?account=acme"' not in page
    for ref in ("acme", "other", "1"):
        r = await lyon.get(f"/console/account?account={ref}")
        assert r.status_code == 404, ref


async def test_eve_sees_only_other(console):
    eve = await console("eve")
    page = (await eve.get("/console/account")).text
    assert "<h1>Account other</h1>" in page
    assert "acme" not in page
    for ref in ("acme", "acme-lyon"):
        assert (await eve.get(f"/console/account?account={ref}")).status_code == 404


async def test_sub_account_user_cannot_take_credits_from_above(console, engine):
    lyon = await console("lyon")
    before = _balances(engine)
    attempts = [
        ("/console/account/transfer", {"account": "acme", "sub": "acme-lyon", "direction": "down"}),
        ("/console/account/transfer", {"account": "acme-lyon", "sub": "acme", "direction": "up"}),
        ("/console/account/transfer", {"account": "acme-lyon", "sub": "other", "direction": "up"}),
        (
            "/console/account/transfer",
            {"account": "other", "sub": "acme-lyon", "direction": "down"},
        ),
    ]
    for url, form in attempts:
        r = await lyon.post(url, {**form, "amount": "10"})
        assert r.status_code == 404, form
    # Its own account is the top of its world: no reset (the credits would go to acme), no
    # disabling itself, no sub-account of acme.
    r = await lyon.post("/console/account/reset", {"account": "acme-lyon", "sub": "acme-lyon"})
    assert r.status_code == 403
    r = await lyon.post("/console/account/disable", {"account": "acme-lyon", "sub": "acme-lyon"})
    assert r.status_code == 403
    r = await lyon.post("/console/account/reset", {"account": "acme-lyon", "sub": "acme"})
    assert r.status_code == 404
    r = await lyon.post(
        "/console/account/sub-accounts",
        {"account": "acme", "name": "acme-nice", "mode": "limited", "initial": "5"},
    )
    assert r.status_code == 404
    # More than it has cannot be given to a new sub-account either.
    r = await lyon.post(
        "/console/account/sub-accounts",
        {"account": "acme-lyon", "name": "lyon-2", "mode": "limited", "initial": "21"},
    )
    assert r.status_code == 402
    assert _balances(engine) == before
    assert "acme-nice" not in _accounts(engine) and "lyon-2" not in _accounts(engine)
    _consistent(engine)


async def test_sub_account_user_manages_its_own_sub_accounts(console, engine):
    lyon = await console("lyon")
    r = await lyon.post(
        "/console/account/sub-accounts",
        {"account": "acme-lyon", "name": "lyon-desk", "mode": "limited", "initial": "8"},
    )
    assert "Moved 8 credits to it from acme-lyon." in await _flash(lyon, r)
    r = await lyon.post(
        "/console/account/transfer",
        {"account": "acme-lyon", "sub": "lyon-desk", "direction": "up", "amount": "3"},
    )
    assert "acme-lyon now has 15" in await _flash(lyon, r)
    r = await lyon.post("/console/account/reset", {"account": "acme-lyon", "sub": "lyon-desk"})
    assert await _flash(lyon, r) == "Reset lyon-desk: 5 credits returned to acme-lyon."
    balances = _balances(engine)
    assert (balances["acme"], balances["acme-lyon"], balances["lyon-desk"]) == (80, 20, 0)
    _consistent(engine)


async def test_sub_account_user_cannot_change_other_accounts_settings(console, engine):
    lyon = await console("lyon")
    eve = await console("eve")
    posts = [
        ("/console/account/alert", {"threshold": "5", "email": "x@evil.example"}),
        ("/console/account/sender", {"sender": "EVIL"}),
        ("/console/account/region", {"region": "BE"}),
        ("/console/account/reply-mailbox", {"mailbox": "x@evil.example"}),
        ("/console/account/autoreply", {"enabled": "on", "text": "Hacked", "period": "1"}),
        ("/console/account/disable", {"sub": "acme-lyon"}),
        ("/console/account/reset", {"sub": "acme-lyon"}),
    ]
    for client, victims in ((lyon, ("acme", "other")), (eve, ("acme", "acme-lyon"))):
        for victim in victims:
            for url, form in posts:
                r = await client.post(url, {"account": victim, **form})
                assert r.status_code == 404, (url, victim)
    for name, acc in _accounts(engine).items():
        assert acc.alert_threshold is None, name
        assert acc.default_sender is None and acc.reply_mailbox == "", name
        assert not acc.autoreply_enabled and not acc.disabled, name
    assert _balances(engine) == {"acme": 80, "acme-lyon": 20, "other": 10}


async def test_account_forms_need_the_csrf_token(console, engine):
    alice = await console("alice")
    r = await alice.http.post(
        "/console/account/transfer",
        data={"account": "acme", "sub": "acme-lyon", "direction": "down", "amount": "10"},
    )
    assert r.status_code == 403
    assert _balances(engine)["acme"] == 80
