"""A campaign's link clicked in a real browser (Debian Chromium), then its report (issue 17).

The campaign is made with the `smshub` command an administrator would type, with click
tracking on; Chromium opens one recipient's short link as a phone's SMS app would (a tap on
the link), is redirected to the campaign's page, and the console's campaign report shows
the click: one unique clicker of three, its time, and the browser's OS as ua-parser reads it.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tests.browser.conftest import COLLEAGUE, PATIENT, LiveHub, screenshot
from tests.browser.test_journeys import log_in, nav

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture reports it: a failure with CI=true, else a skip
    expect = None

Page = Any
# hub.public_url as the browser fixture leaves it (the default): the base of every short link.
PUBLIC = "http://127.0.0.1:8025"


def test_a_browser_click_shows_in_the_campaign_report(live_hub: LiveHub, page: Page) -> None:
    # The campaign's page is the hub's health check: a target this machine can open.
    target = f"{live_hub.url}/healthz"
    out = live_hub.cli(
        "campaigns", "create", "Open day", "--account", "acme", "--type", "alert",
        "--to", PATIENT, "--to", COLLEAGUE, "--to", "+33611223399",
        "--text", f"Open day on Saturday, programme: {target}", "--track-links", "--json",
    )  # fmt: skip
    campaign = json.loads(out)
    assert campaign["track_links"] is True
    messages = json.loads(live_hub.cli("messages", "list", "--account", "acme", "--json"))
    texts = [m["text"] for m in messages if m["text"].startswith("Open day on Saturday")]
    codes = {re.search(rf"{re.escape(PUBLIC)}/s/(\w{{8}})", t).group(1) for t in texts}  # type: ignore[union-attr]
    assert len(texts) == 3 and len(codes) == 3, texts
    assert not any(target in t for t in texts)

    # The SMS as a phone shows it: a tappable link. The short link's host is the configured
    # public URL; here the hub listens on another port, so the tap goes there.
    code = sorted(codes)[0]
    page.set_content(f'<p>Open day on Saturday, programme: <a href="{live_hub.url}/s/{code}">'
                     f"{PUBLIC}/s/{code}</a></p>")  # fmt: skip
    page.get_by_role("link").click()
    page.wait_for_url(target)
    expect(page.locator("body")).to_contain_text("ok")

    log_in(page, live_hub)
    nav(page, "Campaigns")
    page.get_by_role("link", name="Open day").click()
    clicks = page.locator("#clicks")
    expect(clicks.get_by_role("heading", name="Clicks")).to_be_visible()
    expect(clicks.locator("[data-unique-clickers]")).to_have_text("1 of 3")
    expect(clicks.locator("[data-click-rate]")).to_have_text("33.3 %")
    expect(clicks.locator("[data-bot-clicks]")).to_have_text("0")
    # Headless Chromium on Linux, as ua-parser reads its User-Agent.
    systems = clicks.locator('[data-breakdown="os"]')
    expect(systems.get_by_role("row").filter(has_text="Linux")).to_contain_text("1")
    browsers = clicks.locator('[data-breakdown="browsers"]')
    expect(browsers).to_contain_text("HeadlessChrome")
    expect(clicks).not_to_contain_text("none yet")
    screenshot(page, "campaign-clicks")
