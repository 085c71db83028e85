"""Every CSV the hub writes goes through here: cells cannot become spreadsheet formulas.

A text that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is run as a
formula by Excel, LibreOffice and Google Sheets (``=HYPERLINK(...)`` in an SMS text, a
contact field or an account name would then act on the machine of whoever opens the
export). Such cells are prefixed with ``'`` (OWASP's advice), which the spreadsheet shows
as text and does not display.

One exemption, chosen so that exports stay usable: a cell that is exactly an E.164 phone
number (``+33612345678``: a plus and 7 to 15 digits) is written as is. It contains nothing
that can run, and contact lists must import back unchanged. Numbers given as numbers
(credits, parts, negative ledger amounts) are not text and are written as is too.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from typing import Any, Protocol

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")


class _TextOut(Protocol):
    def write(self, text: str, /) -> Any: ...


def safe_cell(value: Any) -> Any:
    """VALUE as a CSV cell that no spreadsheet runs as a formula."""
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _E164.fullmatch(value):
        return "'" + value
    return value


class SafeWriter:
    """``csv.writer`` whose rows go through ``safe_cell``."""

    def __init__(self, out: _TextOut) -> None:
        self._writer = csv.writer(out, lineterminator="\r\n")

    def writerow(self, row: Iterable[Any]) -> None:
        self._writer.writerow([safe_cell(cell) for cell in row])


def writer(out: _TextOut) -> SafeWriter:
    """The CSV writer of every export (Excel's dialect, CRLF line ends)."""
    return SafeWriter(out)
