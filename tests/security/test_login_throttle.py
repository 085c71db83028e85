"""One login throttle for the console and SMTP AUTH, in SQL; password checks off the loop.

Before: 30 wrong SMTP passwords on one connection, then the right one, logged in; ten
wrong console tries from anyone locked the real user out for 15 minutes; unknown users
cost two scrypt runs (timing told which names exist); scrypt ran on the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import smtplib
import ssl
import statistics
import subprocess
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import select

from hub.app import Hub
from hub.mail.intake.addresses import add_mail_user, check_login
from hub.mail.intake.passwords import hash_password, verify_password
from hub.mail.intake.policy import IntakePolicy
from hub.mail.intake.smtp import start_smtp
from hub.store.db import read_scope, session_scope
from hub.store.login_throttle import LoginThrottle
from hub.store.models import MailUser
from tests.conftest import MakeHub, make_config

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def tls_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for STARTTLS (AUTH is offered only after it)."""
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
        + ["-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return str(cert), str(key)


async def _smtp_hub(
    make_hub: MakeHub,
    db_url: str,
    tmp_path: Path,
    engine: Engine,
    tls: tuple[str, str],
    **console: Any,
) -> tuple[Hub, Any, int]:
    config = make_config(
        db_url,
        tmp_path,
        smtp={"tls_cert_file": tls[0], "tls_key_file": tls[1]},
        console=console,
    )
    with session_scope(engine) as s:
        add_mail_user(s, "acme", "reception", PASSWORD)
    hub = await make_hub(config=config)
    server = await start_smtp(IntakePolicy(engine, config), config, port=0)
    return hub, server, server.sockets[0].getsockname()[1]


@pytest.fixture
async def smtp(
    db_url: str,
    tmp_path: Path,
    engine: Engine,
    account: str,
    tls_pair: tuple[str, str],
    make_hub: MakeHub,
) -> AsyncIterator[tuple[Hub, int]]:
    hub, server, port = await _smtp_hub(make_hub, db_url, tmp_path, engine, tls_pair)
    yield hub, port
    server.close()
    await server.wait_closed()
    await hub.stop()


def _connect(port: int) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", port, timeout=20)
    client.starttls(context=ssl._create_unverified_context())  # noqa: S323 (self-signed)
    client.ehlo()
    return client


def _try(client: smtplib.SMTP, password: str) -> tuple[int, str]:
    # One AUTH PLAIN (smtplib's login() would try LOGIN too after a failed PLAIN).
    client.user, client.password = "reception", password
    try:
        code, text = client.auth("PLAIN", client.auth_plain, initial_response_ok=True)
        if code != 235:
            return code, text.decode()
    except smtplib.SMTPAuthenticationError as exc:
        return exc.smtp_code, exc.smtp_error.decode()
    except smtplib.SMTPServerDisconnected:
        return 0, "disconnected"
    return 235, "ok"


async def test_smtp_wrong_passwords_then_the_right_one_on_one_connection(smtp):
    _, port = smtp

    def go() -> list[tuple[int, str]]:
        client = _connect(port)
        answers = []
        for i in range(30):
            answers.append(_try(client, f"wrong password {i}"))
            if answers[-1][0] in (0, 421):
                break
        answers.append(_try(client, PASSWORD))
        return answers

    answers = await asyncio.to_thread(go)
    # The connection is closed after 3 failures; the right password never gets in on it.
    assert [code for code, _ in answers[:2]] == [535, 535]
    assert answers[2][0] in (0, 421)
    assert answers[-1][0] != 235


async def test_smtp_guessing_across_connections_is_slowed_then_heals(smtp):
    _, port = smtp

    def go() -> tuple[list[tuple[int, str]], tuple[int, str]]:
        answers = []
        for i in range(5):
            with _connect(port) as client:
                answers.append(_try(client, f"wrong password {i}"))
        with _connect(port) as client:
            right = _try(client, PASSWORD)
        return answers, right

    answers, right = await asyncio.to_thread(go)
    assert all(code == 535 for code, _ in answers)
    # After 5 failures the next try waits (unchecked), answered 454 (a retry can succeed).
    assert right[0] == 454
    assert re.search(r"too many failed logins, try again in \d+ s", right[1])
    await asyncio.sleep(1.1)

    def again() -> tuple[int, str]:
        with _connect(port) as client:
            return _try(client, PASSWORD)

    assert await asyncio.to_thread(again) == (235, "ok")


async def test_console_and_smtp_share_the_throttle_across_instances(
    db_url, tmp_path, engine, account, tls_pair, make_hub
):
    # Two hubs on one database (two instances): failures on one slow the other.
    first, server1, port1 = await _smtp_hub(make_hub, db_url, tmp_path / "a", engine, tls_pair)
    config2 = make_config(db_url, tmp_path / "b")
    second = await make_hub(config=config2)
    try:

        def guess() -> None:
            for i in range(5):
                with _connect(port1) as client:
                    assert _try(client, f"wrong {i}")[0] == 535

        transport = httpx.ASGITransport(app=second.api, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as http:
            # The login form first: the 5th failure slows the next try for 1 s only, and the
            # second hub's first page (its routes and templates built) can take longer than
            # that on a loaded machine; the post alone then follows the failures at once.
            form = await _login_form(http)
            await asyncio.to_thread(guess)
            r = await _post_login(http, form, "reception", PASSWORD)
        assert r.status_code == 429
        assert re.search(r"try again in \d+ s", r.text)
        assert int(r.headers["retry-after"]) >= 1
    finally:
        server1.close()
        await server1.wait_closed()
        await first.stop()
        await second.stop()


async def _login_form(http: httpx.AsyncClient) -> str:
    """The console login form's CSRF token."""
    form = await http.get("/console/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token, form.text
    return token.group(1)


async def _post_login(http: httpx.AsyncClient, csrf: str, username: str, password: str) -> Any:
    return await http.post(
        "/console/login",
        data={"username": username, "password": password, "csrf_token": csrf},
    )


async def _console_login(http: httpx.AsyncClient, username: str, password: str) -> Any:
    return await _post_login(http, await _login_form(http), username, password)


async def test_console_guessing_from_one_address_does_not_lock_out_the_user(hub, engine, account):
    with session_scope(engine) as s:
        add_mail_user(s, "acme", "alice", PASSWORD)
    attacker = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=hub.api, client=("203.0.113.66", 50000)),
        base_url="http://hub",
    )
    victim = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=hub.api, client=("198.51.100.7", 50001)),
        base_url="http://hub",
    )
    async with attacker, victim:
        statuses = [
            (await _console_login(attacker, "alice", f"guess {i}")).status_code for i in range(12)
        ]
        # Five wrong answers, then every try is answered "wait" without a check.
        assert statuses[:5] == [401] * 5
        assert set(statuses[5:]) == {429}
        slowed = await _console_login(attacker, "alice", PASSWORD)
        assert slowed.status_code == 429
        # The real user, from their own address, is not locked out.
        r = await _console_login(victim, "alice", PASSWORD)
        assert r.status_code == 303, r.text


