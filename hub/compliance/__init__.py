"""Campaign rules: the pure checks submit() and the dispatcher apply to what they send.

- ``hours``: marketing SMS go out only inside the recipient country's marketing hours
  (08:00-20:00, Monday-Saturday, no public holidays by default): ``next_allowed_time``,
  ``is_allowed``, and ``marketing_due_at`` for the "defer" or "refuse" policy.
- ``optout_mention``: marketing SMS from a named sender get the opt-out mention
  ("STOP au 36173"), and ``billable_text`` is the exact text counted and charged.
- ``senders``: per-country sender id rules (``SENDER_RULES``), ``check_sender``.
- ``preview`` puts them together for "what will this send look like and cost".

Nothing here touches the database or the clock: the caller passes the moment.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hub.compliance.hours import (
    MarketingHours,
    country_time_zones,
    is_allowed,
    is_public_holiday,
    marketing_due_at,
    next_allowed_time,
    time_zones,
)
from hub.compliance.optout_mention import (
    OptOutMention,
    OptOutRules,
    billable_text,
    has_mention,
    needs_optout_mention,
    with_optout_mention,
)
from hub.compliance.senders import (
    DEFAULT_SENDER_RULE,
    SENDER_RULES,
    SenderCheck,
    SenderRule,
    check_sender,
    require_sender,
    rule_for,
    sender_kind,
)
from hub.core import segments
from hub.core.timeutil import as_utc
from hub.errors import NoMarketingWindow, OutsideMarketingHours

__all__ = [
    "DEFAULT_SENDER_RULE",
    "SENDER_RULES",
    "MarketingHours",
    "NoMarketingWindow",
    "OptOutMention",
    "OptOutRules",
    "OutsideMarketingHours",
    "SenderCheck",
    "SenderRule",
    "billable_text",
    "check_sender",
    "country_time_zones",
    "has_mention",
    "is_allowed",
    "is_public_holiday",
    "marketing_due_at",
    "needs_optout_mention",
    "next_allowed_time",
    "preview",
    "require_sender",
    "rule_for",
    "sender_kind",
    "time_zones",
    "with_optout_mention",
]


def preview(
    text: str,
    sender: str | None,
    type: str,
    country: str | None = None,
    *,
    mention: OptOutMention | None = None,
    hours: MarketingHours | None = None,
    at: datetime | None = None,
    number: str | None = None,
    rules: OptOutRules | None = None,
    public_url: str = "",
) -> dict[str, Any]:
    """What a send of TEXT would be: the final text, its parts and encoding, and warnings.

    COUNTRY (ISO) picks the sender rule and marketing hours; AT, for a marketing SMS,
    adds when it would go out (``schedule``). RULES picks COUNTRY's opt-out mention (a link
    to PUBLIC_URL/u/…, counted with a code of the real length). Refusals are reported in
    ``errors`` rather than raised, since a preview is there to show them.
    """
    mention = mention or OptOutMention()
    hours = hours or MarketingHours()
    final = billable_text(
        text, sender, type, mention, country=country, rules=rules, public_url=public_url
    )
    info = segments.count(final)
    check = check_sender(sender, country)
    errors: list[str] = [] if check.ok else [check.reason or "sender refused"]
    warnings = list(check.warnings)
    added = final != text
    if added:
        before = segments.count(text).segments
        shown = final[len(text.rstrip()) :].strip()
        warnings.append(
            f"the opt-out mention {shown!r} is added on its own line "
            f"(+{len(final) - len(text)} characters)"
            + (f": {before} part(s) become {info.segments}" if info.segments > before else "")
        )
    schedule: dict[str, Any] | None = None
    if type == "marketing" and at is not None:
        requested = as_utc(at)
        try:
            due = next_allowed_time(requested, country, hours, number=number)
        except NoMarketingWindow as exc:
            errors.append(str(exc))
        else:
            deferred = due != requested
            refused = deferred and hours.outside_hours == "refuse"
            schedule = {
                "requested": requested.isoformat(),
                "due": None if refused else due.isoformat(),
                "next_allowed": due.isoformat(),
                "deferred": deferred and not refused,
            }
            if refused:
                errors.append(
                    f"outside marketing hours ({hours.describe()}); refused "
                    f"(next allowed {due.isoformat()})"
                )
            elif deferred:
                warnings.append(
                    f"outside marketing hours ({hours.describe()}); it would wait until "
                    f"{due.isoformat()}"
                )
    return {
        "text": final,
        "mention_added": added,
        **info.to_dict(),
        "parts": segments.split(final),
        "sender": sender,
        "sender_kind": check.kind,
        "ok": not errors,
        "errors": errors,
        "warnings": warnings,
        "schedule": schedule,
    }
