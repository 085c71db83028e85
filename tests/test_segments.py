"""GSM-7 / UCS-2 detection, segment counting and splitting."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.core.segments import GSM7_BASIC, GSM7_EXTENSION, SegmentInfo, count, is_gsm7, split

GSM_CHARS = sorted(GSM7_BASIC | GSM7_EXTENSION)
# A mix that exercises both encodings, escape pairs and surrogate pairs.
MIXED_CHARS = GSM_CHARS + ["ж", "ç", "`", "😀", "👍", "中"]

gsm_text = st.text(alphabet=st.sampled_from(GSM_CHARS), max_size=700)
mixed_text = st.text(alphabet=st.sampled_from(MIXED_CHARS), max_size=700)
any_text = st.one_of(gsm_text, mixed_text, st.text(max_size=400))


def _septets(part: str) -> int:
    return sum(2 if ch in GSM7_EXTENSION else 1 for ch in part)


def _units(part: str) -> int:
    return len(part.encode("utf-16-le")) // 2


def _part_length(part: str, encoding: str) -> int:
    return _septets(part) if encoding == "GSM-7" else _units(part)


# --- the alphabet -------------------------------------------------------------------


def test_basic_set_is_the_etsi_table() -> None:
    assert len(GSM7_BASIC) == 127  # 128 code points minus ESC
    for ch in "@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./:;<=>?¡ÄÖÑÜ§¿äöñüà\n\r":
        assert ch in GSM7_BASIC, ch
    for ch in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz":
        assert ch in GSM7_BASIC, ch


@pytest.mark.parametrize("ch", ["ç", "`", "\x1b", "\t", "â", "ê", "Ã", "€", "{", "😀", "ж"])
def test_not_in_basic_set(ch: str) -> None:
    assert ch not in GSM7_BASIC


def test_extension_table() -> None:
    assert set("^{}[]~\\|€\f") == GSM7_EXTENSION
    assert not GSM7_BASIC & GSM7_EXTENSION


def test_is_gsm7() -> None:
    assert is_gsm7("")
    assert is_gsm7("Bonjour Zoé, RDV à 14h30 € {ok} Ça va?")
    assert not is_gsm7("garçon")
    assert not is_gsm7("`quoted`")
    assert not is_gsm7("hi 😀")


# --- known counts -------------------------------------------------------------------


def test_empty_text() -> None:
    info = count("")
    assert info == SegmentInfo(encoding="GSM-7", segments=0, characters=0, length=0, remaining=160)
    assert split("") == []


@pytest.mark.parametrize(
    ("text", "encoding", "segments", "length", "remaining"),
    [
        ("a" * 160, "GSM-7", 1, 160, 0),
        ("a" * 161, "GSM-7", 2, 161, 145),
        ("a" * 306, "GSM-7", 2, 306, 0),
        ("a" * 307, "GSM-7", 3, 307, 152),
        ("é" * 160, "GSM-7", 1, 160, 0),
        ("ж" * 70, "UCS-2", 1, 70, 0),
        ("ж" * 71, "UCS-2", 2, 71, 63),
        ("ж" * 134, "UCS-2", 2, 134, 0),
        ("ж" * 135, "UCS-2", 3, 135, 66),
        ("€" * 80, "GSM-7", 1, 160, 0),
        ("€" * 81, "GSM-7", 2, 162, 153 - 10),  # 76 pairs (152) + 5 pairs (10)
        ("😀" * 35, "UCS-2", 1, 70, 0),
        ("😀" * 36, "UCS-2", 2, 72, 67 - 6),  # 33 pairs (66) + 3 pairs (6)
        ("a" * 159 + "€", "GSM-7", 2, 161, 153 - 8),  # the pair moves whole to part 2
        ("ç", "UCS-2", 1, 1, 69),
    ],
)
def test_known_counts(text: str, encoding: str, segments: int, length: int, remaining: int) -> None:
    info = count(text)
    assert info.encoding == encoding
    assert info.segments == segments
    assert info.length == length
    assert info.characters == len(text)
    assert info.remaining == remaining
    assert len(split(text)) == segments


def test_escape_pair_is_not_split_at_the_boundary() -> None:
    text = "a" * 152 + "€" + "b" * 10  # septets 152, then a pair that would need 153-154
    parts = split(text)
    assert parts[0] == "a" * 152
    assert parts[1].startswith("€")


def test_surrogate_pair_is_not_split_at_the_boundary() -> None:
    text = "ж" * 66 + "😀" + "ж" * 10  # units 66, then a pair that would need 67-68
    parts = split(text)
    assert parts[0] == "ж" * 66
    assert parts[1].startswith("😀")


def test_to_dict_keys() -> None:
    assert count("hello").to_dict() == {
        "encoding": "GSM-7",
        "segments": 1,
        "characters": 5,
        "length": 5,
        "remaining": 155,
    }


# --- properties ---------------------------------------------------------------------


@settings(max_examples=200)
@given(any_text)
def test_split_join_round_trip(text: str) -> None:
    assert "".join(split(text)) == text


@settings(max_examples=200)
@given(any_text)
def test_parts_match_count_and_fit(text: str) -> None:
    info = count(text)
    parts = split(text)
    assert len(parts) == info.segments
    assert info.characters == len(text)
    assert info.encoding == ("GSM-7" if is_gsm7(text) else "UCS-2")
    lengths = [_part_length(p, info.encoding) for p in parts]
    assert sum(lengths) == info.length
    assert all(p for p in parts)
    if len(parts) == 1:
        assert lengths[0] <= (160 if info.encoding == "GSM-7" else 70)
    elif parts:
        limit = 153 if info.encoding == "GSM-7" else 67
        assert all(n <= limit for n in lengths)
        # Greedy packing: a part only ends early when the next character did not fit.
        for n, nxt in zip(lengths, parts[1:], strict=False):
            assert n + _part_length(nxt[0], info.encoding) > limit
        assert info.remaining == limit - lengths[-1]


@settings(max_examples=200)
@given(mixed_text)
def test_no_part_splits_a_surrogate_pair(text: str) -> None:
    for part in split(text):
        # Each part must encode on its own; a lone surrogate would not.
        part.encode("utf-16-le")
        assert _units(part) == sum(2 if ord(ch) > 0xFFFF else 1 for ch in part)


@settings(max_examples=200)
@given(gsm_text)
def test_gsm_parts_fit_with_whole_escape_pairs(text: str) -> None:
    info = count(text)
    limit = 160 if info.segments == 1 else 153
    for part in split(text):
        # Extension characters count as 2 septets inside the part they land in, so the
        # part's septets (ESC included) stay within the limit.
        assert _septets(part) <= limit


@settings(max_examples=200)
@given(any_text, st.sampled_from(MIXED_CHARS))
def test_count_is_monotonic(text: str, extra: str) -> None:
    before = count(text)
    after = count(text + extra)
    assert after.segments >= before.segments
    assert after.characters == before.characters + 1
    if after.encoding == before.encoding:
        assert after.length > before.length


@settings(max_examples=200)
@given(any_text)
def test_remaining_is_within_a_part(text: str) -> None:
    info = count(text)
    single = 160 if info.encoding == "GSM-7" else 70
    assert 0 <= info.remaining <= single
