"""``render_bounded`` builds the render's context itself (from the globals' maps, not key by
key through Jinja's ChainMap): the text, and every error, is what ``Template.generate``
gives."""

from __future__ import annotations

from typing import Any

import pytest

from hub.core import templating
from hub.core.templating import render_bounded, sandbox
from hub.errors import TemplateLimitExceeded

TEMPLATES = [
    "Hello {{ name }}",
    "{% if name %}{{ name|upper }}{% endif %} {{ range(3)|list }} {{ dict(a=1) }}",
    "{% for i in range(3) %}{{ loop.index }}{{ cycler('a', 'b').next() }}{% endfor %}",
    "{% set x = namespace(n=1) %}{{ x.n }} {{ joiner(',')() }}",
    "{{ lipsum(1, false, 2, 3)|length > 0 }}",
    "{{ missing }}",
    "{{ 1 / 0 }}",
    "{{ name ~ title }}",
    "{% macro m(a) %}[{{ a }}]{% endmacro %}{{ m(name) }}{{ self }}",
    "{{ 'x' * 100000 }}",
    "{% for i in range(200) %}{% for j in range(200) %}{% endfor %}{% endfor %}",
    "{{ range }}{{ title }}",
]
CONTEXTS: list[dict[Any, Any]] = [
    {"name": "Jeanne", "title": "RDV"},
    {"name": "", "title": ""},
    {"name": "Jeanne", "title": "RDV", "range": "shadowed", "dict": 3},
    {"name": "Jeanne", "title": "RDV", "self": "a field called self"},
    {"name": "Jeanne", "title": "RDV", 1: "not a name"},
]


def _outcome(render: Any, *args: Any) -> tuple[str, str]:
    try:
        return "text", "".join(render(*args))
    except Exception as exc:  # noqa: BLE001 (the comparison is the point)
        return type(exc).__name__, str(exc)


def _generate(template: Any, context: dict[Any, Any]) -> Any:
    return template.generate(**context)


@pytest.mark.parametrize("source", TEMPLATES)
def test_same_outcome_as_generate(source: str) -> None:
    template = sandbox().from_string(source)
    for context in CONTEXTS:
        expected = _outcome(_generate, template, context)
        got = _outcome(templating._generate, template, context)
        assert got == expected, (source, context)


def test_template_globals_and_overlay_filters() -> None:
    env = sandbox().overlay()
    env.filters = {**env.filters, "shout": lambda v: f"{v}!"}
    template = env.from_string("{{ greeting|shout }} {{ name }}", globals={"greeting": "hi"})
    for context in CONTEXTS[:3]:
        assert "".join(templating._generate(template, context)) == "".join(
            template.generate(**context)
        )


def test_limits_still_hold() -> None:
    template = sandbox().from_string(
        "{% for i in range(10000) %}{% for j in range(10) %}{% endfor %}{% endfor %}"
    )
    with pytest.raises(TemplateLimitExceeded):
        render_bounded(template, {}, max_parts=1)
    template = sandbox().from_string("{{ 'abc' * 2000 }}")
    with pytest.raises(TemplateLimitExceeded):
        render_bounded(template, {}, max_parts=1)


LONG = [
    "{{ 'abc' * 300 }}{{ name }}",
    "{% for i in range(300) %}{{ name }} {% endfor %}",
    "{{ name }}{% for i in range(50) %}{{ 'x' * 30 }}{% endfor %}{{ 1 / 0 }}",
]


@pytest.mark.parametrize("source", TEMPLATES + LONG)
@pytest.mark.parametrize("max_parts", [1, 3, 255])
def test_render_bounded_as_through_generate(
    source: str, max_parts: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """render_bounded reads the template's chunks itself (no ``_generate`` between): texts,
    limits and errors are those of the general path (``Template.generate``)."""
    template = sandbox().from_string(source)
    got = [
        _outcome(lambda c: [render_bounded(template, c, max_parts=max_parts)], c) for c in CONTEXTS
    ]
    monkeypatch.setattr(templating, "_context", lambda template, context: None)
    expected = [
        _outcome(lambda c: [render_bounded(template, c, max_parts=max_parts)], c) for c in CONTEXTS
    ]
    assert got == expected
