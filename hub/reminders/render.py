"""The reminder's text: a sandboxed Jinja2 template with dates and times in the patient's
language (babel)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime, format_time
from jinja2 import TemplateError

from hub.errors import InvalidInput
from hub.templating import sandbox

DEFAULT_TEMPLATE = (
    "Bonjour {{ name }}, rappel de votre RDV le {{ start|date('EEEE d MMMM') }} à "
    "{{ start|time('HH:mm') }}{% if location %} ({{ location }}){% endif %}. "
    "Répondez OUI pour confirmer ou NON pour annuler."
)
CHANGED_TEMPLATE = (
    "Bonjour {{ name }}, votre RDV a été déplacé au {{ start|date('EEEE d MMMM') }} à "
    "{{ start|time('HH:mm') }}."
)


def render_reminder(template: str, *, locale: str, tz: str, start: datetime, **fields: Any) -> str:
    """Render TEMPLATE for one appointment; InvalidInput names a broken template."""
    zone = ZoneInfo(tz)
    local = start.astimezone(zone)

    def _date(value: datetime, pattern: str = "EEEE d MMMM") -> str:
        return format_date(value.astimezone(zone).date(), pattern, locale=locale)

    def _time(value: datetime, pattern: str = "HH:mm") -> str:
        return format_time(value.astimezone(zone), pattern, locale=locale, tzinfo=zone)

    def _datetime(value: datetime, pattern: str = "medium") -> str:
        return format_datetime(value, pattern, locale=locale, tzinfo=zone)

    env = sandbox().overlay()
    env.filters.update(date=_date, time=_time, datetime=_datetime)
    try:
        text = env.from_string(template or DEFAULT_TEMPLATE).render(start=local, **fields)
    except TemplateError as exc:
        raise InvalidInput(f"the reminder template cannot be used: {exc}") from None
    return " ".join(text.split())
