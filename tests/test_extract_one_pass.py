"""``find_recipient`` runs phonenumbers' matcher once per text (mobiles and landlines picked
from the same matches): the recipient, its country and the problem are what the former two
passes (mobiles, then landlines) gave, wherever the numbers are and however many."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime

import phonenumbers
import pytest

from hub.core import phone
from hub.ports.calendar import CalendarEvent
from hub.reminders.extract import _PHONE_LINE, Recipient, find_recipient


def _reference(event: CalendarEvent, region: str) -> Recipient:
    """find_recipient as written before: a pass for mobiles, another for landlines."""
    landline = ""
    for m in _PHONE_LINE.finditer(event.description):
        info = phone.parse_number(m.group(1).strip(), region)
        if info.valid and info.type == "mobile" and info.e164:
            return Recipient(info.e164, "", info.country)
        if info.valid and info.type == "landline":
            landline = info.e164 or ""
    for text in (event.description, event.location, event.title):
        mobiles = [
            info
            for match in phonenumbers.PhoneNumberMatcher(text, region)
            for info in [phone.parse_number(match.raw_string, region)]
            if info.valid and info.type == "mobile" and info.e164
        ]
        if mobiles:
            return Recipient(mobiles[0].e164, "", mobiles[0].country)
        for match in phonenumbers.PhoneNumberMatcher(text, region):
            info = phone.parse_number(match.raw_string, region)
            if info.valid and info.type == "landline":
                landline = info.e164 or ""
    problem = (
        f"only a landline number ({landline}), which cannot receive SMS"
        if landline
        else "no mobile number in the title, location or description"
    )
    return Recipient(None, problem)


PIECES = [
    "",
    "Kiné M. Blanc",
    "06 12 34 56 78",
    "01 42 68 53 00",
    "+41 79 123 45 67",
    "+41 44 668 18 00",
    "04 72 00 00 00 ou 05 56 00 00 00",
    "Séance 3/10",
    "12 rue de la Paix",
    "Tel: 01 23 45 67 89",
    "Portable: 07 00 00 00 01",
    "+1 415 555 2671",
    "0033 6 98 76 54 32",
]


def _texts(rng: random.Random) -> str:
    return " ".join(rng.sample(PIECES, rng.randint(0, 3)))


@pytest.mark.parametrize("region", ["FR", "CH", "US"])
def test_same_recipient_as_two_passes(region: str) -> None:
    rng = random.Random(region)
    events = [
        CalendarEvent(
            uid=f"e{n}",
            occurrence="",
            start=datetime(2026, 12, 1, tzinfo=UTC),
            title=title,
            location=location,
            description=description,
        )
        for n, (title, location, description) in enumerate(
            itertools.islice(
                (
                    (_texts(rng), _texts(rng), "\n".join([_texts(rng), _texts(rng)]))
                    for _ in itertools.count()
                ),
                400,
            )
        )
    ]
    found = [find_recipient(e, region) for e in events]
    assert found == [_reference(e, region) for e in events]
    # The samples reach every outcome: a mobile, only a landline, nothing.
    assert {bool(r.phone) for r in found} == {True, False}
    assert any(r.problem.startswith("only a landline") for r in found)
