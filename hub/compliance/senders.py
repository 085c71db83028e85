"""Sender ids (originators) per destination country.

A sender is either a *number* (``+`` optional, digits only: a phone number or a short
code, which recipients can answer) or a *name* (anything else: "ACME", "Cabinet-3",
which nobody can answer, so STOP replies never reach the hub). The GSM standard caps
names at 11 characters; operators add their own rules, held in ``SENDER_RULES``:

======== ===================================================================================
country  rule
======== ===================================================================================
FR       names: at most 11, ASCII letters and digits only (no space, accent or punctuation)
BE       numbers only: Belgian operators do not deliver named senders
CH       free: a name of up to 11 letters, digits, spaces and ``. - _ &``, or a number
US, CA   numbers only: North American carriers do not deliver named senders
others   ``DEFAULT_SENDER_RULE``, the conservative common ground: the Swiss rule
======== ===================================================================================

Every name needs at least one letter (all digits is a number) and no space at either
end; every number has 3 to 15 digits (E.164's maximum). A number that is neither a valid
phone number nor a known short code of the country passes with a warning, since
providers lend numbers phonenumbers cannot check.

To add a country, add ``"XX": SenderRule(...)`` to ``SENDER_RULES`` with a ``note``
saying why; its messages and the tests pick it up from there.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import phonenumbers
from phonenumbers import NumberParseException, shortnumberinfo

from hub.errors import InvalidInput

SenderKind = Literal["none", "number", "name"]

_NUMBER = re.compile(r"\+?[0-9]+")


@dataclass(frozen=True)
class SenderRule:
    """What one country's operators accept as a sender id."""

    # Names (alphanumeric senders) are delivered at all.
    names: bool = True
    # Longest name (11 is the GSM limit for alphanumeric originators).
    name_max: int = 11
    # Characters a name may use, as a regex character class body.
    name_chars: str = r"A-Za-z0-9 .\-_&"
    # The same in words, for error messages.
    name_chars_help: str = "letters, digits, spaces and . - _ &"
    # Numbers (phone numbers, short codes) are delivered.
    numbers: bool = True
    number_min_digits: int = 3
    number_max_digits: int = 15
    # Why the rule is what it is; shown when it refuses a sender.
    note: str = ""

    def name_pattern(self) -> re.Pattern[str]:
        """A regex matching one allowed name character."""
        return re.compile(f"[{self.name_chars}]")


DEFAULT_SENDER_RULE = SenderRule(
    note="the conservative default for countries without a rule of their own"
)

SENDER_RULES: dict[str, SenderRule] = {
    "FR": SenderRule(
        name_chars="A-Za-z0-9",
        name_chars_help="letters A-Z and digits only (no spaces, accents or punctuation)",
        note="French operators' rule for alphanumeric senders",
    ),
    "BE": SenderRule(names=False, note="Belgian operators deliver numeric senders only"),
    "CH": SenderRule(note="Swiss operators accept names and numbers"),
    "US": SenderRule(
        names=False,
        note="US carriers do not deliver alphanumeric senders; use a long number, "
        "a toll-free number or a short code",
    ),
    "CA": SenderRule(
        names=False,
        note="Canadian carriers do not deliver alphanumeric senders; use a long number "
        "or a short code",
    ),
}


