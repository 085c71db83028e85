"""The SMS texts the hub writes itself (STOP and START confirmations, the auto-reply it
proposes), in the account's language unless the operator wrote their own in the config."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub.core import i18n
from hub.core.i18n import gettext as _

if TYPE_CHECKING:
    from hub.core.config import Config
    from hub.store.models import Account


def stop_confirmation(config: Config, account: Account) -> str:
    """The one SMS after an opt-out: [inbound] stop_confirmation, else the hub's own text."""
    template = config.inbound.stop_confirmation
    if not template:
        with i18n.use(i18n.account_language(account, config)):
            template = _(
                "You will no longer receive SMS from {account}. Reply START to subscribe again."
            )
    return template.format(account=account.name)


def start_confirmation(config: Config, account: Account) -> str:
    """The one SMS after an opt-in: [inbound] start_confirmation, else the hub's own text."""
    template = config.inbound.start_confirmation
    if not template:
        with i18n.use(i18n.account_language(account, config)):
            template = _("You will receive SMS from {account} again.")
    return template.format(account=account.name)


def default_autoreply(config: Config, account: Account) -> str:
    """The auto-reply text the console proposes to an account that has none."""
    with i18n.use(i18n.account_language(account, config)):
        return _(
            "Thank you for your message. This number does not take replies: please call us "
            "or write to us."
        )
