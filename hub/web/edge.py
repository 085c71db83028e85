"""Types that check what arrives over HTTP before it reaches the hub (API and console).

Validated at the edge, bad input is a 422 naming the field, never an exception deep inside
(an id beyond the id columns' range overflows the database driver; a lone surrogate or a
NUL cannot be stored or sent): one definition here, used by every route.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path
from pydantic import AfterValidator
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

# The largest row id of the schema: its id columns are INTEGER, 32 bits on PostgreSQL
# (which refuses a larger parameter for them: "integer out of range"), 64 on SQLite.
MAX_ROW_ID = 2**31 - 1

#: A row id in a URL path: 1 .. 2**31-1, else a 422 that says so.
RowId = Annotated[
    int,
    Path(ge=1, le=MAX_ROW_ID, description=f"A row id: a whole number from 1 to {MAX_ROW_ID}"),
]


def row_id_or_none(value: str | int | None) -> int | None:
    """A row id typed in a query string or a form (a page cursor, an account id): None when
    absent or not a whole number from 1 to MAX_ROW_ID (callers say what that means)."""
    value = str(value) if value is not None else None
    if not value or not value.isdigit() or len(value) > 19:
        return None
    number = int(value)
    return number if 1 <= number <= MAX_ROW_ID else None


def _valid_unicode(value: str) -> str:
    # A ValueError becomes a 422 naming the field (pydantic).
    if "\x00" in value:
        # PostgreSQL cannot store it, and no phone, SMS or name has one.
        raise ValueError(f"contains a NUL character at position {value.index(chr(0))}")
    for position, char in enumerate(value):
        if "\ud800" <= char <= "\udfff":
            raise ValueError(
                f"contains an unpaired surrogate (U+{ord(char):04X}) at position {position}; "
                "send the text as valid Unicode"
            )
    return value


#: A string of a request body: valid Unicode without NUL, else a 422 naming the field.
Text = Annotated[str, AfterValidator(_valid_unicode)]


CALLBACKS_PREFIX = "/callbacks/"


class RefuseNulInUrl:
    """ASGI middleware: a URL whose path or query holds a NUL character (``%00``) is a 400
    (the query of provider callbacks excepted).

    No id, code, name or number of the hub contains one, and PostgreSQL refuses it in any
    text parameter (an error deep in a query, a 500): refused once here for every route.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, query = scope["path"], scope["query_string"]
        if "\x00" in path or (
            # Provider callbacks read their own query: Kannel sends UTF-16 text there, whose
            # bytes hold %00 for every Latin character.
            not path.startswith(CALLBACKS_PREFIX) and (b"%00" in query or b"\x00" in query)
        ):
            response = PlainTextResponse(
                "the address contains a NUL character (%00); no page or API path has one\n",
                status_code=400,
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
