"""Shared pytest configuration: every database test runs on SQLite and on PostgreSQL.

PostgreSQL is used when SMSHUB_TEST_DATABASE_URL is set (`make test` sets it when the
server answers; with CI=true an unreachable server fails the run). Each test session gets
its own PostgreSQL database, emptied between tests, so runs never see each other's rows.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel

import hub.store.models  # noqa: F401  (registers the tables)
from hub.core import i18n
from hub.core.config import Config, parse_config
from hub.store.db import make_engine, session_scope, upgrade

if TYPE_CHECKING:
    from hub.app import Hub

# Fixtures of the real servers, available to every test module.
pytest_plugins = [
    "tests.servers.oauth_introspection",
    "tests.servers.smtp_sink",
    "tests.servers.radicale",
    "tests.servers.dns",
]


@pytest.fixture(autouse=True)
def _hub_language_reset() -> Iterator[None]:
    """A Hub sets the language of texts written for no account (SMTP refusals) process-wide,
    from its config: each test starts from the default again, whatever the previous one built."""
    i18n.set_hub_language(None)
    yield
    i18n.set_hub_language(None)


IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
PG_URL = os.environ.get("SMSHUB_TEST_DATABASE_URL", "")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])
# Every table, children first, so TRUNCATE empties them all between tests.
TABLES = [t.name for t in reversed(SQLModel.metadata.sorted_tables)]


def require_server(what: str, why: str) -> None:
    """A missing real server fails in CI and skips elsewhere."""
    message = f"{what} is not available: {why}"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating once is much faster)."""
    path = tmp_path_factory.mktemp("template") / "smshub.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


# Empties every table (children first, so no foreign key is ever violated) and sets each
# sequence used since the last reset back to its start, as TRUNCATE ... RESTART IDENTITY
# would, in one round trip. TRUNCATE of the 33 tables took ~120 ms per test on PostgreSQL
# (each table gets a new file, synced at commit): over the ~1,400 PostgreSQL tests that was
# minutes of the suite; DELETE on tables a test left (nearly) empty takes ~2 ms.
_PG_RESET = f"""DO $$
DECLARE t text; s record;
BEGIN
  FOREACH t IN ARRAY ARRAY[{", ".join(f"'{name}'" for name in TABLES)}] LOOP
    EXECUTE format('DELETE FROM %I', t);
  END LOOP;
  FOR s IN SELECT format('%I.%I', schemaname, sequencename) AS seq, start_value
           FROM pg_sequences
           WHERE schemaname = current_schema() AND last_value IS NOT NULL LOOP
    PERFORM setval(s.seq::regclass, s.start_value, false);
  END LOOP;
END $$"""


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session (each xdist worker has its own),
    dropped at the end."""
    if not PG_URL:
        pytest.skip("SMSHUB_TEST_DATABASE_URL is not set")
    import psycopg

    base = make_url(PG_URL)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"smshub_test_{worker}_{uuid.uuid4().hex[:10]}"
    admin_dsn = base.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        require_server("PostgreSQL", f"{PG_URL}: {exc}")
    url = base.set(drivername="postgresql+psycopg", database=name).render_as_string(
        hide_password=False
    )
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_resetter(pg_database: str) -> Iterator[Any]:
    """One connection for the session that empties its database between tests."""
    import psycopg

    dsn = make_url(pg_database).set(drivername="postgresql")
    with psycopg.connect(dsn.render_as_string(hide_password=False), autocommit=True) as conn:
        yield conn


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database (SQLite file or PostgreSQL), one per test."""
    if request.param == "sqlite":
        target = tmp_path / "smshub.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), target)
        return f"sqlite:///{target}"
    url: str = request.getfixturevalue("pg_database")
    request.getfixturevalue("pg_resetter").execute(_PG_RESET)
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def make_config(db_url: str, data_dir: Path, **overrides: Any) -> Config:
    """A test config: the given database, files in DATA_DIR; simulator reports wait for the
    test to flush them (a report loop racing the test would make it flaky)."""
    data: dict[str, Any] = {
        # English mails and SMS texts whatever the region (the tests read the English
        # texts; tests/test_i18n.py checks the French ones).
        "hub": {"data_dir": str(data_dir), "locale": "en"},
        "database": {"url": db_url},
        "dispatcher": {"poll_interval": 0.05, "retry_backoff_seconds": 0.01},
        "providers": {"simulator": {"type": "simulator", "report_delay": 3600.0}},
    }
    for section, values in overrides.items():
        if isinstance(values, dict) and isinstance(data.get(section), dict):
            data[section] = {**data[section], **values}
        else:
            data[section] = values
    return parse_config(data, "test config")


