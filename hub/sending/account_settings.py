"""An account's settings, checked the same way wherever they are changed: one function per
setting (a console form, an option of ``smshub accounts set``), each returning what to tell.

Errors start with the setting's label, so the console page can say which field to fix and
the command line which option.
"""

from __future__ import annotations

import math
from secrets import token_hex
from typing import TYPE_CHECKING

import phonenumbers
from sqlmodel import Session

from hub import compliance
from hub.compliance.night import MODES, NightHours, parse_clock
from hub.core import i18n
from hub.core.phone import parse_number
from hub.errors import ConflictError, HubError, InvalidInput
from hub.inbound import alerts
from hub.sending import submit as sending
from hub.store.models import Account, CreditMode

if TYPE_CHECKING:
    from hub.core.config import Config

# One auto-reply per number per period: more than a year apart is surely a typo.
MAX_AUTOREPLY_HOURS = 24 * 366
_ADDRESS_MAX = 255


def check_address(field: str, value: str) -> str:
    """VALUE stripped, if empty or an e-mail address; else InvalidInput naming FIELD."""
    value = value.strip()
    if value and (
        "@" not in value
        or value.startswith("@")
        or value.endswith("@")
        or any(c.isspace() for c in value)
        or len(value) > _ADDRESS_MAX
    ):
        raise InvalidInput(f"{field}: {value!r} is not an e-mail address (name@example.com)")
    return value


def set_locale(config: Config, account: Account, value: str) -> str:
    """The language of the mails and SMS texts written for the account ("" : the default)."""
    value = value.strip()
    chosen = i18n.normalize(value)
    if value and chosen is None:
        raise InvalidInput(
            f"Language: {value!r} is not one of {', '.join(i18n.LANGUAGES)} (empty: the default)"
        )
    account.locale = chosen
    shown = i18n.account_language(account, config)
    how = "chosen" if chosen else "by default"
    return f"{account.name} writes its mails and SMS texts in {shown} ({how})."


def region_of(config: Config, account: Account) -> str:
    """The country national numbers of ACCOUNT are read in."""
    return account.default_region or config.hub.default_region


def set_alert(
    session: Session, config: Config, account: Account, threshold: str, email: str, sms: str
) -> str:
    """The balance alert: below THRESHOLD credits (empty: off), by e-mail and/or SMS."""
    if account.credit_mode != CreditMode.LIMITED:
        raise ConflictError(
            f"account {account.name!r} is unlimited and draws from its parent; set the alert "
            "on the account that holds the credits"
        )
    limit: int | None = None
    if threshold.strip():
        try:
            limit = int(threshold.strip())
        except ValueError:
            limit = -1
        if limit < 0:
            raise InvalidInput(
                f"Threshold: {threshold.strip()!r} is not a whole number of credits (0 or more); "
                "leave it empty to turn the alert off"
            )
    mail_to = check_address("Alert e-mail", email)
    sms_to = ""
    if sms.strip():
        number = parse_number(sms.strip(), region_of(config, account))
        if not number.valid or number.e164 is None:
            raise InvalidInput(
                f"Alert SMS number: {sms.strip()!r} is not a phone number "
                f"({number.reason or 'invalid'})"
            )
        sms_to = number.e164
    if limit is not None and not (mail_to or sms_to):
        raise InvalidInput(
            "Alert e-mail / Alert SMS number: the alert would tell nobody; "
            "give an e-mail address and/or a phone number"
        )
    new_threshold = limit != account.alert_threshold
    account.alert_threshold = limit
    account.alert_email = mail_to
    account.alert_sms = sms_to
    if new_threshold:
        # A new threshold starts armed (as in the CLI); changing only where alerts go keeps
        # the current crossing's state, so saving the form twice does not alert twice.
        account.alert_armed = True
    session.add(account)
    session.flush()
    if limit is None:
        return f"Balance alert of {account.name} turned off."
    message = f"Balance alert of {account.name}: below {limit} credits."
    if new_threshold:
        sent = alerts.check_balance(
            session, config, account, key=f"alert:{account.id}:set:{token_hex(6)}"
        )
        if sent is not None:
            message += f" The balance ({sent.balance}) is already below it: alert sent."
            message += "".join(f" {p.capitalize()}." for p in sent.problems)
    return message


