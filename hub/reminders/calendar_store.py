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


def resolve_secrets(
    settings: dict[str, Any], store: StateStore, calendar_id: int | None
) -> dict[str, str]:
    """The secrets of a calendar with SETTINGS, by name: those of ``*_env`` / ``*_file``
    settings and those in the store. ConfigError naming what is missing and what to do;
    SecretUnreadable when the store's copy cannot be decrypted."""
    found: dict[str, str] = {}
    for key in list(settings):
        for suffix in ("_env", "_file"):
            if key.endswith(suffix):
                name = key[: -len(suffix)]
                value = read_secret(settings, name, "calendar settings")
                if value is not None:
                    found[name] = value
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


def adopt_secret_files(
    engine: Engine, keyring_of: Any, data_dir: Path, calendar_id: int
) -> list[str]:
    """Move the secret files the console of an earlier build wrote for CALENDAR_ID (in
    DATA_DIR/secrets) into the store: the calendar then names them in ``stored_secrets``
    and the files are deleted once that is committed. Files of this machine only; the
    names of the secrets moved. KEYRING_OF() gives the keys (read only when needed)."""
    folder = (data_dir / CONSOLE_SECRETS_DIR).resolve()
    moved: list[tuple[str, Path]] = []
    # Run before every sync: when no console-written setting is there (the usual case), a
    # read answers, without a transaction holding SQLite's write lock.
    with read_scope(engine) as session:
        found = session.get(Calendar, calendar_id)
        text = found.settings if found is not None else ""
    try:
        named = json.loads(text or "{}")
    except ValueError:
        return []
    if not isinstance(named, dict) or not any(named.get(s) for s in CONSOLE_WRITTEN):
        return []
    with session_scope(engine) as session:
        calendar = session.get(Calendar, calendar_id)
        if calendar is None:
            return []
        try:
            settings = json.loads(calendar.settings or "{}")
        except ValueError:
            return []
        if not isinstance(settings, dict):
            return []
        for setting in CONSOLE_WRITTEN:
            value = settings.get(setting)
            if not isinstance(value, str) or not value.strip():
                continue
            path = Path(value).resolve()
            # Only the console's own files (DATA_DIR/secrets/LABEL-HEX.secret): a file the
            # administrator named is theirs to keep.
            if path.parent != folder or path.suffix != ".secret" or not path.is_file():
                continue
            try:
                secret = path.read_text("utf-8").strip()
            except OSError as exc:
                log.warning("cannot read %s to move it into the database: %s", path, exc.strerror)
                continue
            name = setting.removesuffix("_file")
            keep_secret_in(session, keyring_of(), calendar_id, name, secret)
            del settings[setting]
            settings["stored_secrets"] = sorted({*stored_names(settings), name})
            moved.append((name, path))
        if moved:
            calendar.settings = json.dumps(settings)
            session.add(calendar)
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
