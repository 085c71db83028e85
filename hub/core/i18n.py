"""Languages: which one a reader gets, the translated texts (gettext catalogs through Babel),
and dates, times and numbers written the reader's way.

Who reads what, in which language:

- the console: the user's choice (``MailUser.language``, the switch at the foot of every
  page), else the browser's ``Accept-Language`` negotiated against ``LANGUAGES``, else
  English;
- mails and SMS texts the hub writes for an account (confirmations, forwarded SMS, answers
  to the receptionist, balance alerts, STOP confirmations): the account's ``locale``, else
  ``[hub] locale``, else the language of the account's region (FR, BE, CH, LU, MC: French;
  anything else: English) — see ``account_language``; write them inside
  ``with use(account_language(account, config)):``;
- SMTP refusals (read in bounces, before any account is known): the hub's language
  (``set_hub_language``, from the config), sent as ASCII by ``hub.mail.intake.smtp_text``;
- reminders: the calendar's ``locale`` (the patient's language);
- the command line stays English (it is for administrators) and its ``--json`` output never
  changes with the language.

The texts live in ``hub/locale/<lang>/LC_MESSAGES/messages.po``; msgids are the English
texts. The ``.po`` files are compiled in memory the first time a language is used (or a
``.mo`` next to them is read when it is newer), so a fresh clone or ``pip install -e .``
needs no build step.

How to mark a new string
------------------------
In Python (the text is translated in the language in effect, see ``use``)::

    from hub.core.i18n import gettext as _, ngettext

    flash = _("Calendar %(name)s saved.", name=calendar.name)
    ngettext("%(num)d credit left", "%(num)d credits left", n)

Use named ``%(name)s`` placeholders (never f-strings: the msgid must be a literal, and the
translation may reorder the words); with ``ngettext`` the count is ``%(num)s``. For a text
built at import time (a module constant, a form label) use ``lazy_gettext``: it is
translated when shown. A console route needs nothing more: ``current_user`` has set the
user's language for the request (threads started with ``asyncio.to_thread`` see it too), and
``render.page`` renders in it.

In a Jinja2 template (console pages, e-mails)::

    <h1>{{ _("Send an SMS") }}</h1>
    <p>{{ _("Drawn from %(account)s.", account=account.draws_from) }}</p>
    {{ ngettext("%(num)s part", "%(num)s parts", segments) }}
    <input placeholder="{{ _("Number") }}">   {{ status_label(message.status) }}
    {{ when|datetime }}   {{ credits|number }}   {{ day|date }}

Mark whole sentences with their variables as placeholders rather than pieces around a
``{{ value }}`` (the French word order differs). Jinja's "new style" gettext formats and
escapes the variables itself; a literal ``%`` in a marked template text is written ``%%``,
and a text used inside an HTML attribute must translate without a double quote.

Then refresh the catalogs and translate the new French entries (``msgstr``)::

    .venv/bin/pybabel extract -F babel.cfg -o /tmp/messages.pot --no-location \\
        --omit-header -k lazy_gettext -k _ .
    .venv/bin/pybabel update -i /tmp/messages.pot -d hub/locale --no-fuzzy-matching \\
        --ignore-obsolete -w 100

``tests/test_i18n.py`` fails while a msgid has no French text, or a French text breaks a
placeholder.
"""

from __future__ import annotations

import contextvars
import io
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from babel import Locale, dates, numbers
from babel.core import get_global
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import LazyProxy, NullTranslations, Translations
from jinja2 import Environment
from werkzeug.datastructures import LanguageAccept
from werkzeug.http import parse_accept_header

if TYPE_CHECKING:
    from hub.core.config import Config
    from hub.store.models import Account

LOCALE_DIR = Path(__file__).parents[1] / "locale"
DOMAIN = "messages"
# The languages the hub is written in; the first is the msgids' own (no catalog needed).
LANGUAGES = ("en", "fr")
SOURCE = "en"
# Regions whose people read the hub in French (the rest read English).
FRENCH_REGIONS = frozenset({"FR", "BE", "CH", "LU", "MC"})
# The names the language switch shows, each in its own language.
LANGUAGE_NAMES = {"en": "English", "fr": "Français"}

_language: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "smshub_language", default=None
)
# The language outside any ``use`` (threads of their own included): the hub's, set by the
# composition root from the config; what SMTP refusals are written in.
_hub_language = SOURCE


# -- choosing the language --------------------------------------------------------------------
def normalize(value: str | None) -> str | None:
    """The hub language of VALUE ("fr_FR", "fr-CH", "FR" -> "fr"), None if it has none."""
    if not value:
        return None
    base = value.strip().replace("-", "_").split("_")[0].lower()
    return base if base in LANGUAGES else None


def region_language(region: str | None) -> str:
    """The language of people in REGION (ISO country code)."""
    return "fr" if (region or "").upper() in FRENCH_REGIONS else "en"


def account_language(account: Account | None, config: Config) -> str:
    """The language of mails and SMS texts written for ACCOUNT."""
    chosen = normalize(account.locale) if account is not None else None
    return chosen or default_language(account, config)


def default_language(account: Account | None, config: Config) -> str:
    """The language ACCOUNT gets when it chooses none: [hub] locale, else its region's."""
    configured = normalize(config.hub.locale)
    if configured:
        return configured
    region = account.default_region if account is not None else None
    return region_language(region or config.hub.default_region)


