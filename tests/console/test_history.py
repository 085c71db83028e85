"""Console history: filters, keyset pages, CSV, one message, cancel, and who sees what."""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import timedelta
from typing import Any

from sqlmodel import select

from hub.core.timeutil import utcnow
from hub.sending import submit as sending
from hub.store.db import session_scope
from hub.store.models import Account, Message, MessageEvent


def _send(hub: Any, account: str, numbers: list[str], text: str = "Bonjour", **kw: Any) -> Any:
    return sending.submit(
        hub.engine,
        hub.config,
        sending.SubmitRequest(account=account, recipients=numbers, text=text, **kw),
    )


def _balance(engine: Any, name: str) -> int:
    with session_scope(engine) as s:
        account = s.exec(select(Account).where(Account.name == name)).one()
        return account.balance


def _ids(html: str) -> list[str]:
    """Message ids linked from a history page, in page order."""
    return re.findall(r'href="/console/messages/([0-9a-f]{32})"', html)


def _link(html: str, rel: str) -> str | None:
    found = re.search(rf'<a href="([^"]+)" rel="{rel}">', html)
    return found.group(1).replace("&amp;", "&") if found else None


def _message(engine: Any, message_id: str) -> Message:
    with session_scope(engine) as s:
        message = s.get(Message, message_id)
        assert message is not None
        return message


async def test_history_shows_the_scope_newest_first(console, hub):
    acme = _send(hub, "acme", ["0611111111"], "Première")
    lyon = _send(hub, "acme-lyon", ["0622222222"], "Depuis Lyon")
    _send(hub, "other", ["0633333333"], "Chez other")

    alice = await console("alice")
    page = await alice.get("/console/messages")
    assert page.status_code == 200
    assert _ids(page.text) == [lyon.accepted[0].message_id, acme.accepted[0].message_id]
    # Alice has a sub-account: the account column is there; accents survive.
    assert '<th scope="col">Account</th>' in page.text and "acme-lyon" in page.text
    assert "Première" in page.text and "Chez other" not in page.text

    lyon_user = await console("lyon")
    page = await lyon_user.get("/console/messages")
    assert _ids(page.text) == [lyon.accepted[0].message_id]
    assert '<th scope="col">Account</th>' not in page.text

    eve = await console("eve")
    page = await eve.get("/console/messages")
    assert len(_ids(page.text)) == 1 and "Chez other" in page.text


async def test_filters(console, hub):
    in_the_past = _send(hub, "acme", ["0611111111"], "Ancien")
    with session_scope(hub.engine) as s:
        old = s.get(Message, in_the_past.accepted[0].message_id)
        assert old is not None
        old.created_at = utcnow() - timedelta(days=40)
        s.add(old)
    api = _send(hub, "acme", ["0611111111", "0622222222"], "Par l'API")
    mail = _send(hub, "acme", ["0633333333"], "Par mail", source="mail")
    lyon = _send(hub, "acme-lyon", ["0644444444"], "Lyon", source="calendar")
    later = _send(hub, "acme", ["0655555555"], "Plus tard", send_at=utcnow() + timedelta(days=2))
    alice = await console("alice")

    async def ids(query: str) -> set[str]:
        page = await alice.get(f"/console/messages?{query}")
        assert page.status_code == 200, page.text
        return set(_ids(page.text))

    def of(*results: Any) -> set[str]:
        return {r.message_id for result in results for r in result.accepted}

    assert await ids("source=mail") == of(mail)
    assert await ids("source=calendar") == of(lyon)
    # As typed: national, spaced, or E.164.
    assert await ids("number=06+11+11+11+11") == of(api, in_the_past) - {api.accepted[1].message_id}
    assert await ids("number=%2B33622222222") == {api.accepted[1].message_id}
    assert await ids("account=acme-lyon") == of(lyon)
    assert await ids(f"batch={mail.batch_id}") == of(mail)
    assert await ids("state=queued") == of(api, mail, lyon, later, in_the_past)
    assert await ids("state=delivered") == set()
    today = utcnow().date()
    assert await ids(f"since={today - timedelta(days=1)}") == of(api, mail, lyon, later)
    assert await ids(f"until={today - timedelta(days=30)}") == of(in_the_past)
    assert await ids(f"since={today}&until={today}&source=api&tz=UTC") == of(api, later)

    await hub.dispatcher.drain()
    await hub.providers["simulator"].flush_reports()
    assert await ids("state=delivered") == of(api, mail, lyon, in_the_past)
    page = await alice.get("/console/messages")
    # Counts per state for the current filter, each a link to that state.
    assert re.search(r'state=delivered">delivered: 5</a>', page.text), page.text
    assert "queued: 1" in page.text
    # The scheduled one says until when.
    assert "until <time" in page.text