def _median_seconds(fn: Any, runs: int = 7) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def test_unknown_and_disabled_users_cost_the_same_as_known_ones(engine, account):
    with session_scope(engine) as s:
        add_mail_user(s, "acme", "known", PASSWORD)
        add_mail_user(s, "acme", "gone", PASSWORD)
        gone = s.exec(select(MailUser).where(MailUser.username == "gone")).one()
        gone.disabled = True

    def check(name: str) -> None:
        with read_scope(engine) as s:
            assert check_login(s, name, "wrong password!") is None

    # Exactly one scrypt run each (the cause), ...
    calls: list[int] = []
    real = hashlib.scrypt

    def counting(*args: Any, **kwargs: Any) -> bytes:
        calls.append(1)
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(hashlib, "scrypt", counting)
        for name in ("known", "nobody", "gone"):
            calls.clear()
            check(name)
            assert len(calls) == 1, name
    # ... and so the same time (interleaved, the fastest of several runs: the cost itself,
    # not the shared machine's noise; measured again when the noise won).
    for _ in range(3):
        runs: dict[str, list[float]] = {"known": [], "nobody": [], "gone": []}
        for _ in range(11):
            for name, times in runs.items():
                start = time.perf_counter()
                check(name)
                times.append(time.perf_counter() - start)
        known, unknown, disabled = (min(runs[n]) for n in ("known", "nobody", "gone"))
        if max(abs(unknown - known), abs(disabled - known)) / known < 0.25:
            break
    assert abs(unknown - known) / known < 0.25, (known, unknown)
    assert abs(disabled - known) / known < 0.25, (known, disabled)