@dataclass
class SenderCheck:
    """Whether a sender may be used for a country, why not, and what to know if so."""

    ok: bool
    reason: str | None = None
    warnings: list[str] = field(default_factory=list)
    kind: SenderKind = "none"

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (for JSON)."""
        return {
            "ok": self.ok,
            "reason": self.reason,
            "warnings": list(self.warnings),
            "kind": self.kind,
        }


def sender_kind(sender: str | None) -> SenderKind:
    """ "none" (the provider's default), "number" (+ and digits only) or "name"."""
    if not sender:
        return "none"
    return "number" if _NUMBER.fullmatch(sender) else "name"


def rule_for(country: str | None, rules: Mapping[str, SenderRule] | None = None) -> SenderRule:
    """The sender rule of COUNTRY (ISO code), else the default one."""
    table = SENDER_RULES if rules is None else rules
    return table.get((country or "").upper(), DEFAULT_SENDER_RULE)


def _refuse(
    sender: str, country: str | None, why: str, rule: SenderRule, kind: SenderKind
) -> SenderCheck:
    where = f"{country.upper()} numbers" if country else "numbers of an unknown country"
    note = f" ({rule.note})" if rule.note else ""
    return SenderCheck(
        ok=False, reason=f"sender {sender!r} cannot be used for {where}: {why}{note}", kind=kind
    )


def _is_known_number(sender: str, country: str | None) -> bool:
    """A valid phone number, or a valid short code of COUNTRY."""
    region = country.upper() if country else None
    try:
        parsed = phonenumbers.parse(sender, region)
    except NumberParseException:
        return False
    if phonenumbers.is_valid_number(parsed):
        return True
    return (
        region is not None
        and not sender.startswith("+")
        and shortnumberinfo.is_valid_short_number_for_region(parsed, region)
    )


def check_sender(
    sender: str | None, country: str | None, rules: Mapping[str, SenderRule] | None = None
) -> SenderCheck:
    """Check SENDER against the rule of the recipient's COUNTRY (None: the provider's default)."""
    kind = sender_kind(sender)
    if sender is None or kind == "none":
        return SenderCheck(ok=True, kind="none")
    rule = rule_for(country, rules)
    if kind == "number":
        digits = len(sender.lstrip("+"))
        if not rule.numbers:
            return _refuse(sender, country, "numeric senders are not delivered", rule, kind)
        if not rule.number_min_digits <= digits <= rule.number_max_digits:
            return _refuse(
                sender,
                country,
                f"a numeric sender has {rule.number_min_digits} to {rule.number_max_digits} "
                f"digits, not {digits}",
                rule,
                kind,
            )
        warnings = []
        if not _is_known_number(sender, country):
            warnings.append(
                f"sender {sender} is neither a valid phone number nor a known short code"
                + (f" in {country.upper()}" if country else "")
                + ": make sure your provider lends it to you, or replies will not arrive"
            )
        return SenderCheck(ok=True, warnings=warnings, kind=kind)

    if not rule.names:
        return _refuse(sender, country, "only numeric senders are delivered there", rule, kind)
    if len(sender) > rule.name_max:
        return _refuse(
            sender,
            country,
            f"a name has at most {rule.name_max} characters, this one has {len(sender)}",
            rule,
            kind,
        )
    allowed = rule.name_pattern()
    bad = sorted({ch for ch in sender if not allowed.fullmatch(ch)})
    if bad:
        shown = " ".join(repr(ch) for ch in bad)
        return _refuse(
            sender, country, f"a name may use {rule.name_chars_help}; not {shown}", rule, kind
        )
    if sender != sender.strip():
        return _refuse(sender, country, "a name may not start or end with a space", rule, kind)
    if not any(ch.isalpha() for ch in sender):
        return _refuse(
            sender,
            country,
            "a name needs at least one letter (digits alone make a number)",
            rule,
            kind,
        )
    return SenderCheck(
        ok=True,
        kind=kind,
        warnings=[
            f"sender {sender!r} is a name: recipients cannot reply to it, so their answers "
            "(and STOP) never reach the hub"
        ],
    )


def require_sender(
    sender: str | None,
    countries: Iterable[str | None],
    rules: Mapping[str, SenderRule] | None = None,
) -> list[str]:
    """Raise InvalidInput if SENDER is refused for any of COUNTRIES; else its warnings."""
    warnings: list[str] = []
    for country in sorted({(c or "").upper() for c in countries}):
        check = check_sender(sender, country or None, rules)
        if not check.ok:
            raise InvalidInput(check.reason or f"sender {sender!r} is not usable")
        warnings.extend(w for w in check.warnings if w not in warnings)
    return warnings
