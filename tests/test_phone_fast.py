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


# The digits-and-separators fast path (phone._fast_info) replays phonenumbers' reading from
# its metadata. It must give the reference's answer whenever it answers, for every supported
# region, in every usual writing: national, +CC, 00CC / the region's own IDD, CC without "+".
_SEPARATORS = [" ", " ", ".", "-", "", "  ", " - ", "/", ")", "("]
_FRENCH_SIDE = ["FR", "BE", "CH", "LU", "MC", "DE", "GB", "US", "CA", "IT", "ES", "MA", "DZ"]
_FRENCH_SIDE += ["TN", "RE", "GP", "MQ", "GF", "YT", "PM", "NC", "PF"]
_TYPES = [
    PNT.MOBILE,
    PNT.FIXED_LINE,
    PNT.TOLL_FREE,
    PNT.PREMIUM_RATE,
    PNT.SHARED_COST,
    PNT.VOIP,
    PNT.PERSONAL_NUMBER,
    PNT.PAGER,
    PNT.UAN,
    PNT.VOICEMAIL,
]


def _examples(region: str) -> list[PhoneNumber]:
    found = [phonenumbers.example_number_for_type(region, kind) for kind in _TYPES]
    return [n for n in found if n is not None]


def _written(rng: random.Random, head: str, body: str) -> str:
    """HEAD then BODY's digits in groups, with the separators people use."""
    groups = []
    i = 0
    while i < len(body):
        size = rng.choice([1, 2, 2, 3, 4])
        groups.append(body[i : i + size])
        i += size
    sep = rng.choice(_SEPARATORS)
    text = head + rng.choice(["", " ", sep]) + sep.join(groups)
    if rng.random() < 0.1:
        text = "(" + text + ")"
    if rng.random() < 0.05:
        text = rng.choice(["tel:", "TEL: ", " "]) + text
    return text


def _mutated(rng: random.Random, digits: str) -> str:
    """DIGITS with a random tail (often still valid), sometimes a digit more or less."""
    keep = rng.randint(max(0, len(digits) - 6), len(digits))
    tail = "".join(rng.choice("0123456789") for _ in range(len(digits) - keep))
    out = digits[:keep] + tail
    roll = rng.random()
    if roll < 0.1:
        out += rng.choice("0123456789")
    elif roll < 0.2:
        out = out[:-1]
    return out


def _writings(rng: random.Random, region: str, number: PhoneNumber) -> list[str]:
    meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
    assert meta is not None
    nsn = _mutated(rng, phonenumbers.national_significant_number(number))
    cc = str(number.country_code)
    prefix = meta.national_prefix or ""
    idd = meta.preferred_international_prefix or "00"
    if not idd.isdigit():
        idd = "00"
    return [
        _written(rng, "", prefix + nsn),
        _written(rng, "", nsn),
        _written(rng, rng.choice(["+", "+ "]) + cc, nsn),
        _written(rng, "+" + cc, rng.choice(["(0)", "0", ""]) + nsn),
        _written(rng, "00" + cc, nsn),
        _written(rng, idd + cc, nsn),
        _written(rng, cc, nsn),
    ]


def _random_number(rng: random.Random, region: str) -> str:
    meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
    assert meta is not None
    body = "".join(rng.choice("0123456789") for _ in range(rng.randint(0, 17)))
    code = str(rng.choice([meta.country_code, *rng.sample(_CODES, 2)]))
    head = rng.choice(["", "", meta.national_prefix or "0", "+" + code, "00" + code, code, "+"])
    return _written(rng, head, body)


_CODES = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
_ODD = ["", " ", "tel:", "+", "++33 6 12 34 56 78", "0", "00", "000", "+0", "+00 33", "x"]
_ODD += ["06 12 34 56 78 x12", "06-12-34-56-78#", "6", "06", "(06)", "()", "..", "+ ", "-1"]
_ODD += ["+33 6 12 34 56 78 9 0 1 2 3 4 5 6 7 8 9", "0" * 25, "9" * 25, "+" + "1" * 19]


def _corpus(region: str, seed: str, count: int) -> list[str]:
    rng = random.Random(seed + region)
    texts = list(_ODD)
    examples = _examples(region)
    others = [n for r in rng.sample(_FRENCH_SIDE, 3) for n in _examples(r)]
    while len(texts) < count:
        if examples and rng.random() < 0.55:
            texts += _writings(rng, region, rng.choice(examples))
        elif others and rng.random() < 0.3:
            texts += _writings(rng, region, rng.choice(others))
        else:
            texts.append(_random_number(rng, region))
    return texts


def _check_against_reference(texts: list[str], region: str) -> int:
    """Compare parse_number with the reference on TEXTS; how many took the fast path."""
    fast = 0
    for raw in texts:
        expected = _reference(raw, region)
        assert phone.parse_number(raw, region) == expected, (raw, region)
        text = phone._TEL_PREFIX.sub("", raw).strip()
        default = region.upper() if region.upper() in phonenumbers.SUPPORTED_REGIONS else None
        if text and phone._fast_info(raw, text, default) is not None:
            fast += 1
    return fast


@pytest.mark.parametrize("region", sorted(phonenumbers.SUPPORTED_REGIONS))
def test_fast_path_matches_the_reference_in_every_region(region: str) -> None:
    texts = _corpus(region, "every", 250)
    fast = _check_against_reference(texts, region)
    # Valid numbers come up in every region, so the fast path must have been taken (least
    # in AR, whose national prefix rules mostly leave numbers to the general path).
    assert fast > 10, (region, fast)


@pytest.mark.parametrize("region", _FRENCH_SIDE)
def test_fast_path_matches_the_reference_on_french_side_numbers(region: str) -> None:
    texts = _corpus(region, "french", 1000)
    assert _check_against_reference(texts, region) > 150
    # The same numbers read from France (a patient abroad, a number from the overseas).
    _check_against_reference(texts[:1000], "FR")


def test_bench_mobiles_take_the_fast_path() -> None:
    # As bench/reminders.py's mobile() writes them (a first sync of 20,000 appointments).
    rng = random.Random(20)
    for n in [0, 1, 19_999, 99_999_999, *rng.sample(range(100_000_000), 2000)]:
        digits = f"{n:08d}"
        raw = f"06 {digits[:2]} {digits[2:4]} {digits[4:6]} {digits[6:]}"
        got = phone._fast_info(raw, raw, "FR")
        expected = _reference(raw, "FR")
        if n < 20_000:
            assert got is not None and got.e164 == "+336" + digits and got.type == phone.MOBILE
        # Not every 06 range is allocated: those are left to the general path.
        assert got is None if not expected.valid else got == expected, raw
