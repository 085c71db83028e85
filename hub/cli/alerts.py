"""`smshub accounts alert ...`: the balance alert of an account.

hub.cli.accounts registers ``accounts_alert`` last on its ``accounts`` group.
"""

from __future__ import annotations

from dataclasses import dataclass
from secrets import token_hex
from typing import Annotated, Any

import typer

from hub.cli.common import JsonOpt, emit, get_config, run_db
from hub.core.config import Config


@dataclass(frozen=True)
class _AlertChange:
    """The options of `accounts alert`; None leaves a setting as it is."""

    threshold: int | None
    email: str | None
    sms: str | None
    off: bool


def accounts_alert(
    name: Annotated[str, typer.Argument(help="A main account or a limited sub-account.")],
    threshold: Annotated[
        int | None, typer.Option(min=0, help="Alert when the balance falls below this.")
    ] = None,
    email: Annotated[
        str | None, typer.Option(help="Address that gets the alert e-mail ('' for none).")
    ] = None,
    sms: Annotated[
        str | None, typer.Option(help="Number that gets the alert SMS, paid by NAME ('' for none).")
    ] = None,
    off: Annotated[bool, typer.Option("--off", help="Turn the alert off.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Set, show or turn off an account's balance alert (sent once per crossing)."""
    config = get_config()
    change = _AlertChange(threshold, email, sms, off)
    data = run_db(lambda s: _set_alert(s, config, name, change))
    emit(data, as_json, _alert_text(data))


def _set_alert(session: Any, config: Config, name: str, c: _AlertChange) -> dict[str, Any]:
    from hub.errors import ConflictError, InvalidInput
    from hub.inbound import alerts
    from hub.sending.account_settings import check_address
    from hub.sending.accounts import get_account
    from hub.store.models import CreditMode

    acc = get_account(session, name)
    changed = c.off or any(v is not None for v in (c.threshold, c.email, c.sms))
    if changed and acc.credit_mode != CreditMode.LIMITED:
        raise ConflictError(
            f"account {acc.name!r} is unlimited and draws from its parent; set the alert "
            "on the account that holds the credits"
        )
    if c.off and c.threshold is not None:
        raise InvalidInput("give either --threshold or --off, not both")
    if c.email is not None:
        acc.alert_email = check_address("--email", c.email)
    if c.sms is not None:
        acc.alert_sms = _alert_number(config, acc, c.sms)
    if c.off:
        acc.alert_threshold = None
    elif c.threshold is not None:
        acc.alert_threshold = c.threshold
    if acc.alert_threshold is not None and not (acc.alert_email or acc.alert_sms):
        raise InvalidInput(
            f"the alert of {acc.name} would tell nobody: give --email ADDRESS and/or --sms NUMBER"
        )
    sent = None
    if c.threshold is not None or c.off:
        # A new threshold starts armed, and a balance already below it is alerted right
        # away. (Changing only where alerts go keeps the current crossing's state.)
        acc.alert_armed = True
    session.add(acc)
    session.flush()
    if c.threshold is not None:
        sent = alerts.check_balance(session, config, acc, key=f"alert:{acc.id}:set:{token_hex(6)}")
    session.refresh(acc)
    return {
        "account": acc.name,
        "balance": acc.balance,
        "threshold": acc.alert_threshold,
        "email": acc.alert_email or None,
        "sms": acc.alert_sms or None,
        "armed": acc.alert_armed,
        "alert_sent": None
        if sent is None
        else {"email": sent.mail_to, "sms": sent.sms_to, "problems": sent.problems},
    }


def _alert_number(config: Config, acc: Any, sms: str) -> str:
    """--sms as E.164 ('' turns the SMS off)."""
    from hub.core.phone import parse_number
    from hub.errors import InvalidInput

    if not sms:
        return ""
    number = parse_number(sms, acc.default_region or config.hub.default_region)
    if not number.valid or number.e164 is None:
        raise InvalidInput(f"--sms {sms!r} is not a phone number: {number.reason or 'invalid'}")
    return number.e164


def _alert_text(data: dict[str, Any]) -> str:
    if data["threshold"] is None:
        return f"{data['account']}: no balance alert"
    to = " and ".join(x for x in (data["email"], data["sms"] and f"SMS {data['sms']}") if x)
    text = (
        f"{data['account']}: alert when the balance ({data['balance']}) falls below "
        f"{data['threshold']}, to {to}"
    )
    if data["alert_sent"] is not None:
        text += f"\nthe balance is already below {data['threshold']}: alert sent"
        text += "".join(f"\n  {p}" for p in data["alert_sent"]["problems"])
    elif not data["armed"]:
        text += " (already sent for this crossing; re-armed after a top-up)"
    return text
