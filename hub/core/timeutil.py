"""UTC helpers: storage is always naive-free UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def utcnow() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Treat naive datetimes (as SQLite returns them) as UTC and convert aware ones to UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def local_text(value: datetime, tz: str, all_day: bool = False) -> str:
    """VALUE as a person reads it in zone TZ ("2025-03-10 16:43 Europe/Paris"): stored times
    are UTC, but a receptionist in Paris must not have to add an hour. An unknown zone falls
    back to UTC, named, rather than failing the mail or page that shows it."""
    try:
        zone = ZoneInfo(tz or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        zone, tz = ZoneInfo("UTC"), "UTC"
    local = as_utc(value).astimezone(zone)
    if all_day:
        return local.strftime("%Y-%m-%d")
    return f"{local:%Y-%m-%d %H:%M} {tz or 'UTC'}"
