"""Campaigns from the console, in a real browser (issue 17): import a contact list with one
bad line and see it rejected, write a personalised template and see each recipient's text,
then schedule a campaign with a short link and a PDF, see its cost and parts, and find it in
the campaigns list. The journeys run in file order on one hub and save the README's
screenshots of these pages."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from tests.browser.conftest import PHONE, LiveHub, screenshot
from tests.browser.test_journeys import expect, log_in, nav, overflow

Page = Any

CONTACTS = (
    "Numéro;Prénom;Ville\n"
    "06 12 34 56 78;Jeanne;Lyon\n"
    "06 98 76 54 32;Marc;Nice\n"
    "not a number;Paul;Paris\n"
    "07 81 23 45 67;Zoé;Lille\n"
)
PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


def _subnav(page: Page, name: str) -> None:
    page.get_by_role("navigation", name="Campaign pages").get_by_role("link", name=name).click()


def test_import_a_list_with_one_bad_line(live_hub: LiveHub, page: Page, tmp_path: Path) -> None:
    log_in(page, live_hub)
    nav(page, "Campaigns")
    _subnav(page, "Contact lists")
    expect(page.get_by_role("heading", name=re.compile("Contact lists of acme"))).to_be_visible()
    source = tmp_path / "patients.csv"
    source.write_text(CONTACTS, "utf-8")
    page.get_by_label("Into list").fill("patients")
    page.get_by_label("File (CSV, TXT, XLS or XLSX)").set_input_files(str(source))
    # The preview comes while the file is chosen: nothing is saved yet.
    preview = page.locator("[data-preview-target]")
    expect(preview).to_contain_text("Preview: nothing saved yet")
    expect(preview).to_contain_text("would add 3")
    expect(preview).to_contain_text("line 4: not a number")
    page.get_by_label("Into list").blur()
    screenshot(page, "lists-import")

    page.get_by_role("button", name="Import", exact=True).click()
    result = page.get_by_role("region", name="Import into patients")
    expect(result).to_contain_text("Imported.")
    expect(result).to_contain_text("added 3")
    expect(result).to_contain_text("1 line left out")
    expect(result).to_contain_text("line 4: not a number")
    expect(page.get_by_role("row").filter(has_text="patients")).to_contain_text("3")

    result.get_by_role("link", name="Open the list patients").click()
    expect(page.get_by_role("heading", name="List patients")).to_be_visible()
    expect(page.get_by_role("row").filter(has_text="Jeanne")).to_contain_text("Lyon")
    screenshot(page, "list")


def test_write_a_personalised_template(live_hub: LiveHub, page: Page) -> None:
    log_in(page, live_hub)
    page.goto(f"{live_hub.url}/console/templates")
    expect(page.get_by_role("heading", name="New template")).to_be_visible()
    page.get_by_label("Name").fill("vaccine")
    page.get_by_label("List", exact=True).select_option("patients")
    page.get_by_label("Text", exact=True).fill(
        "Bonjour {{ prenom }}, le vaccin contre la grippe est disponible au cabinet de {{ ville }}."
    )
    preview = page.locator("[data-preview-target]")
    expect(preview).to_contain_text("3 recipients")
    expect(preview).to_contain_text("Bonjour Jeanne, le vaccin contre la grippe")
    expect(preview).to_contain_text("cabinet de Nice")
    page.get_by_label("Text", exact=True).blur()
    screenshot(page, "template")
    page.get_by_role("button", name="Save the template").click()
    expect(page.get_by_role("status")).to_contain_text("Template vaccine saved.")
    expect(page.get_by_role("heading", name="Template vaccine")).to_be_visible()


def test_schedule_a_campaign_with_a_short_link_and_a_pdf(
    live_hub: LiveHub, page: Page, tmp_path: Path
) -> None:
    log_in(page, live_hub)
    nav(page, "Campaigns")
    page.get_by_role("link", name="New campaign", exact=True).first.click()
    expect(page.get_by_role("heading", name="New campaign")).to_be_visible()
    flyer = tmp_path / "flyer.pdf"
    flyer.write_bytes(PDF)
    page.get_by_label("Campaign name").fill("Flu vaccine, December")
    page.get_by_label(re.compile(r"List patients")).check()
    page.get_by_label("Text", exact=True).fill(
        "Bonjour {{ prenom }}, prenez RDV: https://cabinet.example/rendez-vous/grippe-2026"
    )
    page.get_by_label(re.compile("Shorten links")).check()
    page.get_by_label(re.compile("Attach a file")).set_input_files(str(flyer))
    page.get_by_label("Sender (name or number)").fill("CABINET")
    page.get_by_role("radio", name=re.compile("Alert")).check()
    later = time.localtime(time.time() + 3 * 86_400)
    page.get_by_label(re.compile("Send at")).fill(time.strftime("%Y-%m-%dT10:00", later))
    preview = page.locator("[data-preview-target]")
    expect(preview).to_contain_text("3 recipients")
    # Each URL counted as its short link; the PDF's link ends the text.
    expect(preview).to_contain_text("/s/xxxxxxxx")
    expect(preview).not_to_contain_text("cabinet.example")
    expect(preview).to_contain_text("Bonjour Zoé")
    cost = preview.locator("[data-cost]").get_attribute("data-cost")
    parts = preview.locator("[data-parts]").get_attribute("data-parts")
    assert cost and parts and int(parts) >= 3
    page.get_by_label(re.compile("Send at")).blur()
    screenshot(page, "campaign-new")

    page.get_by_role("button", name="Create the campaign").click()
    expect(page.get_by_role("status")).to_contain_text(
        f"Campaign Flu vaccine, December scheduled: 3 SMS, {cost} credits"
    )
    expect(page.get_by_role("heading", name=re.compile("Flu vaccine, December"))).to_be_visible()
    nav(page, "Campaigns")
    row = page.get_by_role("row").filter(has_text="Flu vaccine, December")
    expect(row).to_contain_text("scheduled")
    expect(row).to_contain_text(cost)


def test_campaign_pages_fit_a_phone(live_hub: LiveHub, phone: Page) -> None:
    assert phone.viewport_size == PHONE
    log_in(phone, live_hub)
    too_wide = {}
    for path in ("/console/lists", "/console/templates", "/console/campaigns/new"):
        response = phone.goto(f"{live_hub.url}{path}")
        assert response is not None and response.ok, path
        too_wide[path] = overflow(phone)
        if path == "/console/lists":
            phone.locator("main table a").first.click()
            phone.wait_for_load_state()
            too_wide[phone.url] = overflow(phone)
    bad = "\n".join(f"{path}: {why}" for path, why in too_wide.items() if why)
    assert not bad, f"pages wider than a {PHONE['width']} px screen:\n{bad}"