@pytest.fixture
def config(db_url: str, tmp_path: Path) -> Config:
    return make_config(db_url, tmp_path)


@pytest.fixture
def account(engine: Engine) -> str:
    """Account 'acme' (region FR) with 100 credits."""
    from hub.sending.accounts import create_account
    from hub.sending.credits import top_up

    with session_scope(engine) as session:
        create_account(session, "acme", region="FR")
        top_up(session, "acme", 100)
    return "acme"


class MakeHub(Protocol):
    """The ``make_hub`` factory's signature (see the fixture)."""

    async def __call__(
        self,
        *,
        config: Config | None = None,
        engine: Engine | None | Literal["test"] = "test",
        start: bool = True,
        background: bool = False,
        run_dispatcher: bool | None = None,
        **overrides: Any,
    ) -> Hub: ...


@pytest.fixture
async def make_hub(db_url: str, tmp_path: Path, engine: Engine) -> AsyncIterator[MakeHub]:
    """A factory of hubs on the test's database, every one stopped at teardown.

    Modelled on aiosmtpd's ``get_controller`` fixture: the test says what differs, the
    fixture owns the rest. ``await make_hub(providers={...}, smtp={...})`` builds the config
    with :func:`make_config` (each keyword a config section merged over the test defaults),
    or pass a ready ``config``. ``engine`` is the test's engine unless given (``None``: the
    hub opens its own from the config, disposed at teardown). The hub is started with its
    dispatcher driven by the test (``background=False``) unless ``start=False`` or
    ``background=True``; ``run_dispatcher`` is :meth:`Hub.start`'s ``dispatcher``. Hubs are
    stopped in reverse order of creation; a test may stop one itself where the order
    matters (``Hub.stop`` is idempotent).
    """
    from hub.app import Hub

    test_engine = engine
    made: list[tuple[Hub, bool]] = []

    async def factory(
        *,
        config: Config | None = None,
        engine: Engine | None | Literal["test"] = "test",
        start: bool = True,
        background: bool = False,
        run_dispatcher: bool | None = None,
        **overrides: Any,
    ) -> Hub:
        if config is None:
            config = make_config(db_url, tmp_path, **overrides)
        elif overrides:
            raise TypeError("make_hub: give either config or section overrides, not both")
        own_engine = engine is None
        instance = Hub(config, engine=test_engine if engine == "test" else engine)
        made.append((instance, own_engine))
        if start:
            await instance.start(dispatcher=run_dispatcher, background=background)
        return instance

    yield factory
    for instance, own_engine in reversed(made):
        await instance.stop()
        if own_engine:
            instance.engine.dispose()


@pytest.fixture
async def hub(config: Config, make_hub: MakeHub) -> Hub:
    """A started hub whose dispatcher the test drives (``await hub.dispatcher.drain()``)."""
    return await make_hub(config=config)


def refuse_unlink(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """Make deleting PATH fail as a file the hub may not delete does (other files go)."""
    unlink = Path.unlink

    def refuse(self: Path, missing_ok: bool = False) -> None:
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        unlink(self, missing_ok)

    monkeypatch.setattr(Path, "unlink", refuse)


def name_keyed_file(data_dir: Path, calendar: str, kind: str, settings: dict[str, Any]) -> Path:
    """Where a hub before calendar ids kept the first file the KIND source of the calendar
    named CALENDAR keeps (its cached copy, renewed token...): named after CALENDAR."""
    from hub.ports.calendar import SourceContext, calendar_source_name
    from hub.reminders.setup import source_state_files

    ctx = SourceContext(calendar_source_name(calendar), data_dir)
    return source_state_files(kind, settings)(ctx)[0].path