async def test_campaign_filter(console, hub):
    from hub.campaigns.campaigns import create_campaign

    with session_scope(hub.engine) as s:
        created = create_campaign(
            s, hub.config, "acme", "Promo", text="Promo !", numbers=["0611111111"], type="alert"
        )
        campaign_id = created.campaign.id
    _send(hub, "acme", ["0622222222"])
    alice = await console("alice")
    page = await alice.get(f"/console/messages?campaign={campaign_id}")
    assert _ids(page.text) == [created.submit.accepted[0].message_id]


async def test_pages_walk_older_and_back_newer(console, hub):
    hub.config.console.page_size = 5
    # One batch: all twelve share their creation time, so the id breaks the ties.
    sent = _send(hub, "acme", [f"06111111{i:02d}" for i in range(12)])
    _send(hub, "acme-lyon", ["0699999999"])
    alice = await console("alice")

    seen: list[list[str]] = []
    url: str | None = "/console/messages"
    while url:
        page = await alice.get(url)
        seen.append(_ids(page.text))
        url = _link(page.text, "next")
    assert [len(p) for p in seen] == [5, 5, 3]
    flat = [i for p in seen for i in p]
    assert len(set(flat)) == 13
    assert set(flat) >= {r.message_id for r in sent.accepted}

    # Newest first; within the batch (one creation time), by id.
    assert flat[0] != sent.accepted[0].message_id
    assert flat[1:] == sorted(flat[1:], reverse=True)

    # From the last page, "Newer" gives the middle page again, then the first.
    page = await alice.get("/console/messages")
    middle = await alice.get(_link(page.text, "next") or "")
    last = await alice.get(_link(middle.text, "next") or "")
    assert _ids(last.text) == seen[2]
    assert _link(last.text, "next") is None
    back = await alice.get(_link(last.text, "prev") or "")
    assert _ids(back.text) == seen[1]
    first = await alice.get(_link(back.text, "prev") or "")
    assert _ids(first.text) == seen[0]
    assert _link(first.text, "prev") is None
    # Filters stay in the page links.
    page = await alice.get("/console/messages?account=acme&state=queued")
    assert "account=acme" in (_link(page.text, "next") or "")


