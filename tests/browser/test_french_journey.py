"""The console in French, end to end, in a real browser whose language is French: log in,
send, follow the history, open the settings; then the user's own choice of language wins
over the browser's. Saves the French screenshots (docs/screenshots/*-fr.png with `make
screenshots`)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser.conftest import DESKTOP, PASSWORD, LiveHub, screenshot
from tests.browser.test_journeys import reload_until

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture reports it: a failure with CI=true, else a skip
    expect = None

Page = Any


@pytest.fixture
def french_page(browser: Any) -> Any:
    """A desktop tab whose browser asks for French (Accept-Language: fr-FR)."""
    context = browser.new_context(
        viewport=DESKTOP,
        locale="fr-FR",
        timezone_id="Europe/Paris",
        device_scale_factor=1,
        reduced_motion="reduce",
    )
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()


def test_the_console_in_french(live_hub: LiveHub, french_page: Page) -> None:
    page = french_page
    page.goto(f"{live_hub.url}/console/")
    expect(page).to_have_url(re.compile(r"/console/login"))
    expect(page.get_by_role("heading", name="Connexion à smshub")).to_be_visible()
    assert page.locator("html").get_attribute("lang") == "fr"
    page.get_by_label("Nom d'utilisateur").fill("alice")
    password = page.get_by_label("Mot de passe")
    password.fill(PASSWORD)
    password.blur()
    screenshot(page, "login-fr")
    page.get_by_role("button", name="Se connecter").click()

    # Send: labels, live preview and the confirmation in French.
    expect(page.get_by_role("heading", name="Envoyer un SMS")).to_be_visible()
    page.get_by_label("À", exact=True).fill("06 11 22 33 44")
    text = page.get_by_label("Texte", exact=True)
    text.fill("Bonjour, vos lunettes sont prêtes chez l'opticien. Ouvert de 9h à 18h.")
    preview = page.locator("[data-preview-target]")
    expect(preview).to_contain_text("1 partie")
    expect(preview).to_contain_text("1 crédit")
    text.blur()
    screenshot(page, "home-fr")
    page.get_by_role("button", name="Envoyer", exact=True).click()
    expect(page).to_have_url(re.compile(r"/console/messages\?batch="))
    expect(page.get_by_role("status")).to_contain_text("1 SMS en file")
    row = page.get_by_role("row").filter(has_text="vos lunettes sont prêtes")
    reload_until(page, row, "remis")

    # History.
    page.get_by_role("navigation", name="Principal").get_by_role("link", name="Historique").click()
    expect(page.get_by_role("heading", name="Historique des messages")).to_be_visible()
    expect(page.get_by_role("columnheader", name="Texte")).to_be_visible()
    screenshot(page, "history-fr")

    # Settings: the account page and one settings page.
    page.get_by_role("navigation", name="Principal").get_by_role("link", name="Compte").click()
    expect(page.get_by_role("heading", name="Compte acme")).to_be_visible()
    # The account's mails and SMS in French (this hub writes English by default).
    page.get_by_label("Confirmations, SMS transférés").select_option("fr")
    page.get_by_role("button", name="Enregistrer la langue").click()
    expect(page.get_by_role("status")).to_contain_text(
        "acme écrit désormais ses e-mails et ses SMS en français."
    )
    expect(page.get_by_label("Texte de la réponse automatique")).to_have_value(
        re.compile(r"^Merci pour votre message")
    )
    screenshot(page, "account-fr")
    subnav = page.get_by_role("navigation", name="Pages du compte")
    subnav.get_by_role("link", name="Adresses d'envoi").click()
    expect(page.get_by_role("heading", name="Adresses d'envoi de acme")).to_be_visible()
    expect(page.locator("main")).to_contain_text("sms@clinic.example")
    screenshot(page, "intake-fr")

    # The user's choice wins over the browser's language, on every page after it.
    page.get_by_label("Langue").select_option("en")
    page.get_by_role("button", name="Changer de langue").click()
    expect(page.get_by_role("status")).to_contain_text("Language changed.")
    expect(page.get_by_role("heading", name="Intake addresses of acme")).to_be_visible()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="History").click()
    expect(page.get_by_role("heading", name="Message history")).to_be_visible()
    page.get_by_label("Language").select_option("fr")
    page.get_by_role("button", name="Change language").click()
    expect(page.get_by_role("status")).to_contain_text("Langue modifiée.")
    expect(page.get_by_role("heading", name="Historique des messages")).to_be_visible()
