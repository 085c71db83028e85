"""Phone number parsing, classification and splitting, on top of ``phonenumbers``.

Everything here is pure and never raises on bad input: a number that cannot be used
comes back as a ``NumberInfo`` with ``valid=False`` and a short human reason, so one bad
recipient never stops the others.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import phonenumbers
from phonenumbers import (
    NumberParseException,
    PhoneMetadata,
    PhoneNumber,
    PhoneNumberDesc,
    PhoneNumberFormat,
)
from phonenumbers import PhoneNumberType as PNT
from phonenumbers import ValidationResult as VR

MOBILE = "mobile"
LANDLINE = "landline"
OTHER = "other"
INVALID = "invalid"

# Many plans (US, CA, ...) cannot tell mobile from fixed lines; treating those as
# mobile is the only way SMS to them can go out at all.
_MOBILE_TYPES = {PNT.MOBILE, PNT.FIXED_LINE_OR_MOBILE}

# Characters people put between digits. Anything else (letters, "x" extensions, "*")
# makes the input "not a phone number" rather than letting phonenumbers dig a number out
# of free text or read letters as a vanity keypad.
_PUNCTUATION = set("+-.()/[]~‐‑‒–—―−ー－／（）［］．～⁓∼")
_TEL_PREFIX = re.compile(r"^\s*tel:", re.IGNORECASE)
_CHUNK_SEPARATORS = re.compile(r"[,;\r\n]+")
# E.164 allows 15 digits; an international prefix adds up to 3-4. Past these a group
# of tokens cannot be one number, which bounds the regrouping work in split_numbers
# ("+ 3 3 6 1 2 3 4 5 6 7 8", digit by digit, is 12 tokens).
_MAX_DIGITS = 20
_MAX_TOKENS = 16


@dataclass(frozen=True)
class NumberInfo:
    """What we know about one phone number as typed by a person."""

    input: str
    e164: str | None
    country: str | None
    type: str
    valid: bool
    reason: str | None

    def to_dict(self) -> dict[str, str | bool | None]:
        """The fields as a plain dict (for JSON)."""
        return {
            "input": self.input,
            "e164": self.e164,
            "country": self.country,
            "type": self.type,
            "valid": self.valid,
            "reason": self.reason,
        }


def _invalid(raw: str, reason: str, country: str | None = None) -> NumberInfo:
    return NumberInfo(
        input=raw, e164=None, country=country, type=INVALID, valid=False, reason=reason
    )


def _region_of(number: PhoneNumber) -> str | None:
    region = phonenumbers.region_code_for_number(number)
    if not region or region == phonenumbers.UNKNOWN_REGION:
        region = phonenumbers.region_code_for_country_code(number.country_code or 0)
    # "001" marks non-geographic codes (+800, +882, ...): no ISO country to report.
    if not region or region in (phonenumbers.UNKNOWN_REGION, "001"):
        return None
    return region


# Digits and spaces only, "+" first at most, as people and calendars mostly type numbers.
# phonenumbers drops the spaces when it normalizes, after walking each character several times
# (viability, extensions, digits): such a text parses as it does without its spaces, once it
# has 3 digits ("1 2" is not a number to phonenumbers, "12" is) and is short (it refuses input
# over 250 characters as such). tests/test_phone_fast.py holds this against phonenumbers.
_SPACED_DIGITS = re.compile(r"\+?[0-9 ]{3,60}")


def _parse(text: str, region: str | None) -> PhoneNumber | None:
    if " " in text and _SPACED_DIGITS.fullmatch(text):
        compact = text.replace(" ", "")
        if len(compact.lstrip("+")) >= 3:
            text = compact
    try:
        return phonenumbers.parse(text, region)
    except NumberParseException:
        return None


def _parse_failure(text: str, region: str | None) -> str:
    """Why phonenumbers refused text outright."""
    try:
        phonenumbers.parse(text, region)
    except NumberParseException as exc:
        if exc.error_type == NumberParseException.INVALID_COUNTRY_CODE:
            if region is None and not text.startswith("+"):
                return "no country code and no default country"
            return "unknown country code"
        if exc.error_type in (
            NumberParseException.TOO_SHORT_NSN,
            NumberParseException.TOO_SHORT_AFTER_IDD,
        ):
            return "too short"
        if exc.error_type == NumberParseException.TOO_LONG:
            return "too long"
    # phonenumbers calls a lone digit "not a number"; to a person it is just too short.
    if _digit_count(text) < 3:
        return "too short"
    return "not a phone number"


def _digit_count(text: str) -> int:
    return sum(ch.isdecimal() for ch in text)


# The same tests as str.isdecimal / str.isspace per character (``re``'s \d and \s on str
# patterns are those very predicates), a few times cheaper than a loop over the characters.
_NUMBER_CHARS = re.compile(r"[\d\s" + re.escape("".join(sorted(_PUNCTUATION))) + "]*")
_DECIMAL = re.compile(r"\d")


def _number_chars_only(text: str) -> bool:
    return _NUMBER_CHARS.fullmatch(text) is not None


def _looks_like_number(text: str) -> bool:
    return _DECIMAL.search(text) is not None and _number_chars_only(text)


def _why_invalid(number: PhoneNumber, region: str | None) -> tuple[str, str | None]:
    """A short reason and the country it refers to, for a parsed but invalid number."""
    where = _region_of(number) or region
    result = phonenumbers.is_possible_number_with_reason(number)
    if result == VR.INVALID_COUNTRY_CODE or where is None:
        return "unknown country code", None
    if result == VR.TOO_SHORT:
        return f"too short for {where}", where
    if result == VR.TOO_LONG:
        return f"too long for {where}", where
    if result == VR.INVALID_LENGTH:
        return f"wrong length for {where}", where
    return f"not a valid number in {where}", where


def _classify(kind: int) -> str:
    if kind in _MOBILE_TYPES:
        return MOBILE
    if kind == PNT.FIXED_LINE:
        return LANDLINE
    return OTHER


def _valid_info(raw: str, number: PhoneNumber | None) -> NumberInfo | None:
    """RAW's info when NUMBER (one reading of it) is a valid number, else None."""
    if number is None:
        return None
    # A number is valid exactly when its type is known (is_valid_number compares the
    # same type to UNKNOWN): one type lookup instead of two, the dearest step here.
    kind = phonenumbers.number_type(number)
    if kind == PNT.UNKNOWN:
        return None
    return NumberInfo(
        input=raw,
        e164=phonenumbers.format_number(number, PhoneNumberFormat.E164),
        country=_region_of(number),
        type=_classify(kind),
        valid=True,
        reason=None,
    )


