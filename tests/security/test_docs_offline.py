"""/docs works offline and under its Content-Security-Policy (issue #14).

FastAPI's pages loaded Swagger UI from a public CDN with an inline start-up script. Now the
files come from the hub itself. Checked two ways: the pages name no outside host, and a
real Chromium that may reach only the hub renders the API's operations with no CSP
violation.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from tests.browser import conftest as browser_fixtures
from tests.conftest import make_config
from tests.servers._util import free_port

browser = browser_fixtures.browser


@pytest.fixture
def docs_hub(tmp_path: Path) -> Iterator[str]:
    """The hub's HTTP app served by uvicorn in a thread (no database work for /docs)."""
    from hub.app import Hub

    hub = Hub(make_config(f"sqlite:///{tmp_path / 'hub.db'}", tmp_path))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(hub.api, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        hub.engine.dispose()


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_docs_pages_load_nothing_from_outside(docs_hub: str, path: str) -> None:
    response = httpx.get(docs_hub + path)
    assert response.status_code == 200
    assert "script-src 'self'" in response.headers["content-security-policy"]
    # Every script, stylesheet and icon is the hub's own; no inline script.
    assert not re.search(r"(src|href)=\"(https?:)?//", response.text), response.text
    assert not re.search(r"<script>[^<]", response.text)
    for asset in re.findall(r"(?:src|href)=\"(/[^\"]+)\"", response.text):
        assert httpx.get(docs_hub + asset).status_code == 200, asset


def test_swagger_ui_renders_offline_under_the_csp(docs_hub: str, browser: Any) -> None:
    context = browser.new_context()
    page = context.new_page()
    outside: list[str] = []
    problems: list[str] = []

    def only_the_hub(route: Any) -> None:
        if route.request.url.startswith(docs_hub):
            route.continue_()
        else:  # offline: anything else fails as it would without a network
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_hub)
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    try:
        page.goto(docs_hub + "/docs")
        page.wait_for_selector(".opblock-summary-path", timeout=15_000)
        paths = page.locator(".opblock-summary-path").all_inner_texts()
        assert any("/v1/messages" in p for p in paths), paths
        assert "smshub" in page.inner_text(".swagger-ui .info")
    finally:
        context.close()
    assert outside == []
    assert [p for p in problems if "Content Security Policy" in p or "Refused" in p] == []
