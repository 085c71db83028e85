"""A calendar's secrets in the hub's state store: kept encrypted under the calendar's
namespace, named in its ``stored_secrets`` setting, given to its source at each sync.

Hubs before the store wrote the secrets typed in the console to files in DATA_DIR/secrets
and named them in ``password_file`` / ``refresh_token_file``: a sync on the machine holding
such a file moves it into the store (and deletes it); elsewhere the sync fails with an
error on the calendar saying where the file is.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from hub.core.config import read_secret
from hub.core.timeutil import utcnow
from hub.errors import ConfigError
from hub.ports.state import StateStore, calendar_namespace
from hub.store.db import read_scope, session_scope
from hub.store.models import Calendar, ConnectorState
from hub.store.secretbox import Keyring

log = logging.getLogger("smshub.calendars")

# The ``*_file`` settings the console wrote itself (DATA_DIR/secrets) in earlier builds.
CONSOLE_WRITTEN = ("password_file", "refresh_token_file")
CONSOLE_SECRETS_DIR = "secrets"


def stored_names(settings: dict[str, Any]) -> list[str]:
    """The names of the secrets SETTINGS say the store keeps."""
    names = settings.get("stored_secrets") or []
    return [str(n) for n in names] if isinstance(names, list) else []


def keep_secret_in(
    session: Session, keyring: Keyring, calendar_id: int, name: str, value: str
) -> None:
    """Store calendar CALENDAR_ID's secret NAME in SESSION's transaction, so that it is kept
    exactly when the calendar (or its change) is."""
    session.merge(
        ConnectorState(
            namespace=calendar_namespace(calendar_id),
            key=name,
            value=keyring.encrypt(value),
            secret=True,
            updated_at=utcnow(),
        )
    )


def calendar_secrets(settings: dict[str, Any]) -> dict[str, str]:
    """The secrets of ``*_env`` / ``*_file`` SETTINGS, by name (ConfigError naming what
    cannot be read)."""
    found: dict[str, str] = {}
    for key in list(settings):
        for suffix in ("_env", "_file"):
            if key.endswith(suffix):
                name = key[: -len(suffix)]
                value = read_secret(settings, name, "calendar settings")
                if value is not None:
                    found[name] = value
    return found


def resolve_secrets(
    settings: dict[str, Any], store: StateStore, calendar_id: int | None
) -> dict[str, str]:
    """The secrets of a calendar with SETTINGS, by name: those of ``*_env`` / ``*_file``
    settings and those in the store. ConfigError naming what is missing and what to do;
    SecretUnreadable when the store's copy cannot be decrypted."""
    found = calendar_secrets(settings)
    for name in stored_names(settings):
        value = None
        if calendar_id is not None:
            value = store.get_secret(calendar_namespace(calendar_id), name)
        if value is None:
            raise ConfigError(
                f"the calendar's {name} is missing from the hub's database; enter it again "
                "(remove the calendar and add it anew)"
            )
        found[name] = value
    return found


def names_console_files(settings: Any) -> bool:
    """Whether a calendar's SETTINGS (parsed) name files that ``adopt_secret_files`` may
    move into the store: without any, there is nothing to adopt (and nothing to read)."""
    return isinstance(settings, dict) and any(settings.get(s) for s in CONSOLE_WRITTEN)


def _settings(text: str | None) -> dict[str, Any] | None:
    """A calendar's stored settings (None when they are not a JSON object)."""
    try:
        settings = json.loads(text or "{}")
    except ValueError:
        return None
    return settings if isinstance(settings, dict) else None


def _console_file(value: Any, folder: Path) -> Path | None:
    """The file a ``*_file`` setting names when the console of an earlier build wrote it
    (DATA_DIR/secrets/LABEL-HEX.secret): a file the administrator named is theirs to keep."""
    if not isinstance(value, str) or not value.strip():
        return None
    path = Path(value).resolve()
    if path.parent != folder or path.suffix != ".secret" or not path.is_file():
        return None
    return path


def _move_into(
    session: Session, keyring: Callable[[], Keyring], calendar: Calendar, folder: Path
) -> list[tuple[str, Path]]:
    """In SESSION's transaction: the console-written secret files of CALENDAR into the
    store, its settings naming them in ``stored_secrets``; (name, file) of each moved."""
    settings = _settings(calendar.settings)
    if settings is None:
        return []
    moved: list[tuple[str, Path]] = []
    for setting in CONSOLE_WRITTEN:
        path = _console_file(settings.get(setting), folder)
        if path is None:
            continue
        try:
            secret = path.read_text("utf-8").strip()
        except OSError as exc:
            log.warning("cannot read %s to move it into the database: %s", path, exc.strerror)
            continue
        name = setting.removesuffix("_file")
        assert calendar.id is not None
        keep_secret_in(session, keyring(), calendar.id, name, secret)
        del settings[setting]
        settings["stored_secrets"] = sorted({*stored_names(settings), name})
        moved.append((name, path))
    if moved:
        calendar.settings = json.dumps(settings)
        session.add(calendar)
    return moved


def adopt_secret_files(
    engine: Engine, keyring_of: Callable[[], Keyring], data_dir: Path, calendar_id: int
) -> list[str]:
    """Move the secret files the console of an earlier build wrote for CALENDAR_ID (in
    DATA_DIR/secrets) into the store: the calendar then names them in ``stored_secrets``
    and the files are deleted once that is committed. Files of this machine only; the
    names of the secrets moved. KEYRING_OF() gives the keys (read only when needed)."""
    folder = (data_dir / CONSOLE_SECRETS_DIR).resolve()
    # Run before every sync: when no console-written setting is there (the usual case), a
    # read answers, without a transaction holding SQLite's write lock.
    with read_scope(engine) as session:
        found = session.get(Calendar, calendar_id)
        named = _settings(found.settings if found is not None else "")
    if not names_console_files(named):
        return []
    with session_scope(engine) as session:
        calendar = session.get(Calendar, calendar_id)
        moved = [] if calendar is None else _move_into(session, keyring_of, calendar, folder)
    for name, path in moved:
        try:
            path.unlink()
        except OSError as exc:
            log.warning("moved %s into the database but cannot delete it: %s", path, exc.strerror)
        log.info(
            "calendar %d: moved its %s from %s into the database (encrypted); file deleted",
            calendar_id,
            name.replace("_", " "),
            path,
        )
    return [name for name, _ in moved]