# --- Fast path -------------------------------------------------------------------------
# Calendars mostly hold numbers typed as digits with spaces, dots, dashes or parentheses,
# nationally ("06 12 34 56 78") or internationally ("+33 6...", "0033 6..."). For such a
# text phonenumbers only ever looks at the digits and whether a "+" leads, so its reading
# can be replayed from its own metadata: country code (from "+", the region's international
# prefix, or the region), national prefix stripping, then the type from the same patterns
# in the same order (phonenumberutil.parse, _maybe_extract_country_code,
# _maybe_strip_national_prefix_carrier_code, _test_number_length, _number_type_helper,
# region_code_for_number). Each step that is not plain in the metadata (transform rules,
# default-country-code heuristics, IDD followed by 0, non-geographic codes, too short or
# too long) gives up and leaves the number to the general path, as does any number that is
# not valid (its explanation and the other readings are the general path's business).
# This is several times cheaper than parse + number_type + format_number + region lookup;
# tests/test_phone_fast.py compares it with the general path on every supported region.
_FAST_TEXT = re.compile(r"\+?[0-9 .()/\-]+")
_NOT_DIGIT = re.compile(r"[^0-9]+")
# phonenumbers' _MIN_LENGTH_FOR_NSN and _MAX_LENGTH_FOR_NSN.
_MIN_NSN = 2
_MAX_NSN = 17

