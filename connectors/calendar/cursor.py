"""The cursor of the calendar sources that sync by delta (Google, Microsoft Graph).

A cursor is compressed JSON behind a prefix naming the source and its version; besides the
provider's own token, every such source keeps in it the synced range (events outside it are
not tracked) and, by the provider's event id, the (uid, occurrence) of what was seen:
``DeltaState``, which each such source extends with what else it keeps.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Self

from hub.errors import CursorExpired
from hub.ports.calendar import CalendarEvent


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


@dataclass
class DeltaState:
    """What a delta source's cursor carries from one sync to the next: the provider's token
    (a sync token, a delta link), the synced range and what was seen in it.

    A source's subclass names its cursor (``prefix``, ``token_key``, ``source``) and, when it
    keeps more, adds fields and fills in ``_more`` and ``_read_more``."""

    #: Starts the cursor: the source and the version of its layout ("google1:").
    prefix: ClassVar[str]
    #: The token's key in the cursor's JSON.
    token_key: ClassVar[str]
    #: The source as its users know it, in the message of an unreadable cursor.
    source: ClassVar[str]

    token: str
    start: datetime  # the synced range: events outside it are not tracked
    until: datetime
    # The provider's event id -> (uid, occurrence) of what was seen.
    ids: dict[str, tuple[str, str]] = field(default_factory=dict)

    def saw(self, event: CalendarEvent) -> str:
        """Record EVENT as seen under its provider id (``raw["id"]``), and return that id."""
        provider_id = str(event.raw["id"])
        self.ids[provider_id] = event.key
        return provider_id

    def dump(self) -> str:
        data = {
            "v": 1,
            self.token_key: self.token,
            "from": self.start.astimezone(UTC).isoformat(),
            "until": self.until.astimezone(UTC).isoformat(),
            "ids": {k: list(v) for k, v in self.ids.items()},
            **self._more(),
        }
        return pack_cursor(self.prefix, data)

    @classmethod
    def load(cls, cursor: str) -> Self:
        """The state in CURSOR; CursorExpired when it is not one of ours (a full sync)."""
        try:
            data = unpack_cursor(cls.prefix, cursor)
            return cls(
                str(data[cls.token_key]),
                datetime.fromisoformat(data["from"]),
                datetime.fromisoformat(data["until"]),
                {k: (str(v[0]), str(v[1])) for k, v in data["ids"].items()},
                **cls._read_more(data),
            )
        except (ValueError, KeyError, TypeError, IndexError, zlib.error) as exc:
            raise CursorExpired(f"unreadable {cls.source} cursor ({exc})") from None

    def _more(self) -> dict[str, Any]:
        """What the subclass keeps besides, as the cursor's JSON holds it."""
        return {}

    @classmethod
    def _read_more(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        """The subclass's own fields from the cursor's DATA, as keyword arguments."""
        return {}