async def test_csv_has_header_bom_accents_and_the_filters(console, hub):
    hub.config.console.page_size = 5
    _send(hub, "acme", [f"06111111{i:02d}" for i in range(7)], "Réunion à 9h, café offert")
    _send(hub, "acme-lyon", ["0622222222"], "Lyon", source="mail")
    _send(hub, "other", ["0633333333"], "Autre")
    alice = await console("alice")

    response = await alice.get("/console/messages.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    assert response.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert len(rows) == 8
    assert rows[0]["account"] == "acme-lyon" and rows[0]["source"] == "mail"
    assert {r["text"] for r in rows[1:]} == {"Réunion à 9h, café offert"}
    assert rows[1]["to"].startswith("+336") and rows[1]["parts"] == "1"

    only_mail = await alice.get("/console/messages.csv?source=mail")
    rows = list(csv.DictReader(io.StringIO(only_mail.content.decode("utf-8-sig"))))
    assert [r["to"] for r in rows] == ["+33622222222"]

    lyon = await console("lyon")
    rows = list(
        csv.DictReader(
            io.StringIO((await lyon.get("/console/messages.csv")).content.decode("utf-8-sig"))
        )
    )
    assert [r["account"] for r in rows] == ["acme-lyon"]
    refused = await lyon.get("/console/messages.csv?account=acme")
    assert refused.status_code == 404 and "+3361" not in refused.text


async def test_csv_with_nothing_to_export_is_a_header(console, hub):
    eve = await console("eve")
    response = await eve.get("/console/messages.csv")
    assert response.content.decode("utf-8-sig").splitlines() == [
        "created_at,account,to,sender,text,type,source,parts,credits,status,reason,sent_at,"
        "final_at,campaign_id,batch_id,message_id"
    ]


async def test_detail_shows_events_and_links(console, hub):
    result = _send(hub, "acme-lyon", ["0611111111"], "Votre colis arrive")
    message_id = result.accepted[0].message_id
    await hub.dispatcher.drain()
    await hub.providers["simulator"].flush_reports()
    alice = await console("alice")
    page = await alice.get(f"/console/messages/{message_id}")
    assert page.status_code == 200
    assert "Votre colis arrive" in page.text and "+33 6 11 11 11 11" in page.text
    assert f'href="/console/messages?batch={result.batch_id}"' in page.text
    assert "status-delivered" in page.text and "acme-lyon" in page.text
    with session_scope(hub.engine) as s:
        events = s.exec(select(MessageEvent).where(MessageEvent.message_id == message_id)).all()
    assert len(events) >= 2
    assert page.text.count("<time") >= len(events)
    # A sent message cannot be cancelled any more: no button.
    assert "/cancel" not in page.text


async def test_cancel_a_scheduled_message_refunds_it(console, hub, engine):
    result = _send(hub, "acme", ["0611111111"], "Demain", send_at=utcnow() + timedelta(days=1))
    message_id = result.accepted[0].message_id
    before = _balance(engine, "acme")
    alice = await console("alice")
    page = await alice.get(f"/console/messages/{message_id}")
    assert f'action="/console/messages/{message_id}/cancel"' in page.text
    assert "data-confirm=" in page.text

    response = await alice.post(f"/console/messages/{message_id}/cancel")
    assert response.status_code == 303
    assert response.headers["location"] == f"/console/messages/{message_id}"
    assert _message(engine, message_id).status == "cancelled"
    assert _balance(engine, "acme") == before + result.credits_charged
    page = await alice.get(f"/console/messages/{message_id}")
    assert "Message cancelled; 1 credits refunded." in page.text
    assert "status-cancelled" in page.text and "/cancel" not in page.text

    again = await alice.post(f"/console/messages/{message_id}/cancel")
    assert again.status_code == 303
    page = await alice.get(again.headers["location"])
    assert "Not cancelled" in page.text and "only queued or scheduled" in page.text
    assert _balance(engine, "acme") == before + result.credits_charged


async def test_cancel_needs_the_csrf_token(console, hub, engine):
    result = _send(hub, "acme", ["0611111111"], send_at=utcnow() + timedelta(days=1))
    message_id = result.accepted[0].message_id
    alice = await console("alice")
    response = await alice.http.post(f"/console/messages/{message_id}/cancel")
    assert response.status_code == 403
    assert _message(engine, message_id).status == "queued"


async def test_other_accounts_messages_are_out_of_reach(console, hub, engine):
    later = utcnow() + timedelta(days=1)
    acme = _send(hub, "acme", ["0611111111"], "Secret acme", send_at=later).accepted[0]
    other = _send(hub, "other", ["0622222222"], "Secret other", send_at=later).accepted[0]
    lyon_msg = _send(hub, "acme-lyon", ["0633333333"], "Lyon", send_at=later).accepted[0]
    lyon = await console("lyon")
    eve = await console("eve")
    alice = await console("alice")

    for client, hidden in ((lyon, [acme, other]), (eve, [acme, lyon_msg]), (alice, [other])):
        listing = await client.get("/console/messages")
        export = await client.get("/console/messages.csv")
        for m in hidden:
            assert m.message_id not in listing.text
            assert m.message_id not in export.text
            detail = await client.get(f"/console/messages/{m.message_id}")
            assert detail.status_code == 404
            assert "Secret" not in detail.text
            cancel = await client.post(f"/console/messages/{m.message_id}/cancel")
            assert cancel.status_code == 404
            assert _message(engine, m.message_id).status == "queued"

    # Naming an account outside the scope in a filter is refused, not ignored.
    for client, name in ((lyon, "acme"), (eve, "acme"), (lyon, "other"), (alice, "other")):
        page = await client.get(f"/console/messages?account={name}")
        assert page.status_code == 404
        assert f"no account '{name}' among yours" in html.unescape(page.text)
        assert "Secret" not in page.text
    # A campaign or batch of another account matches nothing.
    page = await lyon.get(f"/console/messages?batch={_batch(engine, acme.message_id)}")
    assert _ids(page.text) == []
    # The parent sees and cancels its sub-account's message.
    response = await alice.post(f"/console/messages/{lyon_msg.message_id}/cancel")
    assert response.status_code == 303
    assert _message(engine, lyon_msg.message_id).status == "cancelled"


def _batch(engine: Any, message_id: str) -> str:
    return _message(engine, message_id).batch_id


async def test_bad_filters_say_what_is_wrong(console, hub):
    _send(hub, "acme", ["0611111111"])
    alice = await console("alice")
    for query, words in [
        ("state=bogus", "state 'bogus' is not one of"),
        ("source=DROP%20TABLE", "is not one of: api, mail, calendar"),
        ("number=hello", "is not a phone number"),
        ("number=0612", "is not a phone number"),
        ("since=yesterday", "from date 'yesterday' is not a date"),
        ("until=2024-02-31", "to date '2024-02-31' is not a date"),
        ("since=2024-03-02&until=2024-03-01", "swap them"),
        ("campaign=abc", "must be a campaign number"),
        ("batch=%3Cscript%3E", "is not a batch id"),
        ("before=garbage", "page link is damaged"),
        ("after=123~%27%3B", "page link is damaged"),
        ("account=nobody", "no account 'nobody' among yours"),
    ]:
        page = await alice.get(f"/console/messages?{query}")
        assert page.status_code in {400, 404}, (query, page.status_code)
        assert words in html.unescape(page.text), (query, page.text)
        assert "<script>" not in page.text
        export = await alice.get(f"/console/messages.csv?{query}")
        if "page link" not in words:
            assert export.status_code in {404, 422}, (query, export.status_code)
            assert words in html.unescape(export.text)


async def test_unknown_message_is_a_404_page(console, hub):
    alice = await console("alice")
    for message_id in ("0" * 32, "x" * 200, "nope"):
        page = await alice.get(f"/console/messages/{message_id}")
        assert page.status_code == 404
        assert "no message" in page.text


async def test_history_needs_login(console):
    anon = await console("")
    for url in ("/console/messages", "/console/messages.csv", "/console/messages/" + "0" * 32):
        response = await anon.get(url)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/console/login?next=")


async def test_messages_of_the_scope_only_with_many_sub_accounts(console, hub, engine):
    """More sub-accounts than one UNION ALL takes: one IN (...) query, same answer."""
    from hub.console import history_query
    from hub.sending.accounts import create_account

    with session_scope(engine) as s:
        for i in range(4):
            create_account(s, f"acme-{i}", parent="acme", credit_mode="unlimited")
    sent = [_send(hub, f"acme-{i}", [f"061111111{i}"]).accepted[0].message_id for i in range(4)]
    alice = await console("alice")
    union = _ids((await alice.get("/console/messages")).text)
    old = history_query.MAX_BRANCHES
    history_query.MAX_BRANCHES = 2
    try:
        single = _ids((await alice.get("/console/messages")).text)
    finally:
        history_query.MAX_BRANCHES = old
    assert union == single
    assert set(union) == set(sent)
