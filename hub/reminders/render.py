"""The reminder's text: a sandboxed Jinja2 template with dates and times in the patient's
language (babel)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime, format_time
from jinja2 import Template, TemplateError

from hub.core import i18n, segments
from hub.core.templating import render_bounded, sandbox, too_many_parts
from hub.errors import InvalidInput, TemplateLimitExceeded

# The most parts sending.max_parts allows: the bound when the caller has no config (a
# template checked when it is set; the preview and the planner pass the configured one).
MOST_PARTS = 255
# Characters of a reminder template.
MAX_TEMPLATE = 5_000

# The fields a template is given: ``name`` (a person's name, or "" when none was found),
# ``title`` (the appointment's title without its number), ``location``, ``start`` and
# ``all_day`` (true for an appointment with a date and no time: say no time then).
FIELDS = {"name": "", "title": "", "location": "", "all_day": False}


# The hub's texts read well without a name ("Bonjour, rappel de votre RDV…") and say no time
# for an all-day appointment.
def default_template(locale: str) -> str:
    """The hub's reminder text in the language of LOCALE (the calendar's: the patient's)."""
    with i18n.use(locale):
        return i18n.gettext(
            "Hello{% if name %} {{ name }}{% endif %}, this is a reminder of your appointment on "
            "{{ start|date('EEEE, MMMM d') }}{% if not all_day %} at {{ start|time('h:mm a') }}"
            "{% endif %}{% if location %} ({{ location }}){% endif %}. "
            "Reply YES to confirm or NO to cancel."
        )


def changed_template(locale: str) -> str:
    """The hub's "appointment moved" text in the language of LOCALE."""
    with i18n.use(locale):
        return i18n.gettext(
            "Hello{% if name %} {{ name }}{% endif %}, your appointment has been moved to "
            "{{ start|date('EEEE, MMMM d') }}{% if not all_day %} at {{ start|time('h:mm a') }}"
            "{% endif %}."
        )


# The French texts, under their former names (calendars default to fr_FR).
DEFAULT_TEMPLATE = default_template("fr")
CHANGED_TEMPLATE = changed_template("fr")


@lru_cache(maxsize=64)
def _compiled(template: str, locale: str, tz: str) -> Template:
    """The template compiled once per (text, language, zone): a sync renders thousands. An
    empty TEMPLATE is the hub's text in LOCALE (translated here, once, not at each render)."""
    template = template or default_template(locale)
    zone = ZoneInfo(tz)

    # Babel's formatting is most of a render; a calendar's appointments share a few hundred
    # days and start times, so each is formatted once per template (a sync renders 10,000s).
    @lru_cache(maxsize=4096)
    def _day(day: date, pattern: str) -> str:
        return format_date(day, pattern, locale=locale)

    def _date(value: datetime, pattern: str = "EEEE d MMMM") -> str:
        return _day(value.astimezone(zone).date(), pattern)

    # Keyed by the wall time and UTC offset, not the instant: appointments on different days
    # share a few dozen start times (the offset keeps a zone name in the pattern right).
    clocks: dict[tuple[time, timedelta | None, str], str] = {}

    def _time(value: datetime, pattern: str = "HH:mm") -> str:
        local = value.astimezone(zone)
        key = (local.time(), local.utcoffset(), pattern)
        text = clocks.get(key)
        if text is None:
            if len(clocks) >= 4096:
                clocks.clear()
            text = clocks[key] = format_time(local, pattern, locale=locale, tzinfo=zone)
        return text

    @lru_cache(maxsize=4096)
    def _datetime(value: datetime, pattern: str = "medium") -> str:
        return format_datetime(value, pattern, locale=locale, tzinfo=zone)

    env = sandbox().overlay()
    # overlay() shares the parent's filter dict: give this environment its own, or templates
    # compiled for other zones and languages would see these filters.
    env.filters = {**env.filters, "date": _date, "time": _time, "datetime": _datetime}
    return env.from_string(template)


def render_reminder(
    template: str,
    *,
    locale: str,
    tz: str,
    start: datetime,
    max_parts: int = MOST_PARTS,
    **fields: Any,
) -> str:
    """Render TEMPLATE for one appointment; InvalidInput names a broken template,
    TemplateLimitExceeded a text of more than MAX_PARTS SMS parts (sending.max_parts) or
    a template that asks for too much work."""
    if len(template) > MAX_TEMPLATE:
        # Compiling is work too: a megabyte of template would take seconds.
        raise TemplateLimitExceeded(
            f"the reminder template has {len(template)} characters; the limit is {MAX_TEMPLATE}"
        )
    local = start.astimezone(ZoneInfo(tz))
    try:
        compiled = _compiled(template, locale, tz)
        text = render_bounded(compiled, {**FIELDS, "start": local, **fields}, max_parts=max_parts)
    except TemplateError as exc:
        raise InvalidInput(f"the reminder template cannot be used: {exc}") from None
    text = " ".join(text.split())
    if segments.count(text).segments > max_parts:
        raise too_many_parts(max_parts)
    return text
