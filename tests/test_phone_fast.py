"""``parse_number``'s shortcuts give exactly what phonenumbers gives without them.

A number of digits and spaces is handed to phonenumbers without its spaces, and the
character tests run as regular expressions: the results (valid or not, E.164, country, type,
the reason for a refusal) must be those of the plain per-character code and of phonenumbers
reading the text as typed.
"""

from __future__ import annotations

import random

import phonenumbers
import pytest
from phonenumbers import NumberParseException, PhoneNumber, PhoneNumberFormat
from phonenumbers import PhoneNumberType as PNT

from hub.core import phone
from hub.core.phone import NumberInfo

REGIONS = ["FR", "US", "GB", "DE", "IT", "BE", "CH", "BR", "JP", "ZZ", None]


def _as_typed(text: str, region: str | None) -> PhoneNumber | str:
    """phonenumbers' reading of TEXT as typed: the number, or the refusal's kind."""
    try:
        return phonenumbers.parse(text, region)
    except NumberParseException as exc:
        return f"error {exc.error_type}"


# Prefixes and lengths of real plans (FR, CH, US, GB, IT, DE, BE), so that valid numbers
# come up often, with and without their international forms.
_PLANS = [("06", 8), ("07", 8), ("01", 8), ("0033 6", 8), ("33 7", 8), ("+33 6", 8)]
_PLANS += [("+41 79", 7), ("0041 78", 7), ("079", 7), ("+1 415", 7), ("1 212", 7), ("415", 7)]
_PLANS += [("+44 7700", 6), ("07911", 6), ("+39 3", 9), ("+49 151", 8), ("0151", 8), ("0470", 6)]


def _spaced_digits(rng: random.Random) -> str:
    if rng.random() < 0.6:
        prefix, length = rng.choice(_PLANS)
        length += rng.choice([0, 0, 0, -1, 1])
        digits = prefix.replace(" ", "") + "".join(rng.choice("0123456789") for _ in range(length))
    else:
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(0, 18)))
    text = ""
    for ch in digits:
        text += ch + " " * rng.choice([0, 0, 0, 1, 1, 2])
    text = text.strip()
    if rng.random() < 0.2 and not text.startswith("+"):
        text = "+" + " " * rng.choice([0, 0, 1]) + text
    return text


def _samples() -> list[str]:
    rng = random.Random(7)
    fixed = [
        "1 2",
        "12",
        "+1 2",
        "1 2 3",
        "06 12 34 56 78",
        "+33 6 12 34 56 78",
        "0033 6 12 34 56 78",
    ]
    fixed += ["41 79 123 45 67", "+ 41 79 123 45 67", "00 41 79 123 45 67", "0 0 41 79 123 45 67"]
    fixed += ["3" * 30, " ".join("3" * 30), "+" + " ".join("6" * 20), "0  6 12"]
    return fixed + [_spaced_digits(rng) for _ in range(1500)]


def _shortened(text: str) -> bool:
    """Whether ``_parse`` hands TEXT to phonenumbers without its spaces."""
    compact = text.replace(" ", "")
    return (
        compact != text
        and bool(phone._SPACED_DIGITS.fullmatch(text))
        and len(compact.lstrip("+")) >= 3
    )


@pytest.mark.parametrize("region", REGIONS)
def test_spaced_digits_parse_as_typed(region: str | None) -> None:
    shortened = 0
    for text in _samples():
        expected = _as_typed(text, region)
        if _shortened(text):
            shortened += 1
            # The number, or the kind of refusal (which _parse_failure explains), alike.
            assert _as_typed(text.replace(" ", ""), region) == expected, (text, region)
        got = phone._parse(text, region)
        assert got == (expected if isinstance(expected, PhoneNumber) else None), (text, region)
    assert shortened > 1000


# parse_number as it was written before its shortcuts (per-character tests, every reading
# through phonenumbers as typed): the reference every result is compared with.
def _reference(raw: str, region: str = "FR") -> NumberInfo:
    text = phone._TEL_PREFIX.sub("", raw).strip()
    if not text:
        return phone._invalid(raw, "empty")
    chars_ok = all(ch.isdecimal() or ch.isspace() or ch in phone._PUNCTUATION for ch in text)
    if not (any(ch.isdecimal() for ch in text) and chars_ok):
        return phone._invalid(raw, "not a phone number")
    default = region.upper() if region else None
    if default not in phonenumbers.SUPPORTED_REGIONS:
        default = None

    def typed(t: str, r: str | None) -> PhoneNumber | None:
        found = _as_typed(t, r)
        return found if isinstance(found, PhoneNumber) else None

    candidates = [typed(text, default)]
    if not text.startswith("+"):
        if text.startswith("00"):
            candidates.append(typed("+" + text[2:], None))
        candidates.append(typed("+" + text, None))
    for number in candidates:
        if number is not None and phonenumbers.number_type(number) != PNT.UNKNOWN:
            kind = phonenumbers.number_type(number)
            return NumberInfo(
                input=raw,
                e164=phonenumbers.format_number(number, PhoneNumberFormat.E164),
                country=phone._region_of(number),
                type=phone._classify(kind),
                valid=True,
                reason=None,
            )
    number = candidates[0] or next((n for n in candidates if n is not None), None)
    if number is None:
        return phone._invalid(raw, phone._parse_failure(text, default))
    reason, country = phone._why_invalid(number, default)
    return phone._invalid(raw, reason, country)


def _human(rng: random.Random) -> str:
    text = _spaced_digits(rng)
    roll = rng.random()
    if roll < 0.2:
        text = text.replace(" ", rng.choice([".", "-", "\u00a0", "\t", "/", " - "]))
    elif roll < 0.3:
        text = rng.choice(["tel:", "TEL: ", " ", "(0)", "x", "ext 12 ", "#"]) + text
    elif roll < 0.35:
        text += rng.choice([" x12", "#", " ;", "a", "٣", "  "])
    return text


@pytest.mark.parametrize("region", ["FR", "US", "CH", "BE", "", "zz", "de"])
def test_parse_number_matches_the_reference(region: str) -> None:
    rng = random.Random(region)
    for raw in _samples()[:300] + [_human(rng) for _ in range(700)]:
        assert phone.parse_number(raw, region) == _reference(raw, region), (raw, region)


def test_character_classes_match_the_per_character_tests() -> None:
    # Every code point (surrogates included): re's \d and \s are str.isdecimal and isspace.
    for cp in range(0x110000):
        ch = chr(cp)
        per_char = ch.isdecimal() or ch.isspace() or ch in phone._PUNCTUATION
        assert phone._number_chars_only(ch) == per_char, hex(cp)
        assert (phone._DECIMAL.search(ch) is not None) == ch.isdecimal(), hex(cp)
