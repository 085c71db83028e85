"""Who gets the reminder: a mobile number and a name found in the event."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers

from hub import phone
from hub.calendars import CalendarEvent

_PHONE_LINE = re.compile(
    r"^\s*(?:phone|mobile|tel|tél|téléphone|telephone|portable|gsm|handy|cell)\s*[:.]?\s*(.+)$",
    re.I | re.M,
)
# Parsing is most of finding a recipient (~50 us a number) and the same typed numbers come
# back: a patient's next appointments, every occurrence of a series, each re-plan after a
# settings change. NumberInfo is immutable, so sharing one is safe.
_parse_number = lru_cache(maxsize=16_384)(phone.parse_number)

_NAME_LINE = re.compile(r"^\s*(?:name|nom|patient|client|customer)\s*[:.]\s*(.+)$", re.I | re.M)


@dataclass(frozen=True)
class Recipient:
    phone: str | None
    name: str
    problem: str = ""
    # The number's country (what a reminder to it costs), when there is a number.
    country: str | None = None


def _mobiles(text: str, region: str) -> list[phone.NumberInfo]:
    found = []
    for match in phonenumbers.PhoneNumberMatcher(text, region):
        info = _parse_number(match.raw_string, region)
        if info.valid and info.type == "mobile" and info.e164:
            found.append(info)
    return found


def find_recipient(event: CalendarEvent, region: str) -> Recipient:
    """The event's mobile number (a 'Phone:' line first, then description, location, title)
    and the person's name; ``problem`` says why there is no usable number."""
    name = ""
    m = _NAME_LINE.search(event.description)
    if m:
        name = m.group(1).strip()
    elif event.attendees and event.attendees[0].name:
        name = event.attendees[0].name or ""
    landline = ""
    for m in _PHONE_LINE.finditer(event.description):
        info = _parse_number(m.group(1).strip(), region)
        if info.valid and info.type == "mobile" and info.e164:
            return Recipient(info.e164, name or _name_from_title(event.title), "", info.country)
        if info.valid and info.type == "landline":
            landline = info.e164 or ""
    for text in (event.description, event.location, event.title):
        mobiles = _mobiles(text, region)
        if mobiles:
            first = mobiles[0]
            return Recipient(first.e164, name or _name_from_title(event.title), "", first.country)
        for match in phonenumbers.PhoneNumberMatcher(text, region):
            info = _parse_number(match.raw_string, region)
            if info.valid and info.type == "landline":
                landline = info.e164 or ""
    problem = (
        f"only a landline number ({landline}), which cannot receive SMS"
        if landline
        else "no mobile number in the title, location or description"
    )
    return Recipient(None, name or _name_from_title(event.title), problem)


def _name_from_title(title: str) -> str:
    # "RDV Jeanne Durand 06 12 34 56 78" → "Jeanne Durand": drop numbers and common prefixes.
    text = re.sub(r"[+()\d][\d .()\-]{5,}\d", " ", title)
    text = re.sub(
        r"^\s*(rdv|rendez-vous|appointment|consultation|appt)\b[\s:\-–]*", "", text, flags=re.I
    )
    return " ".join(text.split()).strip(" -–:")
