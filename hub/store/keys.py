"""Signing keys the hub generates once and shares between instances through the database."""

from __future__ import annotations

import secrets

from sqlmodel import Session

from hub.store.models import HubSetting


def generated_key(session: Session, name: str) -> bytes:
    """The 32-byte key called NAME, created on first use (kept in hub_settings)."""
    row = session.get(HubSetting, name)
    if row is None:
        row = HubSetting(key=name, value=secrets.token_hex(32))
        session.add(row)
        session.flush()
    return bytes.fromhex(row.value)
