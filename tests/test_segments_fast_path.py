"""The basic-set fast path of ``segments.count`` gives exactly what the general path gives.

``count`` answers text made only of GSM-7 basic characters by arithmetic on its length;
every other text is counted character by character. Both must agree on every field, at
every boundary (160/153 septets, 70/67 units), with extension characters, emoji and other
UCS-2 text mixed in.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.core import segments
from hub.core.segments import GSM7_BASIC, GSM7_EXTENSION, SegmentInfo, count

BASIC = sorted(GSM7_BASIC)
EXTENSION = sorted(GSM7_EXTENSION)
OTHER = ["ж", "ç", "`", "中", "😀", "👍", "\u00a0", "\t"]
# Lengths around each capacity and its multiples, where a part is added or a pair pushed.
BOUNDARIES = sorted(
    {
        n + d
        for base in (67, 70, 153, 160)
        for k in (1, 2, 3)
        for n in [base * k]
        for d in (-2, -1, 0, 1, 2)
    }
    | {0, 1}
)


def general(text: str) -> SegmentInfo:
    """``count`` by the per-character path (what every text went through before)."""
    encoding, total, parts = segments._plan(text)
    lengths = [length for _, length in parts]
    return segments._count(len(text), encoding, total, lengths)


def by_part_lengths(text: str) -> SegmentInfo:
    """``count`` by the per-distinct-character path, without the fast path."""
    encoding, total, lengths = segments._part_lengths(text)
    return segments._count(len(text), encoding, total, lengths)


def _texts() -> list[str]:
    rng = random.Random(20)
    texts = []
    for length in BOUNDARIES:
        texts.append("".join(rng.choice(BASIC) for _ in range(length)))
        for extra in (EXTENSION, OTHER):
            for _ in range(3):
                chars = [rng.choice(BASIC) for _ in range(length)]
                if chars:
                    # One or a few special characters anywhere, often right at a boundary.
                    for _ in range(rng.randint(1, 3)):
                        chars[rng.randrange(len(chars))] = rng.choice(extra)
                texts.append("".join(chars))
    for _ in range(2000):
        alphabet = rng.choice([BASIC, BASIC + EXTENSION, BASIC + OTHER, BASIC + EXTENSION + OTHER])
        texts.append("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 700))))
    return texts


@pytest.mark.parametrize("chunk", range(4))
def test_fast_path_matches_the_general_path(chunk: int) -> None:
    texts = _texts()
    for text in texts[chunk::4]:
        expected = general(text)
        assert count(text) == expected, text
        assert by_part_lengths(text) == expected, text


@settings(max_examples=300)
@given(st.text(alphabet=st.sampled_from(BASIC + EXTENSION + OTHER), max_size=500))
def test_fast_path_matches_on_any_mix(text: str) -> None:
    assert count(text) == general(text)


@pytest.mark.parametrize("length", BOUNDARIES)
def test_basic_text_at_the_boundaries(length: int) -> None:
    text = "a" * length
    info = count(text)
    assert info == general(text)
    assert info.encoding == "GSM-7"
    assert info.length == info.characters == length
    # Shared info objects are not tied to one text: another text of that length alike.
    assert count("é" * length) == info


def test_a_newline_and_carriage_return_are_basic() -> None:
    assert count("a\nb\rc") == general("a\nb\rc") == SegmentInfo("GSM-7", 1, 5, 5, 155)


def test_a_non_basic_character_takes_the_general_path() -> None:
    assert count("a" * 159 + "€").segments == 2  # 161 septets
    assert count("a" * 69 + "ç") == SegmentInfo("UCS-2", 1, 70, 70, 0)
