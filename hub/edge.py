"""Types that check what arrives over HTTP before it reaches the hub (API and console).

Validated at the edge, bad input is a 422 naming the field, never an exception deep inside
(an id beyond 64 bits overflows the database driver; a lone surrogate cannot be encoded for
the database or a provider): one definition here, used by every route.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path
from pydantic import AfterValidator

# The largest row id either database can hold (SQLite INTEGER, PostgreSQL BIGINT).
MAX_ROW_ID = 2**63 - 1

#: A row id in a URL path: 1 .. 2**63-1, else a 422 that says so.
RowId = Annotated[
    int,
    Path(ge=1, le=MAX_ROW_ID, description="A row id: a whole number from 1 to 2**63-1"),
]


def row_id_or_none(value: str | int | None) -> int | None:
    """A row id typed in a query string or a form (a page cursor, an account id): None when
    absent or not a whole number from 1 to 2**63-1 (callers say what that means to them)."""
    value = str(value) if value is not None else None
    if not value or not value.isdigit() or len(value) > 19:
        return None
    number = int(value)
    return number if 1 <= number <= MAX_ROW_ID else None


def _valid_unicode(value: str) -> str:
    # A ValueError becomes a 422 naming the field (pydantic).
    for position, char in enumerate(value):
        if "\ud800" <= char <= "\udfff":
            raise ValueError(
                f"contains an unpaired surrogate (U+{ord(char):04X}) at position {position}; "
                "send the text as valid Unicode"
            )
    return value


#: A string of a request body: valid Unicode, else a 422 naming the field.
Text = Annotated[str, AfterValidator(_valid_unicode)]
