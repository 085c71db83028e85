"""Web unsubscribe links: ``PUBLIC_URL/u/CODE`` opts one number out of one account.

Where professional SMS cannot be answered (Switzerland, Belgium, and by default every
country not configured otherwise), the opt-out mention of a marketing SMS is such a link,
one per recipient (hub.compliance.optout_mention). Opening it shows a page with a button;
only the button's POST blacklists the number, because link scanners and previews fetch
every URL of a message with GET, and a GET must never unsubscribe anyone.

Codes come from the short-link alphabet and length (hub.campaigns.links): random, unguessable,
all of
one length so that texts are counted before the codes exist.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from sqlmodel import Session, col, select

from hub.campaigns.links import CODE_ALPHABET
from hub.compliance.optout_mention import LINK_CODE_LENGTH
from hub.core.timeutil import utcnow
from hub.sending.optout import opt_out
from hub.store.models import UnsubscribeLink

SOURCE = "link"
_CODE_RE = re.compile(rf"^[{re.escape(CODE_ALPHABET)}]{{{LINK_CODE_LENGTH}}}$")


@dataclass(frozen=True)
class Recipient:
    """Who one unsubscribe link is for."""

    account_id: int
    number: str
    message_id: str | None = None
    campaign_id: int | None = None


def _new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(LINK_CODE_LENGTH))


def create(session: Session, recipients: list[Recipient]) -> list[str]:
    """One new code per recipient, in order (stored in SESSION's transaction)."""
    codes: list[str] = []
    while len(codes) < len(recipients):
        wanted = {_new_code() for _ in range(len(recipients) - len(codes))} - set(codes)
        taken = set(
            session.exec(select(UnsubscribeLink.code).where(col(UnsubscribeLink.code).in_(wanted)))
        )
        codes += sorted(wanted - taken)
    session.add_all(
        UnsubscribeLink(
            account_id=r.account_id,
            code=code,
            number=r.number,
            message_id=r.message_id,
            campaign_id=r.campaign_id,
        )
        for r, code in zip(recipients, codes, strict=True)
    )
    session.flush()
    return codes


def find(session: Session, code: str) -> UnsubscribeLink | None:
    """The link with CODE, or None (also for anything that cannot be a code)."""
    if not _CODE_RE.match(code):
        return None
    return session.exec(select(UnsubscribeLink).where(UnsubscribeLink.code == code)).first()


def confirm(session: Session, link: UnsubscribeLink) -> bool:
    """Blacklist the link's number for its account, recorded with its source; False when the
    number already was on the blacklist."""
    note = f"web unsubscribe link /u/{link.code}"
    if link.campaign_id is not None:
        note += f", campaign {link.campaign_id}"
    if link.message_id:
        note += f", message {link.message_id}"
    added = opt_out(session, link.account_id, link.number, SOURCE, note)
    if link.used_at is None:
        link.used_at = utcnow()
        session.add(link)
    session.flush()
    return added
