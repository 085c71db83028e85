"""Browser fixtures: a real hub process, accounts made with the CLI, and Debian's Chromium.

One hub child process (`smshub run`, started by the crash tests' harness) serves the whole
module: its SQLite database and simulator log live in a temporary directory, the simulator
reports every SMS delivered a fraction of a second after it is sent, and its callback secret
is a file, so a test can make an inbound SMS arrive as the simulator would. Accounts, users
and the first messages are made with the `smshub` commands an administrator would type.

The browser is the system's Chromium (Debian package `chromium`) driven by Playwright's sync
API; Playwright's own browser downloads are never used. Tests are plain `def` functions: the
sync API cannot run inside pytest-asyncio's event loop. SQLite only: the journeys exercise the
pages, and the console's queries run on PostgreSQL in tests/console.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from tests.conftest import require_server
from tests.reliability._harness import HubProcess, write_config
from tests.servers._util import BackgroundServer, free_port

CHROMIUM = Path(os.environ.get("SMSHUB_CHROMIUM", "/usr/bin/chromium"))
# Where the journeys save their screenshots: docs/screenshots only when asked (`make
# screenshots`), so that a test run leaves the working tree as it was (every run rewrote
# the README's pictures, a few bytes apart).
SCREENSHOTS = Path(
    os.environ.get("SMSHUB_SCREENSHOTS") or Path(tempfile.gettempdir()) / "smshub-screenshots"
)
PASSWORD = "correct horse battery"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# Numbers of the seeded data (the simulator delivers to all of them).
PATIENT = "+33612345678"
COLLEAGUE = "+33698765432"


@dataclass
class LiveHub:
    """A running `smshub run` child and what the tests need to talk to it."""

    url: str
    config_path: Path
    data_dir: Path
    mo_secret: str
    process: HubProcess
    ics: IcsServer
    users: dict[str, str] = field(default_factory=dict)

    def cli(self, *args: str, stdin: str | None = None) -> str:
        """Run `smshub --config CFG ARGS…` (in this process: a child per command costs ~2 s)."""
        return run_cli(self.config_path, *args, stdin=stdin)

    def inbound(self, sender: str, text: str) -> None:
        """An SMS from SENDER arrives, posted to the simulator's callback like the simulator
        itself does (the hub then matches it to the conversation)."""
        response = httpx.post(
            f"{self.url}/callbacks/simulator/mo",
            headers={"X-Smshub-Secret": self.mo_secret},
            json={
                "id": "test-mo-" + secrets.token_hex(6),
                "from": sender,
                "to": "+33700000000",
                "text": text,
            },
            timeout=10,
        )
        assert response.status_code == 200, response.text


def run_cli(config_path: Path, *args: str, stdin: str | None = None) -> str:
    """The `smshub` command line on CONFIG_PATH, run in this process; fails on a non-zero exit."""
    from hub.cli import main as cli

    _forget_cli_state(cli)
    try:
        result = CliRunner().invoke(
            cli.app,
            ["--config", str(config_path), *args],
            input=stdin,
            # The config file's database, not one named in the developer's shell.
            env={"SMSHUB_DATABASE_URL": None, "SMSHUB_CONFIG": None},
            catch_exceptions=False,
        )
    finally:
        _forget_cli_state(cli)
    assert result.exit_code == 0, f"smshub {' '.join(args)} failed:\n{result.output}"
    return result.output


def _forget_cli_state(cli: Any) -> None:
    # The CLI keeps its config and engine for the process; each call here may use another file.
    engine = cli._state.pop("engine", None)
    if engine is not None:
        engine.dispose()
    cli._state.clear()


class IcsServer:
    """A local HTTP server for .ics files the tests publish (a calendar's URL)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        files = self.files

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                body = files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/calendar; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = BackgroundServer(Handler).start()

    def publish(self, name: str, body: str) -> str:
        """Serve BODY at /NAME; returns its URL."""
        self.files[f"/{name}"] = body.replace("\n", "\r\n").encode("utf-8")
        return f"{self.server.url}/{name}"

    def close(self) -> None:
        self.server.close()


def _wait_healthy(url: str, process: HubProcess, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if not process.alive():
            pytest.fail(f"the hub exited:\n{process.output()}")
        if time.monotonic() > deadline:
            pytest.fail(f"/healthz did not answer within {timeout:.0f} s:\n{process.output()}")
        time.sleep(0.1)


def _seed(config_path: Path) -> dict[str, str]:
    """Accounts, users and a first history, made the way an administrator would; returns
    the users and their accounts."""

    def cli(*args: str, stdin: str | None = None) -> str:
        return run_cli(config_path, *args, stdin=stdin)

    def send(to: str, text: str) -> None:
        cli("send", "--account", "acme", "--to", to, "--text", text)

    cli("accounts", "create", "acme", "--region", "FR")
    cli("accounts", "credit", "acme", "500", "--note", "first top-up")
    cli("accounts", "create", "acme-lyon", "--parent", "acme")
    cli("accounts", "transfer", "acme", "acme-lyon", "50")
    users = {"alice": "acme", "lyon": "acme-lyon"}
    for user, account in users.items():
        cli("mail", "user", account, user, "--password-stdin", stdin=PASSWORD + "\n")
    send(COLLEAGUE, "Staff meeting moved to 14:00, room B.")
    send(PATIENT, "Bonjour, votre RDV du mardi est confirmé. Répondez si besoin.")
    cli(
        "campaigns", "create", "Flu vaccine reminder", "--account", "acme", "--type", "alert",
        "--to", PATIENT, "--to", COLLEAGUE, "--to", "+33611223344",
        "--text", "The flu vaccine is available at the practice from Monday. Call 01 23 45 67 89.",
    )  # fmt: skip
    cli("mail", "address", "acme", "sms@clinic.example", "--allow", "@clinic.example")
    cli("tokens", "create", "acme", "--name", "crm")
    # Only link clicks, which the tests never make: nothing is posted to this URL.
    cli("webhooks", "add", "acme", "https://crm.clinic.example/smshub", "-e", "link.clicked")
    cli("blacklist", "add", "acme", "+33687654321", "--note", "asked at the desk")
    return users


@pytest.fixture(scope="module")
def live_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveHub]:
    """A seeded hub process on free ports, stopped after the module's tests."""
    tmp_path = tmp_path_factory.mktemp("hub")
    secret_file = tmp_path / "simulator.secret"
    secret_file.write_text(secrets.token_urlsafe(24), "utf-8")
    http_port, smtp_port = free_port(), free_port()
    url = f"http://127.0.0.1:{http_port}"
    config_path = write_config(
        tmp_path,
        f"sqlite:///{tmp_path / 'smshub.db'}",
        f"""
[http]
port = {http_port}
[smtp]
port = {smtp_port}
[dispatcher]
poll_interval = 0.05
[providers.simulator]
type = "simulator"
report_delay = 0.3
secret_file = "{secret_file.as_posix()}"
""",
        # hub.public_url stays the default (http://127.0.0.1:8025): it only shows in pages
        # (OAuth redirect URI, short links), and the screenshots should not change per run.
    )
    # Seeded before the hub starts: the first command creates the schema.
    users = _seed(config_path)
    process = HubProcess(config_path, "browser-hub", "all")
    ics = IcsServer()
    try:
        process.wait_ready(60)
        _wait_healthy(url, process)
        yield LiveHub(
            url=url,
            config_path=config_path,
            data_dir=tmp_path / "data",
            mo_secret=secret_file.read_text("utf-8").strip(),
            process=process,
            ics=ics,
            users=users,
        )
    finally:
        process.stop()
        ics.close()
    errors = process.errors()
    assert not errors, "the hub logged errors:\n" + "\n".join(errors)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium; a missing one fails in CI and skips elsewhere."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        require_server("Playwright", f"{exc} (pip install -e '.[test]')")
    if not (CHROMIUM.exists() and shutil.which(str(CHROMIUM))):
        require_server("Chromium", f"{CHROMIUM} not found (apt-get install chromium)")
    with sync_playwright() as playwright:
        # --no-sandbox: the tests may run as root, where Chromium's sandbox refuses to start.
        instance = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        yield instance
        instance.close()


def _context(browser: Any, viewport: dict[str, int]) -> Any:
    # A fixed zone and language so times and numbers look the same on every machine.
    context = browser.new_context(
        viewport=viewport,
        locale="en-GB",
        timezone_id="Europe/Paris",
        device_scale_factor=1,
        reduced_motion="reduce",
    )
    context.set_default_timeout(10_000)
    return context


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh desktop browser tab (1280 wide), no cookies."""
    context = _context(browser, DESKTOP)
    yield context.new_page()
    context.close()


@pytest.fixture
def phone(browser: Any) -> Iterator[Any]:
    """A fresh tab with a phone's screen (390x844)."""
    context = _context(browser, PHONE)
    yield context.new_page()
    context.close()


def screenshot(page: Any, name: str) -> None:
    """Save the whole page as SCREENSHOTS/NAME.png (docs/screenshots with `make screenshots`)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(
        path=str(SCREENSHOTS / f"{name}.png"), full_page=True, animations="disabled", caret="hide"
    )