def language_name(language: str) -> str:
    """LANGUAGE's name in the language in effect ("français", "English"; Babel's data)."""
    return str(Locale.parse(language).get_display_name(Locale.parse(current())) or language)


def region_timezone(region: str | None) -> str:
    """The main time zone of REGION (Babel's territory data), UTC when it has none."""
    zones = get_global("territory_zones").get((region or "").upper()) or []
    return str(zones[0]) if zones else "UTC"


def negotiate(accept_language: str | None) -> str | None:
    """The best of LANGUAGES for a browser's ``Accept-Language`` header, None if it names
    none of them (werkzeug parses the header and its q-values, Babel matches the tags)."""
    if not accept_language:
        return None
    accepted = parse_accept_header(accept_language, LanguageAccept)
    preferred = [tag for tag, quality in accepted if quality > 0 and tag != "*"]
    found = Locale.negotiate(preferred, list(LANGUAGES), sep="-") if preferred else None
    if found is None and any(tag == "*" for tag, _ in accepted):
        return SOURCE
    return found.language if found is not None else None


def console_language(chosen: str | None, accept_language: str | None) -> str:
    """The console's language: the user's choice, else the browser's, else English."""
    return normalize(chosen) or negotiate(accept_language) or SOURCE


# -- the catalogs -----------------------------------------------------------------------------
@lru_cache(maxsize=len(LANGUAGES))
def translations(language: str) -> NullTranslations:
    """LANGUAGE's catalog: its .mo when it is newer than its .po, else the .po compiled in
    memory (a clean clone has no .mo)."""
    folder = LOCALE_DIR / language / "LC_MESSAGES"
    po, mo = folder / f"{DOMAIN}.po", folder / f"{DOMAIN}.mo"
    if language == SOURCE or not po.exists():
        return NullTranslations()
    if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
        with mo.open("rb") as handle:
            return Translations(handle, domain=DOMAIN)
    with po.open("rb") as handle:
        catalog = read_po(handle, locale=language, domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


def current() -> str:
    """The language in effect (``use``), the hub's outside any."""
    return _language.get() or _hub_language


def set_hub_language(language: str | None) -> None:
    """The language of texts written for no reader in particular (SMTP refusals)."""
    global _hub_language
    _hub_language = normalize(language) or SOURCE


@contextmanager
def use(language: str | None) -> Iterator[str]:
    """Write in LANGUAGE (a hub language or a locale such as fr_FR) inside the block."""
    chosen = normalize(language) or SOURCE
    token = _language.set(chosen)
    try:
        yield chosen
    finally:
        _language.reset(token)


def set_language(language: str | None) -> str:
    """Write in LANGUAGE from now on in this task (one web request: its handler and the
    threads it starts see it); returns the hub language chosen."""
    chosen = normalize(language) or SOURCE
    _language.set(chosen)
    return chosen


def gettext(message: str, **variables: Any) -> str:
    """MESSAGE in the language in effect, its ``%(name)s`` placeholders filled from
    VARIABLES (when any are given)."""
    text = translations(current()).ugettext(message)
    return text % variables if variables else text


def ngettext(singular: str, plural: str, num: int, **variables: Any) -> str:
    """SINGULAR or PLURAL as the language in effect says for NUM; ``%(num)d`` is NUM."""
    text = translations(current()).ungettext(singular, plural, num)
    return text % {"num": num, **variables}


def lazy_gettext(message: str, **variables: Any) -> LazyProxy:
    """MESSAGE, translated each time it is shown (for texts built at import time)."""
    return LazyProxy(gettext, message, enable_cache=False, **variables)


_ = gettext


# -- dates, times and numbers -----------------------------------------------------------------
def _locale() -> Locale:
    return Locale.parse(current())


def format_datetime(value: datetime | None, tz: str = "UTC", width: str = "medium") -> str:
    """VALUE (UTC if naive) as the reader writes a date and time, in zone TZ."""
    if value is None:
        return "—"
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return dates.format_datetime(aware, width, tzinfo=ZoneInfo(tz), locale=_locale())


def format_date(value: date | datetime | None, width: str = "long") -> str:
    """VALUE as the reader writes a date ("6 décembre 2026", "December 6, 2026")."""
    if value is None:
        return "—"
    return dates.format_date(value, width, locale=_locale())


def format_number(value: int | float | None) -> str:
    """VALUE with the reader's digit grouping and decimal sign ("1 234,5", "1,234.5")."""
    if value is None:
        return "—"
    return numbers.format_decimal(value, locale=_locale())


def install(env: Environment) -> Environment:
    """Give ENV the i18n extension (``{% trans %}``, ``_()``) with callables that translate in
    the language in effect when a template renders (each request or mail sets its own with
    ``use``), and the ``datetime``, ``date`` and ``number`` filters."""
    env.add_extension("jinja2.ext.i18n")

    def _gettext(message: str) -> str:
        return translations(current()).ugettext(message)

    def _ngettext(singular: str, plural: str, num: int) -> str:
        return translations(current()).ungettext(singular, plural, num)

    env.install_gettext_callables(_gettext, _ngettext, newstyle=True)  # type: ignore[attr-defined]
    env.filters["datetime"] = format_datetime
    env.filters["date"] = format_date
    env.filters["number"] = format_number
    env.globals["language"] = current
    return env
