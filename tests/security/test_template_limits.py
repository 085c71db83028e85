"""Users' templates get bounded work and output (before: `{{ 'a'*100000000 }}` in the
console's calendar preview answered 100 MB and took the hub from 414 MB to 1.3 GB;
`range(10**9)` gave a 500)."""

from __future__ import annotations

import re
import resource
import time
from datetime import UTC, datetime

import pytest
from sqlmodel import select

from hub.campaigns import templates as mt
from hub.core.templating import MAX_LENGTH, render_bounded, sandbox
from hub.errors import InvalidInput, TemplateLimitExceeded
from hub.reminders.render import render_reminder
from hub.store.db import session_scope
from hub.store.models import Account, Calendar

ATTACKS = {
    "repeat": "{{ 'a' * 100000000 }}",
    "repeat list": "{{ ([1] * 100000000)|length }}",
    "range": "{% for i in range(10**9) %}{% endfor %}",
    "range list": "{{ range(10**9)|list|length }}",
    "power": "{{ 10 ** 100000000 }}",
    "powers": "{{ 10 ** 10 ** 10 ** 10 }}",
    "float power": "{{ 10.0 ** 100000 }}",
    "center": "{{ 'x'|center(100000000) }}",
    "indent": "{{ 'x\ny'|indent(100000000) }}",
    "wordwrap": "{{ ('a ' * 5000)|wordwrap(1, wrapstring='b' * 5000) }}",
    "format filter": "{{ '%0100000000d'|format(1) }}",
    "format method": "{{ '{:>100000000}'.format(1) }}",
    "format nested": "{{ '{:>{}}'.format(1, 100000000) }}",
    "percent": "{{ '%*d' % (100000000, 1) }}",
    "ljust": "{{ 'x'.ljust(100000000) }}",
    "replace": "{{ ('a' * 10000).replace('a', 'b' * 10000) }}",
    "replace filter": "{{ ('a' * 10000)|replace('a', 'b' * 10000) }}",
    "join": "{{ ('x' * 10000).join(['y'] * 10000) }}",
    "join filter": "{{ (['y' * 1000] * 1000)|join('x' * 1000) }}",
    "sum": "{{ ([[1] * 10000] * 10000)|sum(start=[])|length }}",
    "batch": "{{ [1]|batch(100000000, 0)|list|length }}",
    "doubling +": "{% set ns = namespace(s='ab') %}{% for i in range(60) %}"
    "{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s|length }}",
    "doubling ~": "{% set ns = namespace(s='ab') %}{% for i in range(60) %}"
    "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
    "doubling *": "{% set ns = namespace(n=3) %}{% for i in range(60) %}"
    "{% set ns.n = ns.n * ns.n %}{% endfor %}{{ ns.n }}",
    "nested loops": "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}"
    "{% endfor %}",
    "macro recursion": "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}"
    "x{% endmacro %}{{ f(40) }}",
    "set block": "{% set ns = namespace(s='ab') %}{% for i in range(60) %}"
    "{% set block %}{{ ns.s }}{{ ns.s }}{% endset %}{% set ns.s = block %}{% endfor %}",
    "output": "{% for i in range(10000) %}{{ 'x' * 10000 }}{% endfor %}",
}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_each_amplification_is_refused_quickly_naming_a_limit(name: str) -> None:
    before = _rss_mb()
    start = time.perf_counter()
    with pytest.raises(TemplateLimitExceeded) as refused:
        render_bounded(sandbox().from_string(ATTACKS[name]), {}, max_parts=6)
    assert time.perf_counter() - start < 5.0
    # Peak memory of the whole test process: no gigabyte was ever allocated.
    assert _rss_mb() - before < 100
    message = str(refused.value)
    # Refused before the work, or measured after a step of at most twice the limit.
    built = re.search(r"builds a value of (\d+)", message)
    assert built is None or int(built.group(1)) <= 2 * MAX_LENGTH, message
    assert "limit" in message or "more than" in message or "longer than" in message


def test_ordinary_templates_still_work() -> None:
    text = render_bounded(
        sandbox().from_string(
            "{% for n in names %}{{ n|upper ~ '!' }}{% if not loop.last %}, {% endif %}"
            "{% endfor %} {{ '%02d'|format(7) }} {{ 'a' * 3 }} {{ 2 ** 10 }} "
            "{{ '{:>4}'.format(1) }} {{ range(3)|list|join('-') }}"
        ),
        {"names": ["ana", "bo"]},
        max_parts=6,
    )
    assert text == "ANA!, BO! 07 aaa 1024    1 0-1-2"


def test_a_python_error_in_a_template_is_an_invalid_input_not_a_crash() -> None:
    start = datetime(2030, 1, 1, 9, tzinfo=UTC)
    for broken in ("{{ 1 / 0 }}", "{{ 'a' * 1.5 }}", "{{ [1][5] }}"):
        with pytest.raises(InvalidInput):
            render_reminder(broken, locale="fr_FR", tz="Europe/Paris", start=start, name="X")


def test_a_huge_reminder_template_is_refused_before_compiling() -> None:
    start = datetime(2030, 1, 1, 9, tzinfo=UTC)
    with pytest.raises(TemplateLimitExceeded, match="the limit is 5000"):
        render_reminder("{{ name }}" * 100_000, locale="fr_FR", tz="Europe/Paris", start=start)


def test_a_reminder_never_exceeds_max_parts() -> None:
    start = datetime(2030, 1, 1, 9, tzinfo=UTC)
    long = "{{ 'Bonjour ' * 200 }}"  # 1,600 characters: 11 parts
    with pytest.raises(TemplateLimitExceeded) as refused:
        render_reminder(long, locale="fr_FR", tz="Europe/Paris", start=start, max_parts=10)
    assert str(refused.value) == "template output is longer than 10 parts (sending.max_parts)"


async def test_console_calendar_preview_answers_422_naming_the_limit(console, engine) -> None:
    alice = await console("alice")
    with session_scope(engine) as s:
        acme = s.exec(select(Account).where(Account.name == "acme")).one()
        assert acme.id is not None
        calendar = Calendar(
            account_id=acme.id,
            name="cabinet",
            source_type="ics",
            settings='{"url": "https://calendar.clinic.example/cabinet.ics"}',
        )
        s.add(calendar)
        s.flush()
        calendar_id = calendar.id
    url = f"/console/calendars/{calendar_id}/preview"
    cases = {
        "{{ 'a'*100000000 }}": "the limit is",
        "{% for i in range(10**9) %}{% endfor %}": "range() of 1000000000 numbers",
        "{{ 'Bonjour ' * 200 }}": "template output is longer than 6 parts (sending.max_parts)",
    }
    for template, reason in cases.items():
        r = await alice.post(url, {"template": template})
        assert r.status_code == 422, (template, r.status_code)
        assert reason in r.text
        assert len(r.content) < 10_000
    ok = await alice.post(url, {"template": "Bonjour {{ name }}"})
    assert ok.status_code == 200 and "Bonjour" in ok.text


def test_campaign_preview_refuses_an_amplifying_template(engine, config, account) -> None:
    with session_scope(engine) as s:
        with pytest.raises(TemplateLimitExceeded):
            mt.preview_personalized(
                s, config, "acme", "{{ 'a'*100000000 }}", numbers=["0612345678"]
            )
        # A merge field may be long for one recipient: the preview says so for it alone.
        preview = mt.preview_personalized(
            s, config, "acme", "{{ number }} {{ 'x' * 2000 }}", numbers=["0612345678"]
        )
    row = preview["recipients"][0]
    assert "sending.max_parts" in row["error"]