def set_sender(config: Config, account: Account, sender: str) -> str:
    """The default sender, checked as a send checks it (for the account's country)."""
    value = sender.strip()
    try:
        checked = sending.validate_sender(value)
        warnings = compliance.require_sender(checked, [region_of(config, account)])
    except InvalidInput as exc:
        raise InvalidInput(f"Default sender: {exc}") from exc
    account.default_sender = checked
    if checked is None:
        return f"{account.name} now sends with the provider's default sender."
    shown = " ".join(w[0].upper() + w[1:] + "." for w in warnings)
    return f"Default sender of {account.name}: {checked}." + (f" {shown}" if shown else "")


def set_region(config: Config, account: Account, region: str) -> str:
    """The country national numbers are read in (empty: the hub's default)."""
    value = region.strip().upper()
    if value and (len(value) != 2 or value not in phonenumbers.SUPPORTED_REGIONS):
        raise InvalidInput(
            f"Default region: {region.strip()!r} is not a two-letter country code such as FR"
        )
    account.default_region = value or None
    return (
        f"{account.name} reads national numbers as {value or config.hub.default_region}"
        + ("" if value else " (the hub's default)")
        + "."
    )


def set_reply_mailbox(account: Account, mailbox: str) -> str:
    """Where inbound SMS are forwarded by e-mail (empty: nowhere unless an intake says so)."""
    account.reply_mailbox = check_address("Reply mailbox", mailbox)
    if not account.reply_mailbox:
        return f"Replies to {account.name} are no longer forwarded to a mailbox of its own."
    return f"Replies to {account.name} go to {account.reply_mailbox}."


def set_autoreply(config: Config, account: Account, enabled: bool, text: str, period: str) -> str:
    """The auto-responder: on/off, its text, and the hours between two replies to a number."""
    try:
        hours = float(period.strip().replace(",", "."))
    except ValueError:
        hours = math.nan
    if not (0 < hours <= MAX_AUTOREPLY_HOURS):
        raise InvalidInput(
            f"Period: {period.strip()!r} is not a number of hours between 0 and "
            f"{MAX_AUTOREPLY_HOURS} (24 = at most one auto-reply per number per day)"
        )
    text = text.strip()
    if enabled and not text:
        raise InvalidInput("Auto-reply text: write the text before turning the auto-responder on")
    if text:
        if len(text) > 1000:
            raise InvalidInput(f"Auto-reply text: at most 1000 characters, not {len(text)}")
        try:
            sending.check_text(config, text)
        except HubError as exc:
            raise InvalidInput(f"Auto-reply text: {exc}") from exc
    account.autoreply_enabled = enabled
    account.autoreply_text = text
    account.autoreply_period_hours = hours
    if not enabled:
        return f"Auto-responder of {account.name} is off."
    return (
        f"Auto-responder of {account.name} is on: at most one reply per number "
        f"every {hours:g} hours."
    )


def set_night(account: Account, mode: str, start: str, end: str) -> str:
    """Night hours for every send: "off", "hold" (kept until END) or "warn" (sent, with a
    warning), from START to END ("HH:MM", the recipient's local time)."""
    mode = mode.strip().lower() or "off"
    if mode not in MODES:
        raise InvalidInput(
            f"Night hours: {mode!r} is not one of {', '.join(MODES)} (hold keeps SMS until "
            "the night ends, warn sends them with a warning)"
        )
    begins = parse_clock("Night start", start)
    ends = parse_clock("Night end", end)
    if begins == ends:
        raise InvalidInput(
            "Night start / Night end: the same time makes no night; e.g. 21:00 and 08:00"
        )
    account.night_mode = mode
    account.night_start = f"{begins:%H:%M}"
    account.night_end = f"{ends:%H:%M}"
    night = NightHours.of(mode, account.night_start, account.night_end)
    if mode == "off":
        return f"Night hours of {account.name} are off: SMS go out at any hour."
    what = "held until" if mode == "hold" else "sent with a warning before"
    return (
        f"Night hours of {account.name}: SMS that would arrive {night.describe()} "
        f"(the recipient's time) are {what} {account.night_end}."
    )


def set_track_links(account: Account, enabled: bool) -> str:
    """Click tracking by default: URLs in texts sent through the API, the console, campaigns
    and mail become short links of each recipient's own (a send or campaign can still say
    otherwise)."""
    account.track_links = enabled
    if not enabled:
        return f"{account.name} sends URLs as written (no click tracking by default)."
    return (
        f"{account.name} replaces URLs with per-recipient short links by default: "
        "each click tells who clicked."
    )
