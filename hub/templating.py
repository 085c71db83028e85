"""Jinja2 templates: the hub's own (templates/ package) and users' (sandboxed)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from jinja2.sandbox import SandboxedEnvironment


@lru_cache(maxsize=1)
def _builtin() -> Environment:
    return Environment(
        loader=PackageLoader("templates", ""),
        autoescape=select_autoescape(enabled_extensions=("html",), default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        keep_trailing_newline=True,
    )


def render(name: str, **context: Any) -> str:
    """Render one of the hub's own templates, e.g. ``email/confirmation.txt.j2``."""
    return _builtin().get_template(name).render(**context)


@lru_cache(maxsize=1)
def sandbox() -> SandboxedEnvironment:
    """The environment for templates written by users (reminders, auto-replies)."""
    return SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