_Match = Callable[[str], object]
_COUNTRY_REGIONS = phonenumbers.COUNTRY_CODE_TO_REGION_CODE
_NON_GEO = phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY


def _fullmatcher(desc: PhoneNumberDesc | None) -> tuple[frozenset[int] | None, _Match] | None:
    """_is_number_matching_desc for DESC as (lengths or None for any, fullmatch); None when
    DESC can never match."""
    if desc is None or not desc.national_number_pattern:
        return None
    lengths = frozenset(desc.possible_length) if desc.possible_length else None
    return lengths, re.compile(desc.national_number_pattern).fullmatch


def _matches(nsn: str, matcher: tuple[frozenset[int] | None, _Match] | None) -> bool:
    if matcher is None:
        return False
    lengths, match = matcher
    if lengths is not None and len(nsn) not in lengths:
        return False
    return match(nsn) is not None


class _Plan:
    """One region's metadata, compiled once for the fast path."""

    def __init__(self, meta: PhoneMetadata, general: PhoneNumberDesc, code: int) -> None:
        self.country_code = code
        self.cc_text = str(code)
        self.idd = (
            re.compile(meta.international_prefix).match if meta.international_prefix else None
        )
        npp = meta.national_prefix_for_parsing
        self.npp = re.compile(npp).match if npp else None
        self.transform = bool(meta.national_prefix_transform_rule)
        # _match_national_number: the pattern alone, without possible lengths.
        self.general_pattern = (
            re.compile(general.national_number_pattern).fullmatch
            if general.national_number_pattern
            else None
        )
        self.lengths = tuple(general.possible_length)
        self.local_lengths = frozenset(general.possible_length_local_only)
        self.leading = re.compile(meta.leading_digits).match if meta.leading_digits else None
        self.general = _fullmatcher(general)
        # _number_type_helper's order: the first type matching wins.
        self.types = [
            (kind, m[0], m[1])
            for kind, desc in (
                (PNT.PREMIUM_RATE, meta.premium_rate),
                (PNT.TOLL_FREE, meta.toll_free),
                (PNT.SHARED_COST, meta.shared_cost),
                (PNT.VOIP, meta.voip),
                (PNT.PERSONAL_NUMBER, meta.personal_number),
                (PNT.PAGER, meta.pager),
                (PNT.UAN, meta.uan),
                (PNT.VOICEMAIL, meta.voicemail),
            )
            if (m := _fullmatcher(desc)) is not None
        ]
        self.fixed = _fullmatcher(meta.fixed_line)
        self.mobile = _fullmatcher(meta.mobile)
        self.same_fixed_mobile = bool(meta.same_mobile_and_fixed_line_pattern)

    def viable(self, number: str) -> bool:
        return self.general_pattern is not None and self.general_pattern(number) is not None

    def length_ok(self, number: str) -> bool:
        """_test_number_length is none of TOO_SHORT, IS_POSSIBLE_LOCAL_ONLY, INVALID_LENGTH."""
        n = len(number)
        if n in self.local_lengths:
            return False
        lowest = self.lengths[0]
        if lowest == n:
            return True
        if lowest > n:
            return False
        if self.lengths[-1] < n:
            return True  # TOO_LONG
        return n in self.lengths[1:]

    def kind(self, nsn: str) -> int:
        if not _matches(nsn, self.general):
            return PNT.UNKNOWN
        size = len(nsn)
        # _matches inlined: this loop is most of the fast path's time.
        for kind, lengths, match in self.types:
            if (lengths is None or size in lengths) and match(nsn) is not None:
                return kind
        if _matches(nsn, self.fixed):
            if self.same_fixed_mobile or _matches(nsn, self.mobile):
                return PNT.FIXED_LINE_OR_MOBILE
            return PNT.FIXED_LINE
        if not self.same_fixed_mobile and _matches(nsn, self.mobile):
            return PNT.MOBILE
        return PNT.UNKNOWN


