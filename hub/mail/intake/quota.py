"""The intake's limits as a group's transaction applies them: a sender's mails per minute
(``[smtp] mails_per_sender_per_minute``, counted in SQL) and an account's SMS from mail per
hour (``[smtp] sms_per_account_per_hour``). A mail over either is answered 450 4.7.1."""

from __future__ import annotations

from collections import Counter

from sqlmodel import Session

from hub.core.config import Config
from hub.core.i18n import gettext
from hub.mail.intake.draft import Draft
from hub.mail.intake.limits import HourlyCount, sender_limit_key
from hub.mail.intake.outcome import Rejected
from hub.mail.intake.received import ReceivedMail
from hub.mail.intake.smtp_text import shown
from hub.store import limits as limits_sql


def sender_of(mail: ReceivedMail, draft: Draft) -> str:
    """Who the per-sender limit counts: the SMTP login, else the From, else MAIL FROM."""
    env = mail.env
    return (env.login.username if env.login else (draft.parsed.from_addr or env.mail_from)).lower()


def sender_quota(session: Session, config: Config, wanted: Counter[str]) -> Counter[str]:
    """Of WANTED (sender -> mails of this group), how many each sender may still send
    this minute, counted in SQL in the group's own transaction: the limit holds across
    every intake instance, and a group rolled back (then taken again) counted nothing.
    One UPSERT per sender of the group; one per mail only for a sender at its limit."""
    per_minute = config.smtp.mails_per_sender_per_minute
    quota: Counter[str] = Counter()
    # In one order on every instance: two groups never wait for each other's rows.
    for sender, n in sorted(wanted.items()):
        key = sender_limit_key(sender)
        if limits_sql.take(session, key, per_minute, 60.0, n=n).allowed:
            quota[sender] = n
            continue
        while quota[sender] < n and limits_sql.take(session, key, per_minute, 60.0).allowed:
            quota[sender] += 1
    return quota


def check_limits(
    session: Session,
    config: Config,
    hourly: HourlyCount,
    mail: ReceivedMail,
    draft: Draft,
    sent: Counter[int],
    quota: Counter[str],
) -> None:
    """The sender's mails per minute (QUOTA: what is left of it for this group) and the
    account's SMS from mail per hour (SENT: what this group queued so far); raises
    Rejected."""
    sender_key = sender_of(mail, draft)
    if quota[sender_key] <= 0:
        raise Rejected(
            "450 4.7.1 "
            + gettext(
                "%(sender)s sent more than %(limit)s mails this minute "
                "(smtp.mails_per_sender_per_minute); try again later",
                sender=shown(sender_key),
                limit=config.smtp.mails_per_sender_per_minute,
            )
        )
    quota[sender_key] -= 1
    account = draft.request.account
    assert isinstance(account, int)
    already = hourly.sent(session, account) + sent[account]
    limit = config.smtp.sms_per_account_per_hour
    if already + len(draft.request.recipients) > limit:
        raise Rejected(
            "450 4.7.1 "
            + gettext(
                "this account already sent %(count)s SMS from mail in the last hour "
                "(limit %(limit)s); try again later",
                count=already,
                limit=limit,
            )
        )
