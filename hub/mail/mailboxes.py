"""The mailboxes the hub's config names, as the console, the CLI and /readyz list them:
``[[imap]]`` intake sources, and ``[mail_out]`` (the SMTP relay, or the answers mailbox
forwarded SMS are APPENDed to). Their OAuth state comes from hub/mail/oauth.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, select

from hub.core.config import Config
from hub.errors import Forbidden, NotFound
from hub.mail.oauth import MAIL_OUT, PROVIDERS, fix_hint, intake_key, mailbox_state
from hub.ports.state import StateStore
from hub.runtime.readiness import Check, Probe, failed, ok
from hub.store.models import Account


@dataclass(frozen=True)
class Mailbox:
    key: str  # imap:LABEL, or mail_out
    kind: str  # "intake", "answers" (IMAP APPEND) or "relay" (SMTP)
    label: str
    host: str
    username: str
    folder: str  # read (intake) or written (answers); "" for the relay
    auth: str  # "password" or "xoauth2"
    provider: str  # "microsoft", "google" or ""
    role: str  # the `smshub run --role` that uses it
    # How it is reached: "imap" / "smtp" (the mail protocols) or "graph" / "gmail" (the
    # provider's mail API); decides the scopes asked at sign-in.
    transport: str = "imap"

    @property
    def oauth(self) -> bool:
        return self.auth == "xoauth2"

    @property
    def provider_label(self) -> str:
        return PROVIDERS.get(self.provider, "")

    @property
    def what(self) -> str:
        return {
            "intake": "mail in this folder becomes SMS",
            "answers": "forwarded SMS are appended to this folder",
            "relay": "the hub's mail goes out through this relay",
        }[self.kind]


def _text(table: dict[str, Any], key: str, default: str = "") -> str:
    value = table.get(key)
    return str(value) if value is not None else default


def configured_mailboxes(config: Config) -> list[Mailbox]:
    """Every mailbox of CONFIG, intake sources first (as the config lists them)."""
    found = []
    for table in config.imap:
        folder = _text(table, "folder", "INBOX")
        username, host = _text(table, "username"), _text(table, "host")
        transport = _text(table, "transport", "imap")
        host = host or transport
        label = _text(table, "name") or f"{username}@{host}/{folder}"
        found.append(
            Mailbox(
                key=intake_key(label),
                kind="intake",
                label=label,
                host=host,
                username=username,
                folder=folder,
                auth=_text(table, "auth", "password"),
                provider=_text(table, "oauth_provider"),
                role="imap",
                transport=transport,
            )
        )
    out = config.mail_out
    if out.enabled:
        imap = out.method == "imap"
        api = out.transport != "smtp"
        found.append(
            Mailbox(
                key=MAIL_OUT,
                kind="answers" if imap else "relay",
                label=(
                    f"mail out ({out.transport} API)"
                    if api
                    else "mail out (IMAP APPEND)"
                    if imap
                    else "mail out (SMTP relay)"
                ),
                host=out.transport if api else out.imap_host if imap else out.host,
                username=out.imap_username if imap else out.username,
                folder=out.imap_folder if imap else "",
                auth="xoauth2" if api else out.imap_auth if imap else out.auth,
                provider=out.oauth_provider,
                role="dispatcher",
                transport=out.transport if api else "imap" if imap else "smtp",
            )
        )
    return found


def find_mailbox(config: Config, key: str) -> Mailbox:
    for mailbox in configured_mailboxes(config):
        if mailbox.key == key:
            return mailbox
    known = ", ".join(m.key for m in configured_mailboxes(config)) or "none configured"
    raise NotFound(f"no mailbox {key!r} in the config (mailboxes: {known})")


def oauth_problem(store: StateStore, mailbox: Mailbox) -> str:
    """Why an OAuth mailbox cannot sign in now, with the fix ("" when it can, as far as
    the hub knows)."""
    if not mailbox.oauth:
        return ""
    state = mailbox_state(store, mailbox.key)
    if state.revoked:
        return (
            f"the {mailbox.provider_label} consent was revoked or has expired "
            f"({state.revoked}): {fix_hint(mailbox.key)}"
        )
    if not state.connected:
        return f"not connected yet: {fix_hint(mailbox.key)}"
    return ""


def mailbox_probe(store: StateStore, mailbox: Mailbox) -> Probe:
    """/readyz: an OAuth mailbox has a sign-in the provider has not refused."""

    async def probe() -> Check:
        problem = await asyncio.to_thread(oauth_problem, store, mailbox)
        return failed(problem) if problem else ok(auth=mailbox.auth)

    return probe


def require_operator(session: Session, account_id: int) -> None:
    """Mailboxes are the hub's, not a customer's: only users of the hub's own account (the
    first top-level account, `main` on a new hub) may connect, test or disconnect them."""
    first = session.exec(
        select(Account.id).where(col(Account.parent_id).is_(None)).order_by(col(Account.id))
    ).first()
    if first is None or first != account_id:
        raise Forbidden(
            "the hub's mailboxes are managed by the users of its own account "
            "(the first account, e.g. main)"
        )