_PLANS: dict[str, _Plan | None] = {}


def _plan(region: str) -> _Plan | None:
    try:
        return _PLANS[region]
    except KeyError:
        pass
    meta = PhoneMetadata.metadata_for_region(region, None)
    plan = None
    # _test_number_length needs the general description's lengths; without them (never
    # seen in phonenumbers' data) the region is left to the general path.
    general = meta.general_desc if meta is not None else None
    code = meta.country_code if meta is not None else None
    if meta is not None and general is not None and general.possible_length and code:
        plan = _Plan(meta, general, code)
    # Dict writes are atomic; two threads compiling the same region at once is harmless.
    _PLANS[region] = plan
    return plan


def _fast_info(raw: str, text: str, region: str | None) -> NumberInfo | None:
    """RAW's info when the fast path is sure it is a valid number, else None (see above)."""
    if _FAST_TEXT.fullmatch(text) is None:
        return None
    digits = _NOT_DIGIT.sub("", text)
    if len(digits) < 3 or len(digits) > _MAX_NSN + 3:
        return None
    if text[0] == "+":
        rest = digits
    else:
        if region is None:
            return None
        home = _plan(region)
        if home is None:
            return None
        idd = home.idd(digits) if home.idd is not None else None
        if idd is not None:
            end = idd.end()
            # phonenumbers keeps the IDD when a 0 follows it (a different reading).
            if end == 0 or digits[end : end + 1] == "0":
                return None
            rest = digits[end:]
        else:
            # A national number that starts with the region's own country code goes through
            # phonenumbers' guesses about whether that code was meant: not here.
            if digits.startswith(home.cc_text):
                return None
            return _fast_national(raw, home.country_code, home, digits)
    # _maybe_extract_country_code after "+" or an IDD.
    if len(rest) <= _MIN_NSN or rest[0] == "0":
        return None
    for size in (1, 2, 3):
        code = int(rest[:size])
        regions = _COUNTRY_REGIONS.get(code)
        if regions is not None:
            break
    else:
        return None
    if regions[0] == _NON_GEO:
        return None
    plan = _plan(regions[0])
    if plan is None:
        return None
    return _fast_national(raw, code, plan, rest[size:])


def _fast_national(raw: str, code: int, plan: _Plan, number: str) -> NumberInfo | None:
    """The end of phonenumbers.parse (national prefix stripping with PLAN, the metadata of
    the number's main region or of the default one), then number_type and E.164."""
    if len(number) < _MIN_NSN:
        return None
    nsn = number
    if plan.npp is not None:
        prefix = plan.npp(number)
        if prefix is not None:
            if plan.transform:
                return None
            stripped = number[prefix.end() :]
            if not (plan.viable(number) and not plan.viable(stripped)) and plan.length_ok(stripped):
                nsn = stripped
    if len(nsn) < _MIN_NSN or len(nsn) > _MAX_NSN:
        return None
    # region_code_for_number, then number_type with that region's metadata.
    regions = _COUNTRY_REGIONS[code]
    where: str | None = None
    owner: _Plan | None = None
    if len(regions) == 1:
        where, owner = regions[0], _plan(regions[0])
    else:
        for candidate in regions:
            cplan = _plan(candidate)
            if cplan is None:
                continue
            if cplan.leading is not None:
                if cplan.leading(nsn):
                    where, owner = candidate, cplan
                    break
            elif cplan.kind(nsn) != PNT.UNKNOWN:
                where, owner = candidate, cplan
                break
    if where is None or where == _NON_GEO or owner is None:
        return None
    kind = owner.kind(nsn)
    if kind == PNT.UNKNOWN:
        return None
    return NumberInfo(
        input=raw,
        e164=f"+{code}{nsn}",
        country=where,
        type=_classify(kind),
        valid=True,
        reason=None,
    )


