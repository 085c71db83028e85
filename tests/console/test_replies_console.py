"""Console replies: conversations, the thread, answering from the page, and who may see them."""

from __future__ import annotations

import re
from typing import Any

from sqlmodel import col, select

from hub.sending import submit as sending
from hub.store.db import session_scope
from hub.store.models import InboundMessage, Message

NUMBER = "+33612345678"


async def _conversation(hub: Any, account: str, number: str, answer: str) -> InboundMessage:
    """ACCOUNT sends NUMBER an SMS and NUMBER answers it (through the simulator's MO path)."""
    sending.submit(
        hub.engine,
        hub.config,
        sending.SubmitRequest(account=account, recipients=[number], text="Votre RDV demain 9h"),
    )
    await hub.dispatcher.drain()
    assert await hub.providers["simulator"].receive(number, answer)
    with session_scope(hub.engine) as s:
        row = s.exec(select(InboundMessage).order_by(col(InboundMessage.id).desc())).first()
    assert row is not None and row.text == answer
    return row


def _replies(hub: Any) -> list[Message]:
    with session_scope(hub.engine) as s:
        return list(s.exec(select(Message).where(Message.source == "reply")).all())


def _nonce(html: str) -> str:
    found = re.search(r'name="nonce" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


async def test_list_and_thread_show_the_inbound_sms(hub, console):
    inbound = await _conversation(hub, "acme", NUMBER, "Oui je confirme <b>")
    assert inbound.account_id is not None
    alice = await console("alice")
    r = await alice.get("/console/replies")
    assert r.status_code == 200
    assert "+33 6 12 34 56 78" in r.text
    assert "Oui je confirme &lt;b&gt;" in r.text  # escaped
    assert 'href="/console/replies/33612345678?account=acme"' in r.text
    assert "waiting" in r.text

    r = await alice.get("/console/replies/33612345678")
    assert r.status_code == 200
    assert 'class="thread"' in r.text
    assert re.search(r'<li class="out">\s*<p class="text">Votre RDV demain 9h', r.text)
    assert re.search(r'<li class="in">\s*<p class="text">Oui je confirme &lt;b&gt;', r.text)
    # Oldest first: our SMS, then the answer.
    assert r.text.index('class="out"') < r.text.index('class="in"')
    assert 'data-preview="/console/preview"' in r.text
    assert 'name="account" value="acme"' in r.text


async def test_answering_from_the_page_queues_an_sms_like_a_mail_reply(hub, console):
    inbound = await _conversation(hub, "acme", NUMBER, "Je serai en retard")
    alice = await console("alice")
    page = await alice.get("/console/replies/33612345678")
    form = {"text": "Pas de souci, à tout à l'heure", "account": "acme", "nonce": _nonce(page.text)}
    r = await alice.post("/console/replies/33612345678", form)
    assert r.status_code == 303
    assert r.headers["location"] == "/console/replies/33612345678?account=acme"
    [sms] = _replies(hub)
    assert (sms.recipient, sms.text) == (NUMBER, "Pas de souci, à tout à l'heure")
    assert sms.idempotency_key.startswith(f"reply:{inbound.id}:console:")
    with session_scope(hub.engine) as s:
        from hub.store.models import Account

        assert s.get(Account, sms.account_id).name == "acme"
    shown = await alice.get(r.headers["location"])
    assert "Answer queued to +33 6 12 34 56 78" in shown.text
    assert "Pas de souci" in shown.text
    # The same form sent twice (double click) sends once.
    again = await alice.post("/console/replies/33612345678", form)
    assert len(_replies(hub)) == 1
    assert "already sent" in (await alice.get(again.headers["location"])).text
    listing = await alice.get("/console/replies")
    assert "answered" in listing.text


async def test_empty_answer_is_refused_with_a_reason(hub, console):
    await _conversation(hub, "acme", NUMBER, "Bonjour")
    alice = await console("alice")
    r = await alice.post("/console/replies/33612345678", {"text": "  ", "account": "acme"})
    assert r.status_code == 422
    assert "the answer is empty" in r.text
    assert _replies(hub) == []


async def test_number_that_wrote_to_two_accounts(hub, console):
    await _conversation(hub, "acme", NUMBER, "Pour acme")
    await _conversation(hub, "acme-lyon", NUMBER, "Pour Lyon")
    alice = await console("alice")
    # Without an account: the account of the last inbound SMS.
    r = await alice.get("/console/replies/33612345678")
    assert 'name="account" value="acme-lyon"' in r.text and "Pour Lyon" in r.text
    assert "Pour acme" not in r.text
    assert 'href="/console/replies/33612345678?account=acme"' in r.text
    r = await alice.get("/console/replies/33612345678?account=acme")
    assert "Pour acme" in r.text and "Pour Lyon" not in r.text
    r = await alice.post("/console/replies/33612345678", {"text": "Réponse", "account": "acme"})
    assert r.status_code == 303
    [sms] = _replies(hub)
    with session_scope(hub.engine) as s:
        from hub.store.models import Account

        assert s.get(Account, sms.account_id).name == "acme"
    listing = await alice.get("/console/replies")
    assert listing.text.count('href="/console/replies/33612345678?account=') == 2


async def test_conversation_list_pages(hub, console):
    hub.config.console.page_size = 5
    for n in range(7):
        await _conversation(hub, "acme", f"+336123456{n:02d}", f"Réponse {n}")
    alice = await console("alice")
    first = await alice.get("/console/replies")
    assert [f"Réponse {n}" in first.text for n in range(7)] == [False] * 2 + [True] * 5
    older = re.search(r'href="([^"]+)" rel="next"', first.text)
    assert older, first.text
    second = await alice.get(older.group(1).replace("&amp;", "&"))
    assert [f"Réponse {n}" in second.text for n in range(7)] == [True] * 2 + [False] * 5
    assert 'rel="next"' not in second.text
    # A number writing again moves up and is not shown twice.
    assert await hub.providers["simulator"].receive("+33612345600", "Encore moi")
    again = await alice.get(older.group(1).replace("&amp;", "&"))
    assert "Encore moi" not in again.text and "+33 6 12 34 56 00" not in again.text


async def test_sub_account_and_other_customer_cannot_see_or_answer(hub, console):
    await _conversation(hub, "acme", NUMBER, "Secret d'acme")
    for name in ("lyon", "eve"):
        client = await console(name)
        r = await client.get("/console/replies")
        assert r.status_code == 200 and "Secret d" not in r.text
        r = await client.get("/console/replies/33612345678")
        assert r.status_code == 404 and "Secret d" not in r.text
        r = await client.get("/console/replies/33612345678?account=acme")
        assert r.status_code == 404
        r = await client.get("/console/replies?account=acme")
        assert r.status_code == 404
        for form in ({"text": "pirate", "account": "acme"}, {"text": "pirate"}):
            r = await client.post("/console/replies/33612345678", form)
            assert r.status_code == 404
    assert _replies(hub) == []
    lyon = await console("lyon")
    # A forged form without the CSRF token is refused before anything else.
    r = await lyon.http.post("/console/replies/33612345678", data={"text": "x"})
    assert r.status_code == 403


async def test_bad_number_in_the_url(console):
    alice = await console("alice")
    for bad in ("0612345678", "33abc", "+33612345678"):
        r = await alice.get(f"/console/replies/{bad}")
        assert r.status_code == 404