def test_throttle_counts_per_user_name_and_per_address(engine, account):
    with session_scope(engine) as s:
        add_mail_user(s, "acme", "bob", PASSWORD)
    throttle = LoginThrottle(engine, free_failures=5, max_delay=60.0)
    now = 900.0 * 2_000_000  # the start of a 15-minute window
    for i in range(7):
        assert throttle.attempt("bob", "nope", "192.0.2.1", now=now + i * 10).login is None
    # 7 failures: the address waits 2^(7-5) = 4 s after its last failure (at +60 s).
    assert throttle.wait("bob", "192.0.2.1", now=now + 61) == pytest.approx(3.0)
    assert throttle.attempt("bob", PASSWORD, "192.0.2.1", now=now + 61).throttled
    # Another address that never failed is not slowed by bob's failures...
    assert throttle.wait("bob", "192.0.2.2", now=now + 61) == 0
    # ... one that failed once (for anyone) is, and after a quiet half hour nobody is.
    throttle.failed("carol", "192.0.2.3", now=now + 60)
    assert throttle.wait("bob", "192.0.2.3", now=now + 61) == pytest.approx(3.0)
    assert throttle.wait("bob", "192.0.2.1", now=now + 1800) == 0
    assert throttle.attempt("bob", PASSWORD, "192.0.2.2", now=now + 61).login is not None


async def test_password_checks_do_not_block_the_event_loop(smtp):
    hub, port = smtp
    hub.config.console.max_failed_logins = 10_000  # every guess is checked (scrypt)
    scrypt = _median_seconds(lambda: verify_password("x", hash_password("y")) or None, 3) / 2
    stop = threading.Event()

    def guesser() -> None:
        while not stop.is_set():
            with _connect(port) as client:
                for i in range(3):
                    if _try(client, f"wrong {i}")[0] in (0, 421):
                        break

    transport = httpx.ASGITransport(app=hub.api)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as http:
        idle = [await _latency(http) for _ in range(5)]
        threads = [threading.Thread(target=guesser, daemon=True) for _ in range(3)]
        for t in threads:
            t.start()
        await asyncio.sleep(0.5)
        # The loop's own lag: a 5 ms sleep that overshoots while scrypt holds the loop.
        lags = []
        for _ in range(40):
            start = time.perf_counter()
            await asyncio.sleep(0.005)
            lags.append(time.perf_counter() - start - 0.005)
        busy = [await _latency(http) for _ in range(10)]
        stop.set()
        for t in threads:
            await asyncio.to_thread(t.join, 30)
    # Without the fix, each check holds the loop for one scrypt run (tens of ms).
    assert statistics.median(lags) < scrypt / 2, (lags, scrypt)
    assert statistics.median(busy) < max(4 * statistics.median(idle), scrypt), (idle, busy)


async def _latency(http: httpx.AsyncClient) -> float:
    start = time.perf_counter()
    r = await http.get("/healthz")
    assert r.status_code == 200
    return time.perf_counter() - start
