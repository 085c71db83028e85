"""The cursor of the calendar sources that sync by delta (Google, Microsoft Graph).

A cursor is compressed JSON behind a prefix naming the source and its version; besides the
provider's own token, every such source keeps in it the synced range (events outside it are
not tracked) and, by the provider's event id, the (uid, occurrence) of what was seen.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any


def pack_cursor(prefix: str, data: Mapping[str, Any]) -> str:
    """DATA as a cursor: PREFIX, then the compressed JSON (ids and uids repeat a lot: a few
    thousand events stay a few kB)."""
    packed = zlib.compress(json.dumps(data, separators=(",", ":")).encode(), 9)
    return prefix + base64.urlsafe_b64encode(packed).decode("ascii")


def unpack_cursor(prefix: str, cursor: str) -> Any:
    """What ``pack_cursor(PREFIX, ...)`` packed in CURSOR; ValueError (or zlib.error) when
    CURSOR is not one."""
    if not cursor.startswith(prefix):
        raise ValueError(f"not a {prefix.rstrip(':')} cursor")
    return json.loads(zlib.decompress(base64.urlsafe_b64decode(cursor[len(prefix) :])))


def dump_seen(
    start: datetime, until: datetime, ids: Mapping[str, tuple[str, str]]
) -> dict[str, Any]:
    """The part of a delta source's cursor that every such source keeps: the synced range
    (events outside it are not tracked) and, by the provider's event id, the (uid,
    occurrence) of what was seen."""
    return {
        "from": start.astimezone(UTC).isoformat(),
        "until": until.astimezone(UTC).isoformat(),
        "ids": {k: list(v) for k, v in ids.items()},
    }


def load_seen(data: Mapping[str, Any]) -> dict[str, Any]:
    """What ``dump_seen`` put in DATA, as the keyword arguments ``start``, ``until`` and
    ``ids``; KeyError, TypeError, ValueError or IndexError when DATA does not hold it."""
    return {
        "start": datetime.fromisoformat(data["from"]),
        "until": datetime.fromisoformat(data["until"]),
        "ids": {k: (str(v[0]), str(v[1])) for k, v in data["ids"].items()},
    }
