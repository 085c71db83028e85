"""The console's main journeys in a real browser (Debian Chromium) against a real hub process.

Every control is found by its label or role (get_by_label / get_by_role), which also proves
the pages name their controls for screen readers and keyboard users. The journeys save the
screenshots shown in the README (docs/screenshots/ with `make screenshots`). They share one
hub and run in file order: later journeys see the messages earlier ones sent.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from tests.browser.conftest import PASSWORD, PATIENT, PHONE, LiveHub, screenshot

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture reports it: a failure with CI=true, else a skip
    expect = None

Page = Any


def log_in(page: Page, hub: LiveHub, user: str = "alice", *, shot: str = "") -> None:
    """Log in through the form and land on the send page."""
    page.goto(f"{hub.url}/console/")
    expect(page).to_have_url(re.compile(r"/console/login"))
    page.get_by_label("User name").fill(user)
    password = page.get_by_label("Password")
    password.fill(PASSWORD)
    if shot:
        password.blur()
        screenshot(page, shot)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Send an SMS")).to_be_visible()


def reload_until(page: Page, locator: Any, text: str, deadline: float = 15.0) -> None:
    """Reload PAGE until LOCATOR shows TEXT (pages do not refresh by themselves)."""
    end = time.monotonic() + deadline
    while True:
        try:
            expect(locator).to_contain_text(text, timeout=1_000)
            return
        except AssertionError:
            if time.monotonic() > end:
                raise
            page.reload()


def number(text: str) -> int:
    """The first integer in TEXT ("1,234 credits" -> 1234)."""
    found = re.search(r"-?[\d,]+", text)
    assert found, f"no number in {text!r}"
    return int(found.group().replace(",", ""))


def nav(page: Page, name: str) -> None:
    """Follow a link of the main navigation."""
    page.get_by_role("navigation", name="Main").get_by_role("link", name=name).click()


# -- a. send from the home page, follow it to "delivered" -----------------------------------


def test_send_from_home_and_see_it_delivered(live_hub: LiveHub, page: Page) -> None:
    log_in(page, live_hub, shot="login")
    page.get_by_label("To", exact=True).fill("06 11 22 33 44")
    text = page.get_by_label("Text", exact=True)
    text.fill("Your glasses are ready at the optician. Opening hours: 9:00-18:00.")
    preview = page.locator("[data-preview-target]")
    expect(preview).to_contain_text("1 part")
    expect(preview).to_contain_text("GSM-7")
    expect(preview).to_contain_text("1 credit")
    # A longer text: the preview follows it (two parts, two credits).
    text.fill("Your glasses are ready at the optician. " * 5)
    expect(preview).to_contain_text("2 parts")
    expect(preview).to_contain_text("2 credits")
    text.fill("Your glasses are ready at the optician. Opening hours: 9:00-18:00.")
    expect(preview).to_contain_text("1 part")
    text.blur()
    screenshot(page, "home")

    page.get_by_role("button", name="Send", exact=True).click()
    expect(page).to_have_url(re.compile(r"/console/messages\?batch="))
    expect(page.get_by_role("status")).to_contain_text("Queued 1 SMS")
    row = page.get_by_role("row").filter(has_text="Your glasses are ready")
    reload_until(page, row, "delivered")

    nav(page, "History")
    expect(page.get_by_role("heading", name="Message history")).to_be_visible()
    reload_until(page, page.get_by_role("row").filter(has_text="Staff meeting"), "delivered")
    screenshot(page, "history")

    # The message's own page: its states, oldest first.
    page.get_by_role("row").filter(has_text="Your glasses are ready").get_by_role(
        "link"
    ).first.click()
    expect(
        page.get_by_role("heading", name=re.compile(r"SMS to \+33 6 11 22 33 44"))
    ).to_be_visible()
    expect(page.get_by_role("heading", name="What happened")).to_be_visible()
    expect(page.locator("main")).to_contain_text("delivered")
    screenshot(page, "message")


def test_campaign_report(live_hub: LiveHub, page: Page) -> None:
    log_in(page, live_hub)
    nav(page, "Campaigns")
    expect(page.get_by_role("heading", name="Campaigns")).to_be_visible()
    reload_until(page, page.get_by_role("row").filter(has_text="Flu vaccine"), "sent")
    screenshot(page, "campaigns")
    page.get_by_role("link", name="Flu vaccine reminder").click()
    expect(page.get_by_role("heading", name=re.compile("Flu vaccine reminder"))).to_be_visible()
    expect(page.get_by_role("heading", name="Messages by state")).to_be_visible()
    screenshot(page, "campaign")


# -- b. connect an ICS calendar, see its reminders and problem events -----------------------


def _ics(hub: LiveHub) -> str:
    """Three appointments in the coming days: two with a mobile number, one without."""
    now = time.time()
    day = 86_400

    def stamp(offset_days: float, hour: int) -> str:
        t = time.gmtime(now + offset_days * day)
        return f"{t.tm_year:04d}{t.tm_mon:02d}{t.tm_mday:02d}T{hour:02d}0000"

    events = [
        ("rdv-durand", stamp(3, 9), "Jeanne Durand", "Contrôle annuel. Tél. : 06 12 34 56 78"),
        ("rdv-martin", stamp(4, 14), "Paul Martin", "Détartrage. Portable 07 81 23 45 67"),
        ("rdv-leroy", stamp(5, 11), "Claire Leroy", "Première visite, rappeler le cabinet."),
    ]
    body = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//smshub tests//EN",
        "X-WR-TIMEZONE:Europe/Paris",
    ]
    for uid, start, person, description in events:
        body += [
            "BEGIN:VEVENT",
            f"UID:{uid}@cabinet.example",
            "DTSTAMP:20250101T000000Z",
            f"DTSTART;TZID=Europe/Paris:{start}",
            "DURATION:PT30M",
            f"SUMMARY:{person}",
            f"DESCRIPTION:{description}",
            "LOCATION:Cabinet dentaire, 3 rue des Lilas",
            "END:VEVENT",
        ]
    body.append("END:VCALENDAR")
    return hub.ics.publish("cabinet.ics", "\n".join(body) + "\n")


def test_connect_ics_calendar(live_hub: LiveHub, page: Page) -> None:
    url = _ics(live_hub)
    log_in(page, live_hub)
    nav(page, "Calendars")
    expect(page.get_by_role("heading", name="Calendars", exact=True)).to_be_visible()
    ics = page.get_by_role("region", name="Add a calendar by its address (ICS)")
    ics.get_by_label("Account").select_option("acme")
    ics.get_by_label("Name").fill("cabinet")
    ics.get_by_label("Address of the calendar (.ics)").fill(url)
    ics.get_by_role("button", name="Add calendar").click()
    # The test's calendar server is on this machine: a customer may not aim the hub at it
    # (the outbound guard), the administrator may, from the command line.
    expect(page.get_by_role("alert")).to_contain_text("calendar URL refused: 127.0.0.1")
    live_hub.cli(
        "calendars", "add", "acme", "cabinet", "--type", "ics", "--set", f"url={url}",
        "--allow-private",
    )  # fmt: skip
    page.goto(f"{live_hub.url}/console/calendars")  # the error page has no navigation
    page.get_by_role("link", name="cabinet", exact=True).click()
    expect(page.get_by_role("heading", name="cabinet", exact=True)).to_be_visible()
    page.get_by_role("button", name="Sync now").click()
    expect(page.get_by_role("status")).to_be_visible()
    # Upcoming reminders for the two patients with a mobile number…
    upcoming = page.get_by_role("region", name="Upcoming reminders")
    reload_until(page, upcoming, "Jeanne Durand")
    expect(upcoming).to_contain_text("+33 6 12 34 56 78")
    expect(upcoming).to_contain_text("Paul Martin")
    expect(upcoming).not_to_contain_text("Claire Leroy")
    # …and the appointment nobody can be reminded of.
    problems = page.get_by_role("region", name="Appointments without a reminder")
    expect(problems).to_contain_text("Claire Leroy")
    # The rule's text with its live preview (parts and cost of a sample reminder).
    rules = page.get_by_role("region", name="Reminder rules")
    expect(rules.get_by_label("SMS text (template)")).not_to_be_empty()
    expect(rules.locator("[data-preview-target]")).not_to_be_empty()
    screenshot(page, "calendar")
    nav(page, "Calendars")
    expect(page.get_by_role("row").filter(has_text="cabinet")).to_contain_text("ok")
    screenshot(page, "calendars")


# -- c. read a reply and answer it -----------------------------------------------------------


def test_read_a_reply_and_answer_it(live_hub: LiveHub, page: Page) -> None:
    live_hub.inbound(PATIENT, "Bonjour, puis-je venir à 10h plutôt ?")
    log_in(page, live_hub)
    nav(page, "Replies")
    conversation = page.get_by_role("row").filter(has_text="puis-je venir")
    reload_until(page, conversation, "waiting")
    conversation.get_by_role("link", name="+33 6 12 34 56 78").click()
    thread = page.get_by_role("list", name="Messages, oldest first")
    expect(thread).to_contain_text("puis-je venir à 10h plutôt ?")
    answer = page.get_by_label("Your answer")
    answer.fill("Oui, 10h c'est parfait. À demain !")
    expect(page.locator("[data-preview-target]")).to_contain_text("1 credit")
    page.get_by_role("button", name="Send answer").click()
    expect(page.get_by_role("status")).to_contain_text("Answer queued to +33 6 12 34 56 78")
    mine = thread.get_by_role("listitem").filter(has_text="10h c'est parfait")
    reload_until(page, mine, "delivered")
    screenshot(page, "replies")
    nav(page, "Replies")
    expect(page.get_by_role("row").filter(has_text="+33 6 12 34 56 78")).to_contain_text("answered")


# -- d. move credits to a sub-account --------------------------------------------------------


def test_transfer_credits_to_sub_account(live_hub: LiveHub, page: Page) -> None:
    log_in(page, live_hub)
    nav(page, "Account")
    expect(page.get_by_role("heading", name="Account acme")).to_be_visible()
    balance = page.locator("#balance .big")
    before = number(balance.inner_text())
    subs = page.get_by_role("region", name="Sub-accounts of acme")
    lyon_row = subs.get_by_role("row").filter(has_text="acme-lyon")
    lyon_before = number(lyon_row.get_by_role("cell").nth(1).inner_text())

    transfer = page.get_by_role("region", name="Move credits")
    transfer.get_by_label("Sub-account", exact=True).select_option("acme-lyon")
    transfer.get_by_label("From acme to the sub-account").check()
    transfer.get_by_label("Amount (credits)").fill("25")
    transfer.get_by_role("button", name="Move credits").click()

    expect(page.get_by_role("status")).to_be_visible()
    expect(balance).to_contain_text(str(before - 25))
    expect(lyon_row.get_by_role("cell").nth(1)).to_have_text(str(lyon_before + 25))
    ledger = page.get_by_role("region", name="Ledger")
    first = ledger.get_by_role("row").nth(1)
    expect(first).to_contain_text("-25")
    expect(first).to_contain_text(str(before - 25))
    screenshot(page, "account")

    # The sub-account's side of the move.
    subs.get_by_role("link", name="acme-lyon").click()
    expect(page.get_by_role("heading", name="Account acme-lyon")).to_be_visible()
    expect(page.locator("#balance .big")).to_contain_text(str(lyon_before + 25))
    sub_first = page.get_by_role("region", name="Ledger").get_by_role("row").nth(1)
    expect(sub_first).to_contain_text("+25")
    expect(sub_first).to_contain_text(str(lyon_before + 25))


def test_settings_pages(live_hub: LiveHub, page: Page) -> None:
    """Intake addresses, API tokens, webhooks and blacklist list what the CLI created."""
    log_in(page, live_hub)
    nav(page, "Account")
    subnav = page.get_by_role("navigation", name="Account pages")
    for link, heading, seeded, shot in [
        ("Intake addresses", "Intake addresses of acme", "sms@clinic.example", "intake"),
        ("API tokens", "API tokens of acme", "crm", "tokens"),
        ("Webhooks", "Webhooks of acme", "https://crm.clinic.example/smshub", "webhooks"),
        ("Blacklist", "Blacklist of acme", "asked at the desk", "blacklist"),
    ]:
        subnav.get_by_role("link", name=link).click()
        expect(page.get_by_role("heading", name=heading)).to_be_visible()
        expect(page.locator("main")).to_contain_text(seeded)
        screenshot(page, shot)


# -- e. keyboard only ------------------------------------------------------------------------


def tab_to(page: Page, selector: str, limit: int = 40) -> None:
    """Press Tab until the element matching SELECTOR has the focus."""
    for _ in range(limit):
        if page.evaluate("(s) => document.activeElement?.matches(s) ?? false", selector):
            return
        page.keyboard.press("Tab")
    pytest.fail(f"{selector} never got the focus after {limit} Tab presses")


def test_keyboard_only_login_and_send(live_hub: LiveHub, page: Page) -> None:
    page.goto(f"{live_hub.url}/console/login")
    # The user name field has the focus on arrival (autofocus lands once the page is in:
    # typing before that would lose the first letters).
    expect(page.get_by_label("User name")).to_be_focused()
    page.keyboard.type("alice")
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Send an SMS")).to_be_visible()
    # The first stop skips the navigation.
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    tab_to(page, "#to")
    page.keyboard.type("07 81 23 45 67")
    tab_to(page, "#text")
    page.keyboard.type("Typed without a mouse.")
    expect(page.locator("[data-preview-target]")).to_contain_text("1 credit")
    tab_to(page, "button[type=submit]:not(.link)")
    expect(page.get_by_role("button", name="Send", exact=True)).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_contain_text("Queued 1 SMS")
    expect(page.get_by_role("row").filter(has_text="Typed without a mouse.")).to_be_visible()


# -- f. a phone's screen ---------------------------------------------------------------------

MAIN_PAGES = [
    "/console/",
    "/console/messages",
    "/console/campaigns",
    "/console/replies",
    "/console/calendars",
    "/console/account",
    "/console/intake",
    "/console/tokens",
    "/console/webhooks",
    "/console/blacklist",
    "/console/invalid",
]


# The page's excess width, and the innermost elements that stick out (for the report).
_OVERFLOW_JS = """() => {
  const excess = document.scrollingElement.scrollWidth - window.innerWidth;
  if (excess <= 0) return [excess, []];
  const wide = [...document.querySelectorAll("main *")].filter((el) => {
    const box = el.getBoundingClientRect();
    return box.right > window.innerWidth + 1 && !el.closest(".table-wrap")
      && ![...el.children].some((c) => c.getBoundingClientRect().right > window.innerWidth + 1);
  });
  return [excess, wide.slice(0, 5).map((el) =>
    el.tagName.toLowerCase() + (el.className ? "." + el.className : "") + ": "
    + (el.textContent || "").trim().slice(0, 40))];
}"""

# Lists whose first detail page (message, campaign, conversation, calendar) is checked too.
WITH_DETAIL = {"/console/messages", "/console/campaigns", "/console/replies", "/console/calendars"}


def overflow(page: Page) -> str:
    """'' when the page fits the screen's width, else by how much and what sticks out."""
    excess, culprits = page.evaluate(_OVERFLOW_JS)
    return f"{excess} px too wide: {culprits}" if excess > 0 else ""


def test_phone_screen_has_no_sideways_scrolling(live_hub: LiveHub, phone: Page) -> None:
    assert phone.viewport_size == PHONE
    phone.goto(f"{live_hub.url}/console/login")
    too_wide = {"/console/login": overflow(phone)}
    log_in(phone, live_hub)
    for path in MAIN_PAGES:
        response = phone.goto(f"{live_hub.url}{path}")
        assert response is not None and response.ok, f"{path}: {response and response.status}"
        too_wide[path] = overflow(phone)
        if path == "/console/":
            screenshot(phone, "phone-home")
        elif path == "/console/messages":
            screenshot(phone, "phone-history")
        if path in WITH_DETAIL and phone.locator("main table a").count():
            # The first detail page the list links to.
            phone.locator("main table a").first.click()
            phone.wait_for_load_state()
            too_wide[phone.url.removeprefix(live_hub.url)] = overflow(phone)
    bad = "\n".join(f"{path}: {why}" for path, why in too_wide.items() if why)
    assert not bad, f"pages wider than a {PHONE['width']} px screen:\n{bad}"
