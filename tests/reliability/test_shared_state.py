"""One truth, in SQL: what one instance stores for a connector, another one uses.

Each "instance" is a Hub with a data directory of its own on the same database (SQLite and
PostgreSQL): nothing another instance needs may be on the first one's disk.
"""

from __future__ import annotations

import json
import logging
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import select
from typer.testing import CliRunner

from connectors.sms.smpp import PartRef, SmppState
from hub.app import Hub
from hub.cli import main as cli
from hub.errors import ConfigError, HubError, SecretUnreadable
from hub.ports.sms import DeliveryReport, DeliveryState
from hub.reminders.sync import sync_calendar
from hub.store.db import session_scope
from hub.store.models import Calendar, ConnectorState
from hub.store.secretbox import KEY_ENV, Keyring, load_keyring, new_key
from hub.store.state_sql import SqlStateStore, rotate_secrets, state_store
from tests import test_smpp
from tests.conftest import MakeHub, make_config
from tests.console import conftest as console_conftest
from tests.servers.radicale import RadicaleServer, radicale_fixture  # noqa: F401
from tests.test_smpp import provider_on, sms

# Fixtures of other test modules, used here (a fixture is found by its variable's name).
console = console_conftest.console
users = console_conftest.users
smsc = test_smpp.smsc
proxy = test_smpp.proxy


def _event_in(days: int) -> str:
    start = (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0)
    stamp = start.strftime("%Y%m%dT%H%M%SZ")
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//smshub tests//EN\r\nBEGIN:VEVENT\r\n"
        f"UID:rdv-jeanne@cabinet\r\nDTSTAMP:20250301T000000Z\r\nDTSTART:{stamp}\r\n"
        "SUMMARY:RDV Jeanne Durand\r\nDESCRIPTION:Tel: 06 12 34 56 78\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )


