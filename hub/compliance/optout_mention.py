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
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from hub.compliance.senders import sender_kind

SEPARATOR = "\n"
_TYPES = ("alert", "marketing")


class OptOutMention(BaseModel):
    """The opt-out mention appended to marketing SMS."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Appended on its own line to marketing SMS from a named sender (which cannot take a
    # STOP reply). Empty: never appended (the texts must then carry it themselves).
    text: str = "STOP au 36173"
    # Also append it when the sender is a number or the provider's default, which can
    # take STOP replies (customary in France, not required).
    append_for_numeric_sender: bool = False


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


def billable_text(text: str, sender: str | None, type: str, mention: OptOutMention) -> str:
    """The exact text that will be sent, hence counted in segments and charged."""
    return with_optout_mention(text, sender, type, mention)
