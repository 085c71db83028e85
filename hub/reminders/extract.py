"""Who gets the reminder: a mobile number found in the event (the name to greet:
``hub.reminders.naming``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers

from hub.core import phone
from hub.ports.calendar import CalendarEvent

_PHONE_LINE = re.compile(
    r"^\s*(?:phone|mobile|tel|tél|téléphone|telephone|portable|gsm|handy|cell)\s*[:.]?\s*(.+)$",
    re.I | re.M,
)
# Parsing is most of finding a recipient (~50 us a number) and the same typed numbers come
# back: a patient's next appointments, every occurrence of a series, each re-plan after a
# settings change. NumberInfo is immutable, so sharing one is safe.
_parse_number = lru_cache(maxsize=16_384)(phone.parse_number)


@dataclass(frozen=True)
class Recipient:
    phone: str | None
    problem: str = ""
    # The number's country (what a reminder to it costs), when there is a number.
    country: str | None = None


def _numbers(text: str, region: str) -> list[phone.NumberInfo]:
    """The numbers phonenumbers finds in TEXT, in order (one pass of its matcher, the dearest
    step of finding a recipient: mobiles and landlines are both picked from it)."""
    return [
        _parse_number(match.raw_string, region)
        for match in phonenumbers.PhoneNumberMatcher(text, region)
    ]


def find_recipient(event: CalendarEvent, region: str) -> Recipient:
    """The event's mobile number (a 'Phone:' line first, then description, location, title);
    ``problem`` says why there is no usable number."""
    landline = ""
    for m in _PHONE_LINE.finditer(event.description):
        info = _parse_number(m.group(1).strip(), region)
        if info.valid and info.type == "mobile" and info.e164:
            return Recipient(info.e164, "", info.country)
        if info.valid and info.type == "landline":
            landline = info.e164 or ""
    for text in (event.description, event.location, event.title):
        found = _numbers(text, region) if text else []
        for info in found:
            if info.valid and info.type == "mobile" and info.e164:
                return Recipient(info.e164, "", info.country)
        for info in found:
            if info.valid and info.type == "landline":
                landline = info.e164 or ""
    problem = (
        f"only a landline number ({landline}), which cannot receive SMS"
        if landline
        else "no mobile number in the title, location or description"
    )
    return Recipient(None, problem)
