"""The connector state store in the ``connector_state`` table (see hub/ports/state.py), secrets
encrypted with the hub's keys (hub/store/secretbox.py), and their rotation."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, delete, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col

from hub.core.config import Config
from hub.core.timeutil import utcnow
from hub.store.db import session_scope, table
from hub.store.models import ConnectorState
from hub.store.secretbox import Keyring, SecretUnreadable, load_keyring

log = logging.getLogger("smshub.state")

STATE = table(ConnectorState)


def _live(namespace: str, key: str, secret: bool, now: datetime) -> Any:
    return and_(
        STATE.c.namespace == namespace,
        STATE.c.key == key,
        STATE.c.secret == secret,
        or_(STATE.c.expires_at.is_(None), STATE.c.expires_at > now),
    )


class SqlStateStore:
    """Implements hub.ports.state.StateStore on the hub's database (blocking)."""

    def __init__(self, engine: Engine, keys: Callable[[], Keyring]) -> None:
        self.engine = engine
        # Read when a secret is first used: an instance that stores none (an SMPP
        # dispatcher) needs no key.
        self._keys = keys
        self._keyring: Keyring | None = None

    @property
    def keyring(self) -> Keyring:
        if self._keyring is None:
            self._keyring = self._keys()
        return self._keyring

    # -- rows ------------------------------------------------------------------------------
    def _read(self, namespace: str, key: str, secret: bool) -> str | None:
        with session_scope(self.engine) as session:
            row = session.execute(
                select(STATE.c.value).where(_live(namespace, key, secret, utcnow()))
            ).first()
        return None if row is None else str(row[0])

    def _write(self, namespace: str, key: str, text: str, secret: bool, ttl: float | None) -> None:
        now = utcnow()
        values = {
            "namespace": namespace,
            "key": key,
            "value": text,
            "secret": secret,
            "expires_at": now + timedelta(seconds=ttl) if ttl else None,
            "updated_at": now,
        }
        dialect = self.engine.dialect.name
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        statement = insert(STATE).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=[STATE.c.namespace, STATE.c.key],
            set_={
                k: statement.excluded[k] for k in ("value", "secret", "expires_at", "updated_at")
            },
        )
        with session_scope(self.engine) as session:
            session.execute(statement)

    def _take(self, namespace: str, key: str, secret: bool) -> str | None:
        with session_scope(self.engine) as session:
            now = utcnow()
            row = session.execute(
                select(STATE.c.value).where(_live(namespace, key, secret, now))
            ).first()
            if row is None:
                return None
            # Only the caller whose delete removes the row has it (another took it meanwhile).
            gone = session.execute(
                delete(STATE).where(
                    STATE.c.namespace == namespace, STATE.c.key == key, STATE.c.value == row[0]
                )
            )
            return str(row[0]) if gone.rowcount == 1 else None  # type: ignore[attr-defined]

    # -- plain values ----------------------------------------------------------------------
    def get(self, namespace: str, key: str) -> Any:
        text = self._read(namespace, key, False)
        return None if text is None else json.loads(text)

    def put(self, namespace: str, key: str, value: Any, *, ttl: float | None = None) -> None:
        self._write(namespace, key, json.dumps(value), False, ttl)

    def take(self, namespace: str, key: str) -> Any:
        text = self._take(namespace, key, False)
        return None if text is None else json.loads(text)

    def delete(self, namespace: str, key: str) -> None:
        with session_scope(self.engine) as session:
            session.execute(delete(STATE).where(STATE.c.namespace == namespace, STATE.c.key == key))

    def items(self, namespace: str, prefix: str = "") -> list[tuple[str, Any]]:
        query = select(STATE.c.key, STATE.c.value).where(
            STATE.c.namespace == namespace,
            STATE.c.secret == False,  # noqa: E712
            or_(STATE.c.expires_at.is_(None), STATE.c.expires_at > utcnow()),
        )
        if prefix:
            query = query.where(STATE.c.key.startswith(prefix, autoescape=True))
        with session_scope(self.engine) as session:
            rows = session.execute(query.order_by(STATE.c.key)).all()
        return [(str(k), json.loads(v)) for k, v in rows]

    # -- secrets ---------------------------------------------------------------------------
    def get_secret(self, namespace: str, key: str) -> str | None:
        token = self._read(namespace, key, True)
        return None if token is None else self.keyring.decrypt(token, f"the stored {key}")

    def put_secret(self, namespace: str, key: str, value: str, *, ttl: float | None = None) -> None:
        self._write(namespace, key, self.keyring.encrypt(value), True, ttl)

    def take_secret(self, namespace: str, key: str) -> str | None:
        token = self._take(namespace, key, True)
        return None if token is None else self.keyring.decrypt(token, f"the stored {key}")

    # -- housekeeping ----------------------------------------------------------------------
    def delete_namespace(self, namespace: str) -> int:
        with session_scope(self.engine) as session:
            return delete_namespace_in(session, namespace)

    def prune(self) -> int:
        with session_scope(self.engine) as session:
            gone = session.execute(delete(STATE).where(STATE.c.expires_at <= utcnow()))
            return int(gone.rowcount or 0)  # type: ignore[attr-defined]


def delete_namespace_in(session: Session, namespace: str) -> int:
    """Delete NAMESPACE's entries in SESSION's transaction (committed, or rolled back, with
    what else it does: a calendar's removal)."""
    gone = session.execute(delete(STATE).where(col(ConnectorState.namespace) == namespace))
    return int(gone.rowcount or 0)  # type: ignore[attr-defined]


def state_store(engine: Engine, config: Config) -> SqlStateStore:
    """The state store of the hub whose ENGINE and CONFIG these are."""
    return SqlStateStore(engine, lambda: load_keyring(config))


@dataclass
class RotateReport:
    rotated: int
    unreadable: list[tuple[str, str]]  # (namespace, key) that no key decrypts


def rotate_secrets(engine: Engine, keyring: Keyring) -> RotateReport:
    """Re-encrypt every stored secret under KEYRING's first key, one row at a time (a
    secret an instance renews meanwhile is written under the first key anyway)."""
    with session_scope(engine) as session:
        rows = session.execute(
            select(STATE.c.namespace, STATE.c.key, STATE.c.value).where(STATE.c.secret == True)  # noqa: E712
        ).all()
    report = RotateReport(0, [])
    for namespace, key, token in rows:
        try:
            fresh = keyring.rotate(str(token), f"the stored {key} of {namespace}")
        except SecretUnreadable:
            report.unreadable.append((str(namespace), str(key)))
            continue
        with session_scope(engine) as session:
            done = session.execute(
                update(STATE)
                .where(
                    STATE.c.namespace == namespace,
                    STATE.c.key == key,
                    STATE.c.value == token,
                )
                .values(value=fresh)
            )
        report.rotated += int(done.rowcount or 0)  # type: ignore[attr-defined]
    log.info("re-encrypted %d stored secret(s) under the first key", report.rotated)
    return report
