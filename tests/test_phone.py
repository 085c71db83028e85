"""Phone number parsing, classification, splitting and formatting."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hub.core.phone import (
    NumberInfo,
    can_receive_sms,
    format_international,
    is_alphanumeric_sender,
    parse_number,
    split_numbers,
)

# --- parse_number: known examples ---------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "06 12 34 56 78",
        "0612345678",
        "06.12.34.56.78",
        "06-12-34-56-78",
        "(06) 12 34 56 78",
        "+33 6 12 34 56 78",
        "+33 (0)6 12 34 56 78",
        "+33612345678",
        "0033612345678",
        "33612345678",
        "tel:+33612345678",
        "TEL:+33-6-12-34-56-78",
        "  06 12 34 56 78 \n",
        "\u00a006\u00a012\u00a034\u00a056\u00a078",
        "０６１２３４５６７８",  # full-width digits, as some phone keyboards type them
    ],
)
def test_french_mobile_in_any_format(raw: str) -> None:
    info = parse_number(raw)
    assert info == NumberInfo(
        input=raw, e164="+33612345678", country="FR", type="mobile", valid=True, reason=None
    )
    assert can_receive_sms(info)


@pytest.mark.parametrize(
    "raw", ["+41 79 123 45 67", "0041791234567", "0041 79 123 45 67", "41791234567"]
)
def test_swiss_mobile(raw: str) -> None:
    info = parse_number(raw)
    assert (info.e164, info.country, info.type, info.valid) == (
        "+41791234567",
        "CH",
        "mobile",
        True,
    )


def test_international_prefix_of_another_region() -> None:
    # 00 is not the US international prefix, yet people paste European-style numbers.
    assert parse_number("0041791234567", region="US").e164 == "+41791234567"


def test_region_is_case_insensitive() -> None:
    assert parse_number("079 123 45 67", region="ch").e164 == "+41791234567"


def test_french_landline() -> None:
    info = parse_number("01 23 45 67 89")
    assert (info.e164, info.country, info.type, info.valid) == (
        "+33123456789",
        "FR",
        "landline",
        True,
    )
    assert not can_receive_sms(info)


def test_fixed_line_or_mobile_counts_as_mobile() -> None:
    info = parse_number("(201) 555-0123", region="US")
    assert (info.e164, info.country, info.type) == ("+12015550123", "US", "mobile")
    assert can_receive_sms(info)


@pytest.mark.parametrize(
    ("raw", "country"),
    [("08 00 12 34 56", "FR"), ("+800 1234 5678", None)],  # toll free; +800 is non-geographic
)
def test_other_types_are_valid_but_not_sms(raw: str, country: str | None) -> None:
    info = parse_number(raw)
    assert (info.type, info.valid, info.country, info.reason) == ("other", True, country, None)
    assert not can_receive_sms(info)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("tel:", "empty"),
        ("hello", "not a phone number"),
        ("06 12 34 56 78 ext 12", "not a phone number"),
        ("1-800-FLOWERS", "not a phone number"),
        ("+", "not a phone number"),
        ("061234", "too short for FR"),
        ("06123456789012", "too long for FR"),
        ("+4179123", "too short for CH"),
        ("+999 1234 5678", "unknown country code"),
    ],
)
def test_invalid_with_reason(raw: str, reason: str) -> None:
    info = parse_number(raw)
    assert not info.valid
    assert info.type == "invalid"
    assert info.e164 is None
    assert info.reason == reason
    assert not can_receive_sms(info)


def test_not_valid_in_country() -> None:
    # Right length for France, but no French number starts with 00 after the trunk 0.
    info = parse_number("00 00 00 00 00")
    assert (info.valid, info.country, info.reason) == (False, "FR", "not a valid number in FR")


def test_unknown_default_region() -> None:
    assert (
        parse_number("0612345678", region="XX").reason == "no country code and no default country"
    )
    assert parse_number("+33612345678", region="XX").e164 == "+33612345678"


def test_to_dict_keys() -> None:
    d = parse_number("0612345678").to_dict()
    assert set(d) == {"input", "e164", "country", "type", "valid", "reason"}
    assert d["e164"] == "+33612345678"


# --- parse_number: properties -------------------------------------------------------


@settings(max_examples=200)
@given(st.text(max_size=40), st.sampled_from(["FR", "CH", "US", "BE", "", "XX", "fr"]))
def test_never_raises_and_is_consistent(raw: str, region: str) -> None:
    info = parse_number(raw, region)
    assert info.input == raw
    assert info.valid == (info.reason is None) == (info.e164 is not None)
    assert (info.type == "invalid") == (not info.valid)
    assert info.type in {"mobile", "landline", "other", "invalid"}
    if not info.valid:
        assert info.reason
    if info.e164 is not None:
        assert info.e164.startswith("+") and info.e164[1:].isdigit()


@settings(max_examples=200)
@given(st.text(alphabet="0123456789 +-.()", max_size=25), st.sampled_from(["FR", "CH", "US"]))
def test_digit_soup_never_raises(raw: str, region: str) -> None:
    info = parse_number(raw, region)
    assert info.valid == (info.e164 is not None)


def _pool() -> list[str]:
    numbers = {"+33612345678", "+33698765432", "+33123456789", "+41791234567", "+12015550123"}
    for region in ["FR", "CH", "BE", "ES", "GB", "US", "NL", "SE"]:
        for kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is not None:
                numbers.add(
                    phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
                )
    return sorted(numbers)


POOL = _pool()
FORMATS = ["e164", "international", "00", "no-plus", "dots", "tel", "national"]


def _render(e164: str, how: str) -> str:
    number = phonenumbers.parse(e164)
    intl = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    if how == "e164":
        return e164
    if how == "international":
        return intl
    if how == "00":
        return "00" + e164[1:]
    if how == "no-plus":
        return e164[1:]
    if how == "dots":
        return intl.replace(" ", ".")
    if how == "tel":
        return "tel:" + e164
    # National format only means something in the default region (France here).
    if phonenumbers.region_code_for_number(number) == "FR":
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    return intl


def _ambiguous(rendered: str, e164: str) -> bool:
    # Digits without "+" are read as French first, by design ("468123456" is a Lyon
    # landline before it is Stockholm); skip numbers whose digits mean another valid
    # French number.
    if rendered.startswith(("+", "0", "tel")):
        return False
    french = phonenumbers.parse(rendered, "FR")
    return phonenumbers.is_valid_number(french) and (
        phonenumbers.format_number(french, phonenumbers.PhoneNumberFormat.E164) != e164
    )


@settings(max_examples=200)
@given(st.sampled_from(POOL), st.sampled_from(FORMATS))
def test_every_format_parses_back(e164: str, how: str) -> None:
    rendered = _render(e164, how)
    assume(not _ambiguous(rendered, e164))
    info = parse_number(rendered)
    assert info.valid, (rendered, info)
    assert info.e164 == e164


@settings(max_examples=200)
@given(st.sampled_from(POOL))
def test_format_international_round_trip(e164: str) -> None:
    assert parse_number(format_international(e164)).e164 == e164


def test_format_international() -> None:
    assert format_international("+33612345678") == "+33 6 12 34 56 78"
    assert format_international("+41791234567") == "+41 79 123 45 67"
    assert format_international("not a number") == "not a number"


# --- split_numbers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        ("06 98 76 54 32", ["06 98 76 54 32"]),
        ("+33612345678 0698765432", ["+33612345678", "0698765432"]),
        ("06 12 34 56 78 06 98 76 54 32", ["06 12 34 56 78", "06 98 76 54 32"]),
        ("0612345678,0698765432", ["0612345678", "0698765432"]),
        (
            "0612345678 ; 0698765432\n+41 79 123 45 67",
            ["0612345678", "0698765432", "+41 79 123 45 67"],
        ),
        ("\t+33 6 12 34 56 78\t\t+41 79 123 45 67  ", ["+33 6 12 34 56 78", "+41 79 123 45 67"]),
        ("0612345678,, ;\n\n", ["0612345678"]),
        ("", []),
        # Leftovers stay together so their error message makes sense.
        ("0612345678 06 12 34 5", ["0612345678", "06 12 34 5"]),
        ("hello 0612345678", ["hello", "0612345678"]),
    ],
)
def test_split_numbers_examples(text: str, pieces: list[str]) -> None:
    assert split_numbers(text) == pieces


# Fixed-length plans only: with variable-length plans (DE, AT, IT) a number followed
# by a single space and the next number's first digits can itself be valid, and no
# splitter can know which reading was meant.
SPLIT_POOL = [e for e in POOL if e.startswith(("+33", "+41", "+1", "+32", "+34", "+447"))]
SEPARATORS = [",", ", ", ";", " ; ", "\n", "\r\n", "  ", "\t", " "]


@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(st.sampled_from(SPLIT_POOL), st.sampled_from(FORMATS)), min_size=1, max_size=6
    ),
    st.lists(st.sampled_from(SEPARATORS), min_size=6, max_size=6),
)
def test_split_numbers_round_trip(items: list[tuple[str, str]], seps: list[str]) -> None:
    rendered = [_render(e164, how) for e164, how in items]
    assume(not any(_ambiguous(r, e164) for r, (e164, _) in zip(rendered, items, strict=True)))
    text = "".join(r + sep for r, sep in zip(rendered, seps, strict=False)).rstrip(" \t")
    pieces = split_numbers(text)
    assert [parse_number(p).e164 for p in pieces] == [e164 for e164, _ in items], (text, pieces)


def _content(text: str) -> str:
    return "".join(ch for ch in text if not ch.isspace() and ch not in ",;")


@settings(max_examples=200)
@given(st.text(alphabet=st.sampled_from(list("0123456789+ ,;\n\t.-()ab")), max_size=80))
def test_split_numbers_keeps_content_in_order(text: str) -> None:
    pieces = split_numbers(text)
    assert _content("".join(pieces)) == _content(text)
    for piece in pieces:
        assert piece and piece == piece.strip()
        assert not set(piece) & set(",;\r\n")


@settings(max_examples=100)
@given(st.text(max_size=80))
def test_split_numbers_never_raises(text: str) -> None:
    assert _content("".join(split_numbers(text))) == _content(text)


# --- sender helper ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sender", "alpha"),
    [("MyShop", True), ("Shop24", True), ("+33612345678", False), ("36180", False), ("", False)],
)
def test_is_alphanumeric_sender(sender: str, alpha: bool) -> None:
    assert is_alphanumeric_sender(sender) is alpha
