"""The state of a balance alert, kept with the balance; sending the alert comes after the commit.

An account with an ``alert_threshold`` is *armed* while its balance is at or above it. A balance
change (``hub.sending.credits``) that brings it back there re-arms it, in the change's own
transaction. A change that leaves it armed and below the threshold is a *crossing*: nothing is
sent inside the change (whose transaction may still roll back, and whose charge may be the
alert SMS's own); once the change is committed, the crossing is told to the handler that sends
alerts (``hub.inbound.alerts``, which the composition roots plug in with ``on_crossing``: it
submits the alert SMS, so it sits above ``submit`` and this module cannot import it).

The handler disarms (``fire``) in its own transaction, with the mail and SMS it queues: an alert
exists exactly when the flip does, and only one transaction flips, so two changes that cross
together alert once. If the process dies between the commit and the alert (or no handler is
plugged in), the account stays armed below its threshold, and ``hub.inbound.alerts.check_all``
(a periodic job) sends it: never lost, never twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from sqlalchemy import Engine, text
from sqlmodel import Session

from hub.store.db import after_commit, bound_engine
from hub.store.models import Account

if TYPE_CHECKING:
    from hub.core.config import Config

log = logging.getLogger("smshub.alerts")

# Told after the commit that left ACCOUNT_ID armed below its threshold.
CrossingHandler = Callable[["Engine", "Config", int], object]

_handlers: list[CrossingHandler] = []

_REARM = text(
    "UPDATE accounts SET alert_armed = :yes WHERE id = :id AND alert_armed = :no "
    "AND alert_threshold IS NOT NULL AND balance >= alert_threshold"
)
_FIRE = text(
    "UPDATE accounts SET alert_armed = :no WHERE id = :id AND alert_armed = :yes "
    "AND alert_threshold IS NOT NULL AND balance < alert_threshold "
    "RETURNING balance, alert_threshold, alert_email, alert_sms"
)


@dataclass(frozen=True)
class Fired:
    """What the flip that disarmed an account read: who to tell, and what."""

    balance: int
    threshold: int
    email: str
    sms: str


def on_crossing(handler: CrossingHandler) -> None:
    """Have HANDLER told of every committed crossing (once per handler)."""
    if handler not in _handlers:
        _handlers.append(handler)


def rearm(session: Session, account: Account) -> bool:
    """Arm ACCOUNT's alert again if its balance is back at its threshold or above."""
    params = {"id": account.id, "yes": True, "no": False}
    rearmed = session.execute(_REARM, params).rowcount  # type: ignore[attr-defined]
    if rearmed:
        session.expire(account, ["alert_armed"])
        log.info("balance alert of %s re-armed", account.name)
    return bool(rearmed)


def fire(session: Session, account: Account) -> Fired | None:
    """Disarm ACCOUNT's alert if it is armed below its threshold (this transaction then owes
    the alert); None when there is nothing to send."""
    row = session.execute(_FIRE, {"id": account.id, "yes": True, "no": False}).first()
    if row is None:
        return None
    session.expire(account, ["alert_armed"])
    return Fired(int(row[0]), int(row[1]), str(row[2]), str(row[3]))


def after_change(
    session: Session,
    config: Config | None,
    account: Account,
    *,
    balance: int,
    armed: bool,
    threshold: int | None,
) -> None:
    """ACCOUNT's balance is now BALANCE in SESSION's transaction (ARMED and THRESHOLD as the
    change's row lock read them): re-arm, or tell a crossing once the change is committed.

    Without CONFIG nothing can be sent: the crossing stays armed for the periodic check."""
    if threshold is None or account.id is None:
        return  # no alert set: no query at all on the sending path
    if balance >= threshold:
        if not armed:
            rearm(session, account)
        return
    if armed and config is not None:
        after_commit(session, partial(_tell, bound_engine(session), config, account.id))


def _tell(engine: Engine, config: Config, account_id: int) -> None:
    if not _handlers:
        log.info("balance alert of account %d left for the periodic check", account_id)
    for handler in _handlers:
        handler(engine, config, account_id)
