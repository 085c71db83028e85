"""The console's language: the browser's Accept-Language, the user's own choice (kept on the
user, so it follows them to every browser), and the account's language of mails and SMS."""

from __future__ import annotations

import html
import re
from typing import Any

from sqlmodel import select

from hub.store.db import session_scope
from hub.store.models import Account, MailUser


def _lang(page: str) -> str:
    found = re.search(r'<html lang="(\w+)">', page)
    assert found, page[:200]
    return found.group(1)


async def test_login_page_follows_the_browser(console: Any) -> None:
    client = await console("")
    french = await client.get("/console/login", headers={"Accept-Language": "fr-CH, en;q=0.5"})
    assert _lang(french.text) == "fr"
    assert "Connexion à smshub" in french.text
    german = await client.get("/console/login", headers={"Accept-Language": "de-DE"})
    assert _lang(german.text) == "en"
    assert "Log in to smshub" in german.text
    plain = await client.get("/console/login")
    assert _lang(plain.text) == "en"


async def test_wrong_password_is_told_in_the_browsers_language(console: Any) -> None:
    client = await console("")
    form = await client.get("/console/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token
    refused = await client.http.post(
        "/console/login",
        data={"username": "alice", "password": "wrong password", "csrf_token": token.group(1)},
        headers={"Accept-Language": "fr"},
    )
    assert refused.status_code == 401
    assert "Nom d'utilisateur ou mot de passe incorrect." in html.unescape(refused.text)


async def test_pages_and_messages_follow_the_browser(console: Any) -> None:
    alice = await console("alice")
    home = await alice.get("/console/", headers={"Accept-Language": "fr-FR,fr;q=0.9"})
    assert "Envoyer un SMS" in home.text and "Derniers messages" in home.text
    sent = await alice.post(
        "/console/send",
        {"to": "06 12 34 56 78", "text": "Bonjour", "type": "alert"},
        headers={"Accept-Language": "fr-FR"},
    )
    assert sent.status_code == 303
    history = await alice.get(sent.headers["location"], headers={"Accept-Language": "fr-FR"})
    assert "1 SMS en file (1 crédit)." in history.text
    assert "Historique des messages" in history.text
    assert 'status-queued">en attente<' in history.text


async def test_the_users_choice_wins_over_the_browser(console: Any, engine: Any) -> None:
    alice = await console("alice")
    chosen = await alice.post(
        "/console/language",
        {"language": "fr", "next": "/console/messages"},
        headers={"Accept-Language": "en-GB"},
    )
    assert chosen.status_code == 303
    assert chosen.headers["location"] == "/console/messages"
    with session_scope(engine) as session:
        user = session.exec(select(MailUser).where(MailUser.username == "alice")).one()
        assert user.language == "fr"
    page = await alice.get("/console/messages", headers={"Accept-Language": "en-GB"})
    assert _lang(page.text) == "fr"
    assert "Langue modifiée." in page.text
    # Another user of the same browser language keeps the browser's.
    lyon = await console("lyon")
    other = await lyon.get("/console/", headers={"Accept-Language": "en-GB"})
    assert _lang(other.text) == "en"
    # Back to following the browser; an unknown language is refused, nothing changed.
    await alice.post("/console/language", {"language": ""})
    page = await alice.get("/console/", headers={"Accept-Language": "en-GB"})
    assert _lang(page.text) == "en"
    refused = await alice.post("/console/language", {"language": "xx"})
    assert refused.status_code == 422
    # An outside page is never where the switch sends the browser.
    away = await alice.post("/console/language", {"language": "en", "next": "https://evil.test/"})
    assert away.headers["location"] == "/console/"


async def test_account_language_of_mails_and_sms(console: Any, engine: Any) -> None:
    alice = await console("alice")
    page = await alice.get("/console/account")
    # The tests' hub writes English ([hub] locale = "en"), whatever acme's region.
    assert "the default (English)" in page.text
    assert "Thank you for your message." in page.text
    saved = await alice.post("/console/account/language", {"account": "acme", "language": "fr"})
    assert saved.status_code == 303
    with session_scope(engine) as session:
        acme = session.exec(select(Account).where(Account.name == "acme")).one()
        assert acme.locale == "fr"
    page = await alice.get(saved.headers["location"])
    assert "acme now writes its mails and SMS texts in French." in page.text
    # The console stays in the user's language; the proposed auto-reply is the account's.
    assert "Merci pour votre message." in html.unescape(page.text)
    assert "Answer every SMS received with this text" in page.text
    refused = await alice.post("/console/account/language", {"account": "acme", "language": "de"})
    assert refused.status_code == 422
    assert "Language: 'de' is not one of en, fr" in html.unescape(refused.text)


async def test_campaign_and_mailbox_pages_in_french(console: Any) -> None:
    """The pages of contact lists, templates, the campaign form and the mailboxes are in
    French too (each page's own texts, not only the navigation)."""
    alice = await console("alice")
    fr = {"Accept-Language": "fr-FR"}
    expected = {
        "/console/lists": "Importer des contacts",
        "/console/templates": "Enregistrer le modèle",
        "/console/campaigns/new": "Créer la campagne",
        "/console/campaigns": "Nouvelle campagne",
        "/console/mailboxes": "Les boîtes mail que le hub lit",
    }
    for path, text in expected.items():
        page = await alice.get(path, headers=fr)
        assert page.status_code == 200, path
        assert _lang(page.text) == "fr"
        assert text in html.unescape(page.text), path
    form = await alice.get("/console/campaigns/new", headers=fr)
    assert "Pages des campagnes" in form.text
