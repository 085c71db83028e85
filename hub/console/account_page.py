"""What the account page shows: balance, ledger page, sub-accounts and settings of one account."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlmodel import Session, col, select

from hub.campaigns.links import link_length
from hub.console.account_ledger import ledger_page
from hub.core import i18n
from hub.inbound import texts as sms_texts
from hub.sending.account_settings import MAX_AUTOREPLY_HOURS, region_of
from hub.sending.accounts import ancestors
from hub.store.models import Account, CreditMode
from hub.store.views import account_view

if TYPE_CHECKING:
    from hub.console.auth import ConsoleUser
    from hub.core.config import Config


def load(
    session: Session,
    config: Config,
    user: ConsoleUser,
    ref: str | None,
    *,
    before: int | None = None,
    after: int | None = None,
    subs_after: str = "",
) -> dict[str, Any]:
    """The template context of /console/account for REF (default: the user's own account)."""
    account = user.account(session, ref or None)
    chain = ancestors(session, account)
    view = account_view(session, account, chain)
    payer = next((a for a in chain if a.credit_mode == CreditMode.LIMITED), chain[-1])
    size = config.console.page_size
    query = select(Account).where(Account.parent_id == account.id)
    if subs_after:
        query = query.where(col(Account.name) > subs_after)
    subs = list(session.exec(query.order_by(col(Account.name)).limit(size + 1)).all())
    more_subs = len(subs) > size
    subs = subs[:size]
    limited = account.credit_mode == CreditMode.LIMITED
    return {
        "account": account,
        "view": view,
        "accounts": [a.name for a in user.accounts(session)],
        "own": account.id == user.account_id,
        # Links only to pages the user may open.
        "parent_link": view["parent"] if account.parent_id in user.scope else None,
        "payer_link": payer.name if payer.id in user.scope else None,
        "subs": subs,
        # Keyset on the (unique, indexed) name: the next page starts after the last one shown.
        "subs_next": subs[-1].name if more_subs else None,
        "subs_paged": bool(subs_after),
        "transfer_subs": [s.name for s in subs if s.credit_mode == CreditMode.LIMITED]
        if limited
        else [],
        "ledger": ledger_page(
            session,
            account,
            user.scope,
            size,
            before=before,
            after=after,
        )
        if limited
        else None,
        "region": region_of(config, account),
        "max_autoreply_hours": MAX_AUTOREPLY_HOURS,
        "link_length": link_length(config),
        # The language of the account's mails and SMS texts, and the one it gets by default.
        "mail_language": i18n.account_language(account, config),
        "default_language": i18n.default_language(account, config),
        "default_autoreply": sms_texts.default_autoreply(config, account),
    }
