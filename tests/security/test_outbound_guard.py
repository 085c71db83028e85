"""Rule 2: every URL a customer gives is fetched through one guard (hub.outbound).

Resolved once, refused when any address is internal (loopback, private, link-local, CGNAT,
reserved... and the IPv6 forms that reach them), connected to the checked address (so DNS
rebinding has no second lookup to act on), redirects checked again; only the administrator
(CLI / private_ok) may allow a private target. Real local servers stand for the internal
services a customer would aim at; the guard's resolver hook stands for a hostile DNS.
"""

from __future__ import annotations

import json
import logging
import re
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest
from sqlmodel import select

from connectors.calendar.caldav import CalDavSettings, CalDavSource
from connectors.calendar.ics import IcsSettings, IcsSource
from hub.errors import HubError, InvalidInput, SourceError
from hub.inbound import webhooks
from hub.outbound import (
    Guard,
    GuardResolver,
    OutboundRefused,
    address_refusal,
    guard,
    guarded_async_client,
    guarded_session,
)
from hub.ports.calendar import SourceContext, SyncWindow
from hub.reminders.setup import add_calendar
from hub.sending.accounts import get_account
from hub.store.db import session_scope
from hub.store.models import Calendar, WebhookDelivery

# The console's fixtures, used here under their names (hence F811 on the parameters).
from tests.console.conftest import console, users  # noqa: F401
from tests.servers._util import BackgroundServer

WINDOW = SyncWindow(datetime.now(UTC) - timedelta(days=1), datetime.now(UTC) + timedelta(days=30))
ICS = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nEND:VCALENDAR\r\n"
SECRET = b"INTERNAL-SECRET-4f1d"


