"""The newest refresh token Microsoft handed a calendar's sign-in (they rotate them): kept
in the calendar's namespace of the hub's state store, so that a new scheduler leader signs
in with it, not with the first one; and the token file where hubs before the store kept it,
moved into the store on first use."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from connectors.calendar.graph_settings import GraphSettings
from hub.errors import SecretUnreadable
from hub.ports.calendar import SourceContext

log = logging.getLogger("smshub.calendar.graph")

# Its key in the calendar's namespace of the state store.
RENEWED_KEY = "renewed_refresh_token"


def token_file(settings: GraphSettings, ctx: SourceContext) -> Path:
    """Where hubs before the state store kept the newest refresh token, per calendar (moved
    into the store on first use)."""
    return ctx.state_path(settings.client_id, settings.user, prefix="graph-", suffix=".json")


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class RenewedTokens:
    """The renewed refresh token of one calendar (blocking: the store is a database)."""

    def __init__(self, settings: GraphSettings, ctx: SourceContext, where: str) -> None:
        self.ctx = ctx
        self.where = where
        self.token_file = token_file(settings, ctx)

    def newest(self, configured: str) -> str:
        """The newest refresh token: the kept one if it derives from the CONFIGURED one."""
        try:
            kept = self._kept()
        except SecretUnreadable as exc:
            # The configured token may still work; the key mismatch is worth fixing.
            log.warning("%s: %s", self.where, exc)
            return configured
        if kept.get("configured") == _digest(configured) and kept.get("refresh_token"):
            return str(kept["refresh_token"])
        return configured  # a new token was configured since: it wins

    def keep(self, configured: str, newest: str) -> None:
        """Keep NEWEST, handed out for the CONFIGURED token; a failure is logged only."""
        kept = json.dumps({"configured": _digest(configured), "refresh_token": newest})
        try:
            self.ctx.store.put_secret(self.ctx.namespace, RENEWED_KEY, kept)
        except Exception as exc:  # a database or key problem: the sync itself went well
            # The configured token still works until it expires; say so, go on.
            log.warning("%s: cannot keep the new refresh token: %s", self.where, exc)

    def _kept(self) -> dict[str, Any]:
        """What ``keep`` stored (in the hub's state store, where every instance finds it);
        the file of an earlier build is moved there first."""
        found = self.ctx.store.get_secret(self.ctx.namespace, RENEWED_KEY)
        if found is None:
            found = self._adopt_file()
        try:
            kept = json.loads(found) if found else {}
        except ValueError:
            return {}
        return kept if isinstance(kept, dict) else {}

    def _adopt_file(self) -> str | None:
        try:
            text = self.token_file.read_text("utf-8")
        except OSError:
            return None
        self.ctx.store.put_secret(self.ctx.namespace, RENEWED_KEY, text)
        with contextlib.suppress(OSError):
            self.token_file.unlink()
        log.info(
            "%s: moved the renewed refresh token from %s into the hub's database (encrypted)",
            self.where,
            self.token_file,
        )
        return text
