"""The opt-out mention ("STOP au 36173") on marketing SMS.

A marketing SMS from a named sender cannot be answered, so it must tell the recipient
how to opt out: the mention is appended on a line of its own (after the text with its
trailing whitespace removed), so it never glues onto a final URL or word and reads as a
footer on every phone; a newline costs the same one septet as a space.

It is not appended twice: a text that already contains the mention (case and runs of
whitespace aside) keeps its own. Another STOP instruction ("STOP au 36180") does not
count, because only the configured number's STOP reaches this hub.

A number (or no sender: the provider's own number) can take a STOP reply, so the mention
is optional there (``append_for_numeric_sender``, off by default). Alerts never get it.

The mention is part of what is sent, so it is counted in the segments and charged:
``billable_text`` is the exact text that goes on the wire.

Which mention depends on the destination country (``OptOutRules``, the ``[compliance]``
table): France has the STOP reply number; in Switzerland and Belgium professional SMS cannot
be answered, so the mention is a short web link (``PUBLIC_URL/u/CODE``, one code per
recipient) to a page of the hub that confirms and blacklists the number. Countries not listed
get the conservative default, the link, which works wherever the recipient has a browser.
A link mention is added to every marketing SMS, whatever the sender: a reply to it would
not reach the hub either.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

from hub.compliance.senders import sender_kind

SEPARATOR = "\n"
_TYPES = ("alert", "marketing")
# The code of a link mention; every code has this length, so a text can be counted with a
# placeholder before the codes exist (hub.campaigns.links' short codes have the same alphabet).
LINK_CODE_LENGTH = 8
PLACEHOLDER_CODE = "x" * LINK_CODE_LENGTH
Rule = Literal["stop", "link", "none"]


class OptOutMention(BaseModel):
    """The opt-out mention appended to marketing SMS."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Appended on its own line to marketing SMS from a named sender (which cannot take a
    # STOP reply). Empty: never appended (the texts must then carry it themselves).
    text: str = "STOP au 36173"
    # Also append it when the sender is a number or the provider's default, which can
    # take STOP replies (customary in France, not required).
    append_for_numeric_sender: bool = False


class OptOutRules(BaseModel):
    """``[compliance]``: which opt-out mention each destination country gets."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # "stop": the STOP reply mention of [optout_mention]; "link": a web unsubscribe link;
    # "none": nothing added (the texts must carry it themselves). Countries not listed in
    # optout_countries get optout_default.
    optout_default: Rule = "link"
    optout_countries: dict[str, Rule] = {"FR": "stop", "CH": "link", "BE": "link"}
    # The link mention; {url} is the recipient's unsubscribe link (PUBLIC_URL/u/CODE).
    link_text: str = "STOP: {url}"

    @field_validator("optout_countries")
    @classmethod
    def _upper(cls, value: dict[str, Rule]) -> dict[str, Rule]:
        for country in value:
            if len(country) != 2 or not country.isalpha():
                raise ValueError(f"{country!r} is not a two-letter country code such as FR")
        return {k.upper(): v for k, v in value.items()}

    @field_validator("link_text")
    @classmethod
    def _has_url(cls, value: str) -> str:
        if "{url}" not in value:
            raise ValueError("link_text must contain {url}, where the unsubscribe link goes")
        return value

    def rule(self, country: str | None) -> Rule:
        """The mention COUNTRY (ISO, None: unknown) gets."""
        return self.optout_countries.get((country or "").upper(), self.optout_default)


def unsubscribe_url(public_url: str, code: str = PLACEHOLDER_CODE) -> str:
    """The address of an unsubscribe link (the placeholder code counts as every code)."""
    return public_url.rstrip("/") + "/u/" + code


def _normalized(text: str) -> str:
    return " ".join(text.split()).casefold()


def has_mention(text: str, mention: str) -> bool:
    """True when TEXT already contains MENTION, ignoring case and runs of whitespace."""
    wanted = _normalized(mention)
    return bool(wanted) and wanted in _normalized(text)


def needs_optout_mention(sender: str | None, type: str, mention: OptOutMention) -> bool:
    """True when a message of TYPE from SENDER must carry the mention."""
    if type not in _TYPES:
        raise ValueError(f"message type must be 'alert' or 'marketing', not {type!r}")
    if type != "marketing" or not mention.text.strip():
        return False
    return sender_kind(sender) == "name" or mention.append_for_numeric_sender


def with_optout_mention(text: str, sender: str | None, type: str, mention: OptOutMention) -> str:
    """TEXT with the opt-out mention appended when the rules call for it (and it is absent)."""
    if not needs_optout_mention(sender, type, mention) or has_mention(text, mention.text):
        return text
    if not text.strip():
        # Nothing to put a footer under: the empty text must stay empty and be refused.
        return text
    return text.rstrip() + SEPARATOR + mention.text.strip()


def rule_for(sender: str | None, type: str, country: str | None, rules: OptOutRules | None) -> Rule:
    """The mention a message of TYPE to COUNTRY gets (RULES None: the STOP mention only)."""
    if type not in _TYPES:
        raise ValueError(f"message type must be 'alert' or 'marketing', not {type!r}")
    if type != "marketing":
        return "none"
    return "stop" if rules is None else rules.rule(country)


def with_link_mention(text: str, rules: OptOutRules, url: str) -> str:
    """TEXT with the unsubscribe link URL appended on its own line (not to an empty text)."""
    if not text.strip():
        return text
    return text.rstrip() + SEPARATOR + rules.link_text.replace("{url}", url).strip()


def billable_text(
    text: str,
    sender: str | None,
    type: str,
    mention: OptOutMention,
    *,
    country: str | None = None,
    rules: OptOutRules | None = None,
    public_url: str = "",
    code: str = PLACEHOLDER_CODE,
) -> str:
    """The exact text that will be sent, hence counted in segments and charged.

    With RULES, the mention follows COUNTRY's rule; a link mention points at
    PUBLIC_URL/u/CODE (the placeholder code, of the same length as every code, to count).
    """
    rule = rule_for(sender, type, country, rules)
    if rule == "link" and rules is not None:
        return with_link_mention(text, rules, unsubscribe_url(public_url, code))
    if rule == "none":
        return text
    return with_optout_mention(text, sender, type, mention)
