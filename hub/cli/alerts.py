"""`smshub accounts alert ...`: the balance alert of an account.

hub.cli.main registers ``accounts_alert`` on its ``accounts`` group at its bottom; the helpers of
hub.cli.main are imported inside the command to keep that import one-way at load time.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer


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
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Set, show or turn off an account's balance alert (sent once per crossing)."""
    from hub.cli.main import emit, get_config, run_db
    from hub.core.phone import parse_number
    from hub.errors import ConflictError, InvalidInput
    from hub.inbound import alerts
    from hub.sending.account_settings import check_address
    from hub.sending.accounts import get_account
    from hub.store.models import CreditMode

    config = get_config()

    def _do(session: Any) -> dict[str, Any]:
        acc = get_account(session, name)
        changed = off or any(v is not None for v in (threshold, email, sms))
        if changed and acc.credit_mode != CreditMode.LIMITED:
            raise ConflictError(
                f"account {acc.name!r} is unlimited and draws from its parent; set the alert "
                "on the account that holds the credits"
            )
        if off and threshold is not None:
            raise InvalidInput("give either --threshold or --off, not both")
        if email is not None:
            acc.alert_email = check_address("--email", email)
        if sms is not None:
            if sms:
                region = acc.default_region or config.hub.default_region
                number = parse_number(sms, region)
                if not number.valid or number.e164 is None:
                    raise InvalidInput(
                        f"--sms {sms!r} is not a phone number: {number.reason or 'invalid'}"
                    )
                acc.alert_sms = number.e164
            else:
                acc.alert_sms = ""
        if off:
            acc.alert_threshold = None
        elif threshold is not None:
            acc.alert_threshold = threshold
        if acc.alert_threshold is not None and not (acc.alert_email or acc.alert_sms):
            raise InvalidInput(
                f"the alert of {acc.name} would tell nobody: "
                "give --email ADDRESS and/or --sms NUMBER"
            )
        sent = None
        if threshold is not None or off:
            # A new threshold starts armed, and a balance already below it is alerted right
            # away. (Changing only where alerts go keeps the current crossing's state.)
            acc.alert_armed = True
        session.add(acc)
        session.flush()
        if threshold is not None:
            from secrets import token_hex

            sent = alerts.check_balance(
                session, config, acc, key=f"alert:{acc.id}:set:{token_hex(6)}"
            )
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

    data = run_db(_do)
    if data["threshold"] is None:
        text = f"{data['account']}: no balance alert"
    else:
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
    emit(data, as_json, text)