def parse_number(raw: str, region: str = "FR") -> NumberInfo:
    """Parse a number in any usual human format; region is the country for national numbers."""
    text = _TEL_PREFIX.sub("", raw).strip()
    if not text:
        return _invalid(raw, "empty")
    if not _looks_like_number(text):
        return _invalid(raw, "not a phone number")
    default = region.upper() if region else None
    if default not in phonenumbers.SUPPORTED_REGIONS:
        default = None

    found = _fast_info(raw, text, default)
    if found is not None:
        return found
    first = _parse(text, default)
    found = _valid_info(raw, first)
    if found is not None:
        return found
    # The other readings are parsed only when the ones before them gave no valid number
    # (parsing is most of the cost, and a national number is usually valid at once).
    candidates = [first]
    if not text.startswith("+"):
        # "0041..." works only where 00 is the international prefix; "41..." is how
        # mail systems that drop the "+" hand us numbers. Both are tried after the
        # national reading so a valid national number always wins.
        readings = ["+" + text[2:]] if text.startswith("00") else []
        readings.append("+" + text)
        for reading in readings:
            parsed = _parse(reading, None)
            candidates.append(parsed)
            found = _valid_info(raw, parsed)
            if found is not None:
                return found

    # Explain with the reading the user most likely meant: the national one if it
    # parsed, else the international one.
    number = first or next((n for n in candidates if n is not None), None)
    if number is None:
        return _invalid(raw, _parse_failure(text, default))
    reason, country = _why_invalid(number, default)
    return _invalid(raw, reason, country)


def can_receive_sms(info: NumberInfo) -> bool:
    """True for valid mobile numbers (including the ones a plan cannot tell from landlines)."""
    return info.valid and info.type == MOBILE


def _split_chunk(chunk: str, region: str) -> list[str]:
    if parse_number(chunk, region).valid:
        return [chunk]
    tokens = chunk.split()
    pieces: list[str] = []
    # Tokens that start no valid number stay together, so "06 12 34 5" comes back as
    # one piece (with a useful "too short" reason) rather than four meaningless ones.
    pending: list[str] = []
    i = 0
    while i < len(tokens):
        best = 0
        digits = 0
        for j in range(i, min(len(tokens), i + _MAX_TOKENS)):
            token = _TEL_PREFIX.sub("", tokens[j]) if j == i else tokens[j]
            digits += _digit_count(token)
            # A word can never be part of a number, so no longer group can be valid.
            if digits > _MAX_DIGITS or not _number_chars_only(token):
                break
            # The longest valid group wins: "030 1234 5678" must not stop at "030 1234"
            # where shorter local numbers also exist.
            if parse_number(" ".join(tokens[i : j + 1]), region).valid:
                best = j + 1
        if best:
            if pending:
                pieces.append(" ".join(pending))
                pending = []
            pieces.append(" ".join(tokens[i:best]))
            i = best
        else:
            pending.append(tokens[i])
            i += 1
    if pending:
        pieces.append(" ".join(pending))
    return pieces


def split_numbers(text: str, region: str = "FR") -> list[str]:
    """Split a list of numbers separated by commas, semicolons, newlines or whitespace."""
    pieces: list[str] = []
    for chunk in _CHUNK_SEPARATORS.split(text):
        chunk = chunk.strip()
        if chunk:
            pieces.extend(_split_chunk(chunk, region))
    return pieces


def format_international(e164: str) -> str:
    """Format an E.164 number for people ("+33 6 12 34 56 78"); bad input comes back as is."""
    number = _parse(e164, None)
    if number is None:
        return e164
    return phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)


def is_alphanumeric_sender(s: str) -> bool:
    """True when a sender id contains a letter, i.e. is a name rather than a number."""
    return any(ch.isalpha() for ch in s)
