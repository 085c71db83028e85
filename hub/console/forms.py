"""Reading console form values: local times, check boxes, row ids and bounded file uploads."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import UploadFile

from hub.errors import InvalidInput, TooLarge
from hub.web.edge import row_id_or_none


def local_time(value: str, zone: str) -> datetime | None:
    """A <input type=datetime-local> value, read in the browser's time zone (ZONE, sent by
    console.js in a hidden field)."""
    if not value:
        return None
    try:
        tz = ZoneInfo(zone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        tz = ZoneInfo("UTC")
    try:
        return datetime.fromisoformat(value).replace(tzinfo=tz)
    except ValueError as exc:
        raise InvalidInput(f"send time {value!r} is not a date and time") from exc


def checked(value: str) -> bool:
    """A check box's value: present (any non-empty value but "0"/"off") means ticked."""
    return value.strip().lower() not in {"", "0", "off", "false", "no"}


async def read_upload(file: UploadFile | None, limit: int, setting: str) -> tuple[str, bytes]:
    """(name, bytes) of an uploaded file, ("", b"") when none was chosen.

    At most LIMIT bytes are read: a larger file is refused with the SETTING that allows
    more, without reading the rest into memory.
    """
    if file is None or not file.filename:
        return "", b""
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(
            f"{file.filename} is over {limit} bytes, the most one upload may have ({setting}): "
            "send a smaller file, or raise the setting"
        )
    return file.filename, data


def optional_row_id(value: str | None, refusal: str) -> int | None:
    """VALUE (typed in a query string or a form) as a row id: None when empty; refused with
    REFUSAL when it is not a whole number from 1 to MAX_ROW_ID."""
    if not value:
        return None
    number = row_id_or_none(value)
    if number is None:
        raise InvalidInput(refusal)
    return number