# ---- a local "internal service" --------------------------------------------------------------
class Internal:
    """An HTTP server on 127.0.0.1 standing for an internal service: it records every request
    and answers 200 with a calendar (or STATUS with SECRET in the body)."""

    def __init__(self, status: int = 200) -> None:
        self.requests: list[tuple[str, str, str]] = []
        internal = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                internal.requests.append((self.command, self.path, self.headers.get("Host", "")))
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                body = ICS if status == 200 else SECRET
                self.send_response(status)
                self.send_header("Content-Type", "text/calendar" if status == 200 else "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PROPFIND = do_REPORT = do_OPTIONS = _answer  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = BackgroundServer(Handler).start()
        self.port = self.server.port

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def internal() -> Iterator[Internal]:
    server = Internal()
    yield server
    server.close()


@pytest.fixture
def failing() -> Iterator[Internal]:
    server = Internal(status=500)
    yield server
    server.close()


class Rebinding:
    """A hostile DNS: ANSWERS[0] at the first lookup, ANSWERS[1] at every later one."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        return self.answers[min(len(self.calls) - 1, len(self.answers) - 1)]


class Recording(httpcore.AsyncMockBackend):
    """httpcore's mock network answering ANSWER to every connection; records where each
    connection went (the guard gives it the address to connect to)."""

    def __init__(self, answer: bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") -> None:
        super().__init__([answer])
        self.connected: list[tuple[str, int]] = []

    async def connect_tcp(self, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        self.connected.append((host, port))
        return await super().connect_tcp(host, port, *args, **kwargs)


# ---- the address classifier ------------------------------------------------------------------
REFUSED = [
    ("127.0.0.1", "a loopback address"),
    ("127.255.255.254", "a loopback address"),
    ("0.0.0.0", "the unspecified address"),
    ("0.1.2.3", "'this network'"),
    ("10.0.0.1", "a private address"),
    ("172.16.0.1", "a private address"),
    ("172.31.255.255", "a private address"),
    ("192.168.1.1", "a private address"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("100.127.255.254", "carrier-grade NAT"),
    ("169.254.169.254", "a link-local address (the cloud metadata service)"),
    ("169.254.0.1", "a link-local address"),
    ("192.0.0.9", "an IETF protocol address"),
    ("192.0.2.1", "a documentation address"),
    ("198.51.100.7", "a documentation address"),
    ("203.0.113.9", "a documentation address"),
    ("192.88.99.1", "a 6to4 relay address"),
    ("198.18.0.1", "a benchmarking address"),
    ("198.19.255.255", "a benchmarking address"),
    ("224.0.0.1", "a multicast address"),
    ("239.255.255.250", "a multicast address"),
    ("240.0.0.1", "a reserved address"),
    ("255.255.255.255", "the broadcast address"),
    ("::", "the unspecified address"),
    ("::1", "a loopback address"),
    ("::ffff:127.0.0.1", "an IPv4-mapped address of 127.0.0.1, a loopback address"),
    ("::ffff:10.0.0.1", "an IPv4-mapped address of 10.0.0.1, a private address"),
    ("::ffff:169.254.169.254", "of 169.254.169.254, a link-local address"),
    ("::127.0.0.1", "an IPv4-compatible address"),
    ("::ffff:0:7f00:1", "an IPv4-translated address"),
    ("64:ff9b::7f00:1", "a NAT64 address of 127.0.0.1, a loopback address"),
    ("64:ff9b::a9fe:a9fe", "a NAT64 address of 169.254.169.254, a link-local address"),
    ("64:ff9b:1::1", "a local-use NAT64 address"),
    ("2002:7f00:1::", "a 6to4 address of 127.0.0.1, a loopback address"),
    ("2002:a00:1::1", "a 6to4 address of 10.0.0.1, a private address"),
    ("2002:a9fe:a9fe::", "a 6to4 address of 169.254.169.254"),
    ("2001::1", "a Teredo tunnel address"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "a Teredo tunnel address"),
    ("2001:db8::1", "a documentation address"),
    ("3fff::1", "a documentation address"),
    ("fc00::1", "a unique local (private) address"),
    ("fd12:3456::1", "a unique local (private) address"),
    ("fe80::1", "a link-local address"),
    ("fe80::1%eth0", "a link-local address"),
    ("fec0::1", "a site-local (private) address"),
    ("ff02::1", "a multicast address"),
    ("ff05::2", "a multicast address"),
    ("100::1", "a discard-only address"),
    ("5f00::1", "a reserved address"),
    ("2001:10::1", "not a public address"),
    ("2001:20::1", "not a public address"),
]
PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "100.63.255.255",
    "100.128.0.0",
    "172.15.255.255",
    "172.32.0.0",
    "192.167.1.1",
    "169.253.0.1",
    "2606:4700:4700::1111",
    "2a00:1450:4007::1",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
    "2002:808:808::1",
]


@pytest.mark.parametrize(("address", "why"), REFUSED)
def test_classifier_refuses_internal_addresses(address: str, why: str) -> None:
    reason = address_refusal(address)
    assert reason is not None and why in reason, (address, reason)


@pytest.mark.parametrize("address", PUBLIC)
def test_classifier_allows_public_addresses(address: str) -> None:
    assert address_refusal(address) is None


# ---- console: refused at add time, with the reason -------------------------------------------
ADD_REFUSED = [
    ("http://127.0.0.1:{port}/cal.ics", "127.0.0.1 is a loopback address"),
    ("http://localhost:{port}/cal.ics", "localhost resolves to"),
    ("http://169.254.169.254/latest/meta-data/", "the cloud metadata service"),
    ("http://[::1]:{port}/cal.ics", "::1 is a loopback address"),
    ("http://[::ffff:127.0.0.1]:{port}/cal.ics", "an IPv4-mapped address of 127.0.0.1"),
    ("http://[64:ff9b::7f00:1]:{port}/cal.ics", "a NAT64 address of 127.0.0.1"),
    ("http://[2002:7f00:1::]:{port}/cal.ics", "a 6to4 address of 127.0.0.1"),
    ("webcal://127.0.0.1:{port}/cal.ics", "127.0.0.1 is a loopback address"),
    ("http://2130706433:{port}/cal.ics", "resolves to 127.0.0.1"),  # 127.0.0.1 as a number
]


@pytest.mark.parametrize(
    ("kind", "url", "reason"),
    [
        (kind, url, reason)
        for kind in ("ics", "caldav")
        for url, reason in ADD_REFUSED
        if kind == "ics" or not url.startswith("webcal")  # webcal:// is an ICS address
    ],
)
async def test_console_refuses_internal_calendar_urls(
    hub,
    console,  # noqa: F811
    internal,
    kind,
    url,
    reason,
):
    alice = await console("alice")
    url = url.format(port=internal.port)
    r = await alice.post(
        "/console/calendars/add", {"kind": kind, "account": "acme", "name": "X", "url": url}
    )
    assert r.status_code == 422, r.text
    assert "calendar URL refused: " in r.text and reason in r.text, r.text
    assert "--allow-private" in r.text
    with session_scope(hub.engine) as s:
        assert s.exec(select(Calendar)).all() == []
    assert internal.requests == []


async def test_console_cannot_set_private_ok(hub, console, internal):  # noqa: F811
    alice = await console("alice")
    url = f"http://127.0.0.1:{internal.port}/cal.ics"
    for more in ("private_ok=true", "private_ok = 1"):
        r = await alice.post(
            "/console/calendars/add",
            {"kind": "ics", "account": "acme", "name": "X", "url": url, "more": more},
        )
        assert r.status_code == 422 and "only the hub administrator can set it" in r.text
    with session_scope(hub.engine) as s:
        assert s.exec(select(Calendar)).all() == []


async def test_sync_refuses_a_stored_internal_url_and_the_console_shows_why(
    hub,
    console,  # noqa: F811
    internal,
):
    # Stored before the guard (or by a name that resolved elsewhere then): every sync checks.
    url = f"http://127.0.0.1:{internal.port}/cal.ics"
    with session_scope(hub.engine) as s:
        acme = int(get_account(s, "acme").id or 0)
        calendar = Calendar(
            account_id=acme, name="Old", source_type="ics", settings=json.dumps({"url": url})
        )
        s.add(calendar)
        s.flush()
        calendar_id = calendar.id
    alice = await console("alice")
    r = await alice.post(f"/console/calendars/{calendar_id}/sync")
    assert r.status_code == 303
    page = await alice.get(r.headers["location"])
    assert "calendar URL refused: 127.0.0.1 is a loopback address" in page.text
    assert internal.requests == []
    with session_scope(hub.engine) as s:
        stored = s.get(Calendar, calendar_id)
        assert stored is not None
        assert stored.last_error.startswith("calendar URL refused: 127.0.0.1 is a loopback")
    page = await alice.get(f"/console/calendars/{calendar_id}")
    assert "Last error" in page.text and "a loopback address" in page.text


# ---- the administrator (CLI) may allow a private target --------------------------------------
def test_cli_add_refuses_a_private_url_unless_allowed(
    db_url, engine, account, tmp_path, internal, monkeypatch
):
    from typer.testing import CliRunner

    from hub.cli import main as cli

    cfg = tmp_path / "smshub.toml"
    cfg.write_text(
        f'[hub]\ndata_dir = "{tmp_path}"\n[database]\nurl = "{db_url}"\n'
        '[providers.simulator]\ntype = "simulator"\nreport_delay = 3600\n'
    )
    monkeypatch.setenv("SMSHUB_CONFIG", str(cfg))
    runner = CliRunner()

    def run(*args: str) -> Any:
        cli._state.clear()
        return runner.invoke(cli.app, list(args))

    url = f"http://127.0.0.1:{internal.port}/cal.ics"
    refused = run("calendars", "add", "acme", "cab", "--type", "ics", "--set", f"url={url}")
    assert refused.exit_code == 1
    assert "calendar URL refused: 127.0.0.1 is a loopback address" in refused.stderr
    assert "--allow-private" in refused.stderr
    allowed = run(
        "calendars", "add", "acme", "cab", "--type", "ics", "--set", f"url={url}",
        "--allow-private",
    )  # fmt: skip
    assert allowed.exit_code == 0, allowed.stderr
    synced = run("calendars", "sync", "acme", "cab")
    assert synced.exit_code == 0, synced.stderr
    assert [r[0] for r in internal.requests] == ["GET"]
    with session_scope(engine) as s:
        [calendar] = s.exec(select(Calendar)).all()
        assert json.loads(calendar.settings)["private_ok"] is True


def test_add_calendar_checks_every_door(engine, account):
    # The shared function behind console and CLI: private_ok is the only way past.
    with session_scope(engine) as s, pytest.raises(OutboundRefused, match="169.254.169.254"):
        add_calendar(s, "acme", "m", "caldav", {"url": "http://169.254.169.254/dav/"})
    with session_scope(engine) as s:
        add_calendar(
            s, "acme", "m", "caldav", {"url": "http://169.254.169.254/dav/", "private_ok": "true"}
        )
    with session_scope(engine) as s, pytest.raises(InvalidInput, match="true or false"):
        add_calendar(s, "acme", "n", "ics", {"url": "http://127.0.0.1/", "private_ok": "maybe"})


# ---- ICS fetches: refused at every fetch, pinned to the checked address ----------------------
def _ics(url: str, tmp_path: Path, **extra: Any) -> IcsSource:
    settings = IcsSettings.model_validate({"type": "ics", "url": url, **extra})
    return IcsSource(settings, SourceContext("calendar 'x'", tmp_path))


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/cal.ics",
        "http://localhost:{port}/cal.ics",
        "http://[::ffff:127.0.0.1]:{port}/cal.ics",
        "http://169.254.169.254/latest/meta-data/",
    ],
)
async def test_ics_fetch_of_internal_url_is_refused(internal, tmp_path, url):
    source = _ics(url.format(port=internal.port), tmp_path)
    try:
        with pytest.raises(SourceError, match=r"^calendar URL refused: "):
            await source.sync(WINDOW, None)
    finally:
        await source.close()
    assert internal.requests == []


async def test_ics_private_ok_reaches_a_local_server(internal, tmp_path):
    source = _ics(f"http://localhost:{internal.port}/cal.ics", tmp_path, private_ok=True)
    try:
        result = await source.sync(WINDOW, None)
    finally:
        await source.close()
    assert result.full and internal.requests == [("GET", "/cal.ics", f"localhost:{internal.port}")]


async def test_dns_rebinding_cannot_move_an_httpx_connection():
    # The check sees a public address, a second lookup would say 127.0.0.1: there is none.
    dns = Rebinding(["93.184.216.34"], ["127.0.0.1"])
    network = Recording()
    async with guarded_async_client(Guard(resolver=dns), inner=network) as client:
        r = await client.get("http://calendar.rebind.example:8080/cal.ics")
    assert r.status_code == 200
    assert dns.calls == ["calendar.rebind.example"]
    assert network.connected == [("93.184.216.34", 8080)]


async def test_dns_rebinding_against_a_real_local_server(internal):
    # Public for the check, loopback afterwards: the local server must see nothing.
    dns = Rebinding(["93.184.216.34"], ["127.0.0.1"])
    async with guarded_async_client(Guard(resolver=dns), timeout=2.0) as client:
        with pytest.raises(httpx.HTTPError):
            await client.get(f"http://rebind.example:{internal.port}/cal.ics")
    assert dns.calls == ["rebind.example"]
    assert internal.requests == []


async def test_the_connection_keeps_the_name_for_host_and_tls(internal):
    # An administrator's private target, reached by a name only the guard's resolver knows:
    # the socket goes to the guard's answer, the Host header keeps the name.
    dns = Rebinding(["127.0.0.1"], ["127.0.0.2"])
    async with guarded_async_client(Guard(allow_private=True, resolver=dns)) as client:
        r = await client.get(f"http://cal.internal.test:{internal.port}/cal.ics")
    assert r.status_code == 200
    assert dns.calls == ["cal.internal.test"]
    assert internal.requests == [("GET", "/cal.ics", f"cal.internal.test:{internal.port}")]


async def test_each_redirect_is_checked_again(internal):
    # A public server answering with a redirect to the internal one.
    to_internal = (
        f"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{internal.port}/cal.ics\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    network = Recording(to_internal)
    dns = Rebinding(["93.184.216.34"])
    client = guarded_async_client(Guard(resolver=dns), inner=network, follow_redirects=True)
    async with client:
        with pytest.raises(OutboundRefused, match="127.0.0.1 is a loopback address"):
            await client.get("http://public.example/cal.ics")
    assert network.connected == [("93.184.216.34", 80)]
    assert internal.requests == []


# ---- CalDAV (niquests) -----------------------------------------------------------------------
def _caldav(url: str, tmp_path: Path, **extra: Any) -> CalDavSource:
    settings = CalDavSettings.model_validate({"type": "caldav", "url": url, "timeout": 5, **extra})
    return CalDavSource(settings, SourceContext("calendar 'x'", tmp_path))


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/dav/",
        "http://localhost:{port}/dav/",
        "http://[64:ff9b::7f00:1]:{port}/dav/",
        "http://169.254.169.254/dav/",
    ],
)
async def test_caldav_to_internal_url_is_refused(internal, tmp_path, url):
    source = _caldav(url.format(port=internal.port), tmp_path)
    try:
        with pytest.raises(SourceError, match=r"^calendar URL refused: "):
            await source.sync(WINDOW, None)
    finally:
        await source.close()
    assert internal.requests == []


def test_dns_rebinding_cannot_move_a_niquests_connection(internal):
    dns = Rebinding(["93.184.216.34"], ["127.0.0.1"])
    resolver = GuardResolver(Guard(resolver=dns))
    answer = resolver.getaddrinfo("rebind.example", 443, socket.AF_UNSPEC, socket.SOCK_STREAM)
    assert [entry[4] for entry in answer] == [("93.184.216.34", 443)]
    # Through a session: the connection goes to the checked (public) address, which the
    # test machine cannot reach; the internal server sees nothing.
    dns = Rebinding(["93.184.216.34"], ["127.0.0.1"])
    session = guarded_session(Guard(resolver=dns))
    with pytest.raises(Exception) as info:  # noqa: B017, PT011  (the library's connect error)
        session.get(f"http://rebind.example:{internal.port}/dav/", timeout=2)
    assert not isinstance(info.value, OutboundRefused)
    assert dns.calls == ["rebind.example"]
    assert internal.requests == []


def test_niquests_connects_to_the_guards_answer(internal):
    dns = Rebinding(["127.0.0.1"], ["127.0.0.2"])
    session = guarded_session(Guard(allow_private=True, resolver=dns))
    r = session.get(f"http://dav.internal.test:{internal.port}/dav/", timeout=5)
    assert r.status_code == 200
    assert dns.calls == ["dav.internal.test"]
    assert internal.requests == [("GET", "/dav/", f"dav.internal.test:{internal.port}")]


async def test_caldav_refusals_show_and_log_no_response_body(failing, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    source = _caldav(f"http://127.0.0.1:{failing.port}/dav/cal/", tmp_path, private_ok=True)
    try:
        with pytest.raises(SourceError) as info:
            await source.sync(WINDOW, None)
    finally:
        await source.close()
    assert failing.requests, "the server was asked"
    assert SECRET.decode() not in str(info.value)
    assert SECRET.decode() not in caplog.text


# ---- webhooks --------------------------------------------------------------------------------
async def test_console_webhook_to_localhost_is_not_posted(engine, account, internal):
    with session_scope(engine) as s:
        endpoint, _ = webhooks.add_endpoint(
            s, "acme", f"http://localhost:{internal.port}/hook", private_ok=False
        )
        webhooks.queue_ping(s, int(endpoint.id or 0))
    sender = webhooks.WebhookSender(engine)
    try:
        assert await sender.send_due() == 0
    finally:
        await sender.stop()
    assert internal.requests == []
    with session_scope(engine) as s:
        [row] = s.exec(select(WebhookDelivery)).all()
        assert re.match(r"not sent: localhost resolves to \S+, a loopback address", row.last_error)


async def test_webhook_dns_rebinding_posts_to_the_checked_address(engine, account, internal):
    with session_scope(engine) as s:
        endpoint, _ = webhooks.add_endpoint(
            s, "acme", f"http://hooks.rebind.example:{internal.port}/hook", private_ok=False
        )
        webhooks.queue_ping(s, int(endpoint.id or 0))
    dns = Rebinding(["93.184.216.34"], ["127.0.0.1"])
    network = Recording()
    sender = webhooks.WebhookSender(engine, resolver=dns, network=network)
    try:
        assert await sender.send_due() == 1
    finally:
        await sender.stop()
    assert dns.calls == ["hooks.rebind.example"]
    assert network.connected == [("93.184.216.34", internal.port)]
    assert internal.requests == []


async def test_admin_webhook_private_ok_reaches_the_local_receiver(engine, account, internal):
    with session_scope(engine) as s:
        endpoint, _ = webhooks.add_endpoint(
            s, "acme", f"http://localhost:{internal.port}/hook", private_ok=True
        )
        webhooks.queue_ping(s, int(endpoint.id or 0))
    sender = webhooks.WebhookSender(engine)
    try:
        assert await sender.send_due() == 1
    finally:
        await sender.stop()
    assert [r[:2] for r in internal.requests] == [("POST", "/hook")]


def test_guard_errors_are_hub_errors():
    assert issubclass(OutboundRefused, HubError) and issubclass(OutboundRefused, InvalidInput)
    assert issubclass(guard.LookupFailed, HubError)
