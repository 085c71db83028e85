"""The reminder's text: a sandboxed Jinja2 template with dates and times in the patient's
language (babel)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Any, cast
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime, format_time
from jinja2 import Template, TemplateError, nodes

from hub.core import i18n, segments
from hub.core.templating import output_limit, render_bounded, sandbox, too_many_parts
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


# A plain template (text, fields, ``{% if field %}`` / ``{% if not field %}`` / ``{% else %}``,
# and the date, time and datetime filters of a field with constant arguments: the hub's
# texts and most users') is rendered by walking its parsed form, without Jinja's context,
# generators and sandbox (~4 us of a ~6 us render). Only a text rendered without any error,
# of fields all given and within the output limit, is taken; anything else (and any other
# template) is rendered by Jinja, which then gives the error. Operations: (_TEXT, text),
# (_FIELD, name), (_FILTER, name, function, arguments), (_IF, name, negated, then, else).
_TEXT, _FIELD, _FILTER, _IF = range(4)
_PLAIN_FILTERS = ("date", "time", "datetime")


class _Plain:
    """A plain template's operations and the fields they read."""

    def __init__(self, ops: list[tuple[Any, ...]], names: frozenset[str]) -> None:
        self.ops = ops
        self.names = names

    def render(self, values: dict[str, Any], limit: int) -> str | None:
        """The text, or None when Jinja must render it (a field missing, an error, too long)."""
        if not self.names <= values.keys():
            return None
        out: list[str] = []
        try:
            _run(self.ops, values, out)
        except Exception:  # noqa: BLE001 (Jinja renders it again and raises what it raises)
            return None
        text = "".join(out)
        return text if len(text) <= limit else None


def _run(ops: list[tuple[Any, ...]], values: dict[str, Any], out: list[str]) -> None:
    for op in ops:
        kind = op[0]
        if kind == _TEXT:
            out.append(op[1])
        elif kind == _FIELD:
            out.append(str(values[op[1]]))
        elif kind == _FILTER:
            out.append(str(op[2](values[op[1]], *op[3])))
        else:
            value = values[op[1]]
            _run(op[3] if (not value if op[2] else value) else op[4], values, out)


def _plain_ops(
    body: list[nodes.Node], filters: dict[str, Any], names: set[str]
) -> list[tuple[Any, ...]] | None:
    """The operations of BODY (a parsed template's nodes), None when it is not plain."""
    ops: list[tuple[Any, ...]] = []
    for node in body:
        if type(node) is nodes.Output:
            for child in node.nodes:
                op = _output_op(child, filters, names)
                if op is None:
                    return None
                ops.append(op)
        elif type(node) is nodes.If and not node.elif_:
            test, negated = node.test, False
            if type(test) is nodes.Not:
                test, negated = test.node, True
            if type(test) is not nodes.Name:
                return None
            then = _plain_ops(node.body, filters, names)
            other = _plain_ops(node.else_, filters, names)
            if then is None or other is None:
                return None
            names.add(test.name)
            ops.append((_IF, test.name, negated, then, other))
        else:
            return None
    return ops


def _output_op(
    child: nodes.Node, filters: dict[str, Any], names: set[str]
) -> tuple[Any, ...] | None:
    """The operation writing CHILD (a node of an output), None when it is not plain."""
    if type(child) is nodes.TemplateData:
        return (_TEXT, child.data)
    if type(child) is nodes.Name and child.ctx == "load":
        names.add(child.name)
        return (_FIELD, child.name)
    if (
        type(child) is nodes.Filter
        and child.name in _PLAIN_FILTERS
        and type(child.node) is nodes.Name
        and all(type(a) is nodes.Const for a in child.args)
        and not child.kwargs
        and child.dyn_args is None
        and child.dyn_kwargs is None
    ):
        names.add(child.node.name)
        args = tuple(cast(nodes.Const, a).value for a in child.args)
        return (_FILTER, child.node.name, filters[child.name], args)
    return None


@lru_cache(maxsize=64)
def _plain(template: str, locale: str, tz: str) -> _Plain | None:
    """TEMPLATE's plain form (None: not plain), with the filters ``_compiled`` gives it."""
    env = _compiled(template, locale, tz).environment
    if env.finalize is not None or env.autoescape is not False or env.is_async:
        return None
    names: set[str] = set()
    ops = _plain_ops(env.parse(template or default_template(locale)).body, env.filters, names)
    return None if ops is None else _Plain(ops, frozenset(names))


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
    values = {**FIELDS, "start": local, **fields}
    try:
        plain = _plain(template, locale, tz)
        text = None if plain is None else plain.render(values, output_limit(max_parts))
        if text is None:
            text = render_bounded(_compiled(template, locale, tz), values, max_parts=max_parts)
    except TemplateError as exc:
        raise InvalidInput(f"the reminder template cannot be used: {exc}") from None
    text = " ".join(text.split())
    if segments.count(text).segments > max_parts:
        raise too_many_parts(max_parts)
    return text