async def other_instance(make_hub: MakeHub, config: Any, data_dir: Path, engine: Engine) -> Hub:
    """Another hub on the same database, with its own data directory (another machine)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    copy = config.model_copy(deep=True)
    copy.hub.data_dir = data_dir
    return await make_hub(config=copy, engine=engine, start=False)


def _last_error(engine: Engine, calendar_id: int) -> str:
    with session_scope(engine) as s:
        calendar = s.get(Calendar, calendar_id)
        assert calendar is not None
        return calendar.last_error


async def test_a_console_caldav_calendar_syncs_from_another_instance(
    hub,
    console,
    radicale: RadicaleServer,
    tmp_path,
    monkeypatch,  # noqa: F811
    make_hub: MakeHub,
):
    monkeypatch.setenv(KEY_ENV, new_key())
    calendar = radicale.make_calendar("Cabinet")
    radicale.put_event(calendar, _event_in(3), "jeanne.ics")
    # Radicale runs on 127.0.0.1, which the console refuses (tests/security/
    # test_outbound_guard.py): here the administrator has let this server through.
    monkeypatch.setattr("hub.reminders.setup.check_calendar_url", lambda kind, settings: None)
    alice = await console("alice")
    r = await alice.post(
        "/console/calendars/add",
        {
            "kind": "caldav",
            "account": "acme",
            "name": "Cabinet",
            "url": str(calendar.url),
            "username": radicale.user,
            "password": radicale.password,
        },
    )
    assert r.status_code == 303, r.text
    calendar_id = int(r.headers["location"].rsplit("/", 1)[1])
    with session_scope(hub.engine) as s:
        row = s.get(Calendar, calendar_id)
        row.settings = json.dumps({**json.loads(row.settings), "private_ok": True})
        s.add(row)
    # Nothing of it on instance A's disk.
    assert not (hub.config.hub.data_dir / "secrets").exists()

    b = await other_instance(make_hub, hub.config, tmp_path / "b", hub.engine)
    report = await sync_calendar(b.engine, b.config, calendar_id, store=b.state)
    assert (report.seen, report.planned) == (1, 1)
    assert _last_error(hub.engine, calendar_id) == ""

    # An instance given another key: the calendar says what to fix.
    monkeypatch.setenv(KEY_ENV, new_key())
    c = await other_instance(make_hub, hub.config, tmp_path / "c", hub.engine)
    with pytest.raises(HubError, match="could not be read: the stored password could not"):
        await sync_calendar(c.engine, c.config, calendar_id, store=c.state)
    assert _last_error(hub.engine, calendar_id).startswith(
        f"the stored password could not be decrypted: {KEY_ENV} differs from the one that stored it"
    )
    # No key configured: its own generated key does not fit either, and it says so.
    monkeypatch.delenv(KEY_ENV)
    d = await other_instance(make_hub, hub.config, tmp_path / "d", hub.engine)
    with pytest.raises(HubError):
        await sync_calendar(d.engine, d.config, calendar_id, store=d.state)
    assert (
        f"the generated key file {tmp_path / 'd' / 'secret.key'} differs from the one that "
        "stored it" in _last_error(hub.engine, calendar_id)
    )


async def test_a_password_file_of_another_machine_is_told_on_the_calendar(hub, account, tmp_path):
    """Before: a console password file missing on the syncing machine failed every minute
    with last_error empty."""
    from hub.reminders.setup import add_calendar

    missing = tmp_path / "elsewhere" / "secrets" / "caldav-1-0123456789abcdef.secret"
    with session_scope(hub.engine) as s:
        cal = add_calendar(
            s,
            "acme",
            "Agenda",
            "caldav",
            {
                "url": "http://127.0.0.1:9/dav/",
                "username": "u",
                "password_file": str(missing),
                "private_ok": True,
            },
        )
        calendar_id = int(cal.id or 0)
    with pytest.raises(HubError):
        await sync_calendar(hub.engine, hub.config, calendar_id, store=hub.state)
    assert f"cannot read {missing}" in _last_error(hub.engine, calendar_id)


async def test_a_console_password_file_of_an_earlier_build_moves_into_the_database(
    hub, account, radicale: RadicaleServer, caplog
):
    from hub.reminders.setup import add_calendar, write_secret_file

    calendar = radicale.make_calendar("Cabinet")
    radicale.put_event(calendar, _event_in(2), "jeanne.ics")
    folder = hub.config.hub.data_dir / "secrets"
    folder.mkdir()
    old = folder / "caldav-1-0123456789abcdef.secret"
    write_secret_file(old, radicale.password)
    settings = {
        "url": str(calendar.url),
        "username": radicale.user,
        "password_file": str(old),
        "private_ok": True,  # Radicale runs on 127.0.0.1: the administrator's allowance
    }
    with session_scope(hub.engine) as s:
        calendar_id = int(add_calendar(s, "acme", "Agenda", "caldav", settings).id or 0)
    caplog.set_level(logging.INFO, logger="smshub.calendars")
    report = await sync_calendar(hub.engine, hub.config, calendar_id, store=hub.state)
    assert report.seen == 1
    assert not old.exists()
    assert f"moved its password from {old} into the database" in caplog.text
    with session_scope(hub.engine) as s:
        stored = json.loads(s.get(Calendar, calendar_id).settings)
    assert stored["stored_secrets"] == ["password"] and "password_file" not in stored
    assert hub.state.get_secret(f"calendar-{calendar_id}", "password") == radicale.password


# -- the store and its key ----------------------------------------------------------------------
def test_secrets_are_encrypted_and_rotation_reencrypts_them(engine, tmp_path):
    first, second = new_key(), new_key()
    store = SqlStateStore(engine, lambda: Keyring((first,), KEY_ENV))
    store.put_secret("calendar-1", "password", "app-password-123")
    store.put("calendar-1", "note", {"plain": True})
    with session_scope(engine) as s:
        rows = {r.key: r for r in s.exec(select(ConnectorState)).all()}
    assert "app-password-123" not in rows["password"].value and rows["password"].secret
    assert json.loads(rows["note"].value) == {"plain": True}
    before = rows["password"].value

    # New key first, old after: everything still reads; rotate re-encrypts under the new one.
    both = Keyring((second, first), KEY_ENV)
    assert SqlStateStore(engine, lambda: both).get_secret("calendar-1", "password")
    report = rotate_secrets(engine, both)
    assert (report.rotated, report.unreadable) == (1, [])
    with session_scope(engine) as s:
        after = s.get(ConnectorState, ("calendar-1", "password")).value
    assert after != before and "app-password-123" not in after
    # The old key can go: the new one alone reads it; the old one alone no longer does.
    only_new = SqlStateStore(engine, lambda: Keyring((second,), KEY_ENV))
    assert only_new.get_secret("calendar-1", "password") == "app-password-123"
    only_old = SqlStateStore(engine, lambda: Keyring((first,), "the key file /etc/k"))
    with pytest.raises(SecretUnreadable, match="the key file /etc/k differs from the one"):
        only_old.get_secret("calendar-1", "password")
    assert rotate_secrets(engine, Keyring((first,), "x")).unreadable == [("calendar-1", "password")]


def test_smshub_secrets_rotate(db_url, tmp_path, monkeypatch):
    first, second = new_key(), new_key()
    config = make_config(db_url, tmp_path)
    monkeypatch.setenv(KEY_ENV, first)
    from hub.store.db import make_engine

    engine = make_engine(db_url)
    state_store(engine, config).put_secret("calendar-7", "refresh_token", "1//tok")
    cfg = tmp_path / "smshub.toml"
    cfg.write_text(f'[hub]\ndata_dir = "{tmp_path}"\n[database]\nurl = "{db_url}"\n')
    monkeypatch.setenv("SMSHUB_CONFIG", str(cfg))
    monkeypatch.setenv(KEY_ENV, f"{second},{first}")
    cli._state.clear()
    result = CliRunner().invoke(cli.app, ["secrets", "rotate", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rotated"] == 1
    monkeypatch.setenv(KEY_ENV, second)
    assert state_store(engine, config).get_secret("calendar-7", "refresh_token") == "1//tok"
    # A key that stored nothing here: listed, exit 1.
    monkeypatch.setenv(KEY_ENV, new_key())
    cli._state.clear()
    result = CliRunner().invoke(cli.app, ["secrets", "rotate"])
    assert result.exit_code == 1 and "cannot decrypt refresh_token of calendar-7" in result.stdout
    engine.dispose()


def test_the_key_comes_from_the_environment_a_file_or_is_generated(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv(KEY_ENV, raising=False)
    config = make_config("sqlite://", tmp_path)
    generated = load_keyring(config)
    path = tmp_path / "secret.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert f"set {KEY_ENV}" in caplog.text and "several instances" in caplog.text
    assert load_keyring(config) == generated  # read again, not made again
    named = tmp_path / "etc.key"
    named.write_text(f"{new_key()}\n{new_key()}\n")
    config.hub.secret_key_file = str(named)
    assert len(load_keyring(config).keys) == 2
    monkeypatch.setenv(KEY_ENV, "not-a-key")
    with pytest.raises(ConfigError, match="key 1 is not a Fernet key"):
        load_keyring(config)


def test_expiring_entries_and_take(engine):
    store = SqlStateStore(engine, lambda: Keyring((new_key(),), KEY_ENV))
    store.put("console-signin", "flow-a", {"v": 1}, ttl=0.05)
    store.put("console-signin", "flow-b", {"v": 2}, ttl=3600)
    assert store.take("console-signin", "flow-b") == {"v": 2}
    assert store.take("console-signin", "flow-b") is None  # taken once
    time.sleep(0.1)
    assert store.get("console-signin", "flow-a") is None
    assert store.prune() == 1
    with session_scope(engine) as s:
        assert s.exec(select(ConnectorState)).all() == []


# -- SMPP ---------------------------------------------------------------------------------------
async def test_receipts_for_parts_resolve_on_another_instance(
    smsc,
    proxy,
    engine,
    tmp_path,  # noqa: F811
):
    """Instance A submits a long message and goes away; the SMSC delivers the receipts of
    its parts on instance B's bind (another data directory, same database)."""
    text = "x" * 152 + "€" + "y" * 150 + "[" + "z" * 60
    store = state_store(engine, make_config("sqlite://", tmp_path))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with provider_on(proxy.port, tmp_path / "a", store=store) as (provider, sink):
        await provider.send(sms(text, mid="long"))
        [received] = smsc.received()
        assert len(received.parts) == 3
        await smsc.send_receipt(received.message_ids[0])
        assert sink.events == []
    assert list((tmp_path / "a").glob("smpp-*.jsonl")) == []
    other = state_store(engine, make_config("sqlite://", tmp_path / "b"))
    async with provider_on(proxy.port, tmp_path / "b", store=other) as (provider, sink):
        await smsc.send_receipt(received.message_ids[2])
        assert sink.events == []
        await smsc.send_receipt(received.message_ids[1])
        [report] = sink.events
    assert isinstance(report, DeliveryReport)
    assert (report.state, report.message_id, report.detail) == (
        DeliveryState.DELIVERED,
        "long",
        "all 3 parts delivered",
    )


async def test_the_smpp_state_file_of_an_earlier_build_moves_into_the_database(
    smsc,
    proxy,
    engine,
    tmp_path,  # noqa: F811
):
    legacy = tmp_path / "smpp-smpp.jsonl"
    old = SmppState(legacy, receipt_window=3600, mo_timeout=3600)
    old.load()
    now = time.time()
    for i, pid in enumerate(["p1", "p2"]):
        old.remember(pid, PartRef("earlier", "p1", i, 2, now))
    old.set_part_state("p1", "DELIVRD")
    old.close()
    store = state_store(engine, make_config("sqlite://", tmp_path))
    async with provider_on(proxy.port, tmp_path, store=store) as (_, sink):
        assert not legacy.exists()
        await smsc.send_receipt("p2")
        [report] = sink.events
    assert isinstance(report, DeliveryReport)
    assert (report.message_id, report.state) == ("earlier", DeliveryState.DELIVERED)
