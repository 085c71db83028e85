"""The subject grammar of mails sent to an intake address.

Grammar
-------

The subject lists the recipients of the SMS and, optionally, fixed tokens::

    subject   = [prefixes] item *(separator item)
    prefixes  = 1*(PREFIX ":")                     e.g. "RE: TR: "
    separator = "," / ";" / newline / whitespace
    item      = number / list / token / unknown
    list      = "list" (":" / "=") NAME           e.g. list:patients-lundi
    token     = KEY (":" / "=") VALUE              e.g. pin:1234  sender=ACME  type:marketing

* A reply or forward prefix chain at the start is removed: ``Re:``, ``Fwd:``, ``FW:``,
  ``TR:`` (French Outlook), ``AW:``/``WG:`` (German), ``Antw:``/``Doorst:`` (Dutch),
  ``SV:``/``VB:`` (Nordic), ``VS:`` (Finnish), ``RIF:`` (Italian), ``RV:`` (Spanish),
  ``ENC:`` (Portuguese), in any case, repeated, with or without a space before ``:``.
* A **number** is a word of digits and ``( ) . -`` with an optional leading ``+``
  (``15h`` or ``n°12`` are not numbers), and may be split into digit
  groups by single spaces: ``06 98 76 54 32``, ``+33 6 98 76 54 32``,
  ``+33 (0)6 98 76 54 32``, ``0151 12345678`` and ``06.98.76.54.32`` are one number each.
  Numbers are kept as written (the caller normalizes them). Two numbers are told apart
  by a comma, semicolon, newline, tab or several spaces, or by a single space when:

  - the next group starts with ``+``;
  - the number so far is one compact word of 8 digits or more
    (``+33612345678 0698765432`` is two numbers);
  - the next group starts with ``0`` and the number so far has 10 digits or more
    (``06 12 34 56 78 06 98 76 54 32`` is two numbers);
  - the next group has 7 digits or more and the number so far is not a short
    prefix (at most 5 digits, starting with ``+``, ``0`` or ``(``);
  - the result would exceed 17 digits (E.164's 15 plus an ``00`` prefix).

* A **token** is ``KEY:VALUE`` or ``KEY=VALUE`` where ``KEY`` is one of the grammar's
  keys (default ``pin``, ``sender``, ``type``; case-insensitive). ``KEY: VALUE`` with a
  space is accepted too. A value with spaces is written in double quotes:
  ``sender:"Cabinet Martin"``; values never contain commas or semicolons. The same key
  twice with different values is ambiguous: the second one is reported as unknown.
* A **list** is ``list:NAME``: the SMS goes to every member of the account's list NAME;
  it may be repeated.
* Anything else is **unknown** and reported as written, never guessed.

The keys, the list key and the prefix stripping are set per account with
``SubjectGrammar(keys=frozenset({...}), list_key="list", strip_prefixes=True)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from hub.errors import ConfigError

REPLY_PREFIXES = frozenset({"re", "aw", "antw", "sv", "vs", "rif"})
FORWARD_PREFIXES = frozenset({"fwd", "fw", "tr", "wg", "rv", "enc", "doorst", "vb"})
_PREFIX = re.compile(
    r"\s*(" + "|".join(sorted(REPLY_PREFIXES | FORWARD_PREFIXES, key=len, reverse=True)) + r")"
    r"\s*:\s*",
    re.IGNORECASE,
)
_STRONG_SEPARATORS = re.compile(r"[,;\r\n]+")
# A word is a run of non-space characters, where a double-quoted stretch may hold spaces.
_WORD = re.compile(r'(?:[^\s"]+|"[^"]*"|")+')
_NUMBERISH = re.compile(r"\+?[\d().\-]+")
_DIGIT = re.compile(r"\d")
_KEYED = re.compile(r"([A-Za-z][A-Za-z0-9_-]*)([:=])(.*)", re.DOTALL)
_KEY_NAME = re.compile(r"[a-z][a-z0-9_-]*")
_NBSP = re.compile("[\u00a0\u202f\u2007]")
_MAX_DIGITS = 17


@dataclass(frozen=True)
class SubjectGrammar:
    """Which ``key:value`` tokens a subject may carry, and the key naming a list."""

    keys: frozenset[str] = frozenset({"pin", "sender", "type"})
    list_key: str | None = "list"
    strip_prefixes: bool = True

    def __post_init__(self) -> None:
        keys = frozenset(key.lower() for key in self.keys)
        for key in keys | ({self.list_key.lower()} if self.list_key else set()):
            if not _KEY_NAME.fullmatch(key):
                raise ConfigError(f"subject grammar: {key!r} is not a valid key name")
        object.__setattr__(self, "keys", keys)
        if self.list_key:
            object.__setattr__(self, "list_key", self.list_key.lower())


DEFAULT = SubjectGrammar()


@dataclass
class SubjectParts:
    """What a subject says: numbers as written, list names, tokens, and the rest."""

    numbers: list[str] = field(default_factory=list)
    lists: list[str] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)


def strip_prefixes(subject: str) -> tuple[str, list[str]]:
    """Remove a leading ``Re:``/``Fwd:``/``TR:``… chain; return the rest and the prefixes."""
    prefixes: list[str] = []
    position = 0
    while match := _PREFIX.match(subject, position):
        prefixes.append(match.group(1))
        position = match.end()
    return subject[position:], prefixes


def _digits(text: str) -> int:
    return sum(char.isdigit() for char in text)


def _continues(run: list[str], word: str) -> bool:
    """Whether ``word``, after a single space, is one more digit group of ``run``."""
    run_digits = sum(_digits(part) for part in run)
    word_digits = _digits(word)
    if word.startswith("+"):
        return False
    if len(run) == 1 and run_digits >= 8:
        return False
    if run_digits + word_digits > _MAX_DIGITS:
        return False
    if word_digits >= 7:
        return run_digits <= 5 and run[0][:1] in ("+", "0", "(")
    return not (word.lstrip("(").startswith("0") and run_digits >= 10)


def _unquote(value: str) -> str:
    if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
        return value[1:-1]
    return value


def parse_subject(subject: str, grammar: SubjectGrammar = DEFAULT) -> SubjectParts:
    """Split a subject into numbers, lists, tokens and unknown pieces (see module docstring)."""
    parts = SubjectParts()
    text = _NBSP.sub(" ", subject)
    if grammar.strip_prefixes:
        text, parts.prefixes = strip_prefixes(text)
    for chunk in _STRONG_SEPARATORS.split(text):
        _parse_chunk(chunk, grammar, parts)
    return parts


def _parse_chunk(chunk: str, grammar: SubjectGrammar, parts: SubjectParts) -> None:
    matches = list(_WORD.finditer(chunk))
    run: list[str] = []
    index = 0
    while index < len(matches):
        word = matches[index].group()
        gap = chunk[matches[index - 1].end() : matches[index].start()] if index else ""
        if _NUMBERISH.fullmatch(word) and _DIGIT.search(word):
            if run and gap == " " and _continues(run, word):
                run.append(word)
            else:
                _flush(run, parts)
                run = [word]
            index += 1
            continue
        _flush(run, parts)
        run = []
        index += _parse_word(matches, index, grammar, parts)
    _flush(run, parts)


def _flush(run: list[str], parts: SubjectParts) -> None:
    if run:
        parts.numbers.append(" ".join(run))


def _parse_word(
    matches: list[re.Match[str]], index: int, grammar: SubjectGrammar, parts: SubjectParts
) -> int:
    """Handle a non-number word; return how many words it used (a spaced value uses 2)."""
    word = matches[index].group()
    keyed = _KEYED.fullmatch(word)
    key = keyed.group(1).lower() if keyed else ""
    if keyed is None or (key not in grammar.keys and key != grammar.list_key):
        parts.unknown.append(word)
        return 1
    value, used = keyed.group(3), 1
    if not value and index + 1 < len(matches):
        # "pin: 1234": the value is the next word.
        value, used = matches[index + 1].group(), 2
        word = f"{word} {value}"
    value = _unquote(value)
    if not value:
        parts.unknown.append(word)
    elif key == grammar.list_key:
        parts.lists.append(value)
    elif parts.tokens.get(key, value) != value:
        parts.unknown.append(word)
    else:
        parts.tokens[key] = value
    return used
