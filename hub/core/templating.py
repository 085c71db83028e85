"""Jinja2 templates: the hub's own (templates/ package) and users' (sandboxed, bounded).

Users' templates (reminders, campaign texts, auto-replies) run in a sandbox that also bounds
the work and memory one render may take: ``{{ 'a' * 100000000 }}``, ``range(10**9)``,
``10**10**10``, ``'x'|center(10**8)``, nested loops or a doubling ``namespace`` are refused
with a TemplateLimitExceeded naming the limit, never a 500 or a gigabyte of memory. Render
them with ``render_bounded``: it also stops the output at a length an SMS can have.
"""

from __future__ import annotations

import contextvars
import functools
import operator
import re
from collections import ChainMap
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import lru_cache
from typing import Any, NoReturn

from jinja2 import (
    Environment,
    PackageLoader,
    StrictUndefined,
    Template,
    TemplateError,
    nodes,
    select_autoescape,
)
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment
from jinja2.visitor import NodeTransformer

from hub.core import i18n
from hub.errors import InvalidInput, TemplateLimitExceeded

# Characters of any string, items of any list a template builds (a reminder is at most
# 255 parts of 153 characters; nothing a template needs comes near).
MAX_LENGTH = 40_000
# Bits of an integer a template computes (about 300 decimal digits).
MAX_INT_BITS = 1_000
# Numbers in one range(), and loop steps and calls in one render (a reminder needs a few).
MAX_RANGE = 10_000
MAX_LOOP_STEPS = 20_000
# Most characters per SMS part (GSM 7-bit, one part); a multi-part message has fewer.
_CHARS_PER_PART = 160
# Room for the whitespace a template's layout adds (reminders fold runs of it into one).
_LAYOUT_FACTOR = 4


def _builtin_env() -> Environment:
    # The hub's own texts are translated (hub.core.i18n): render them inside i18n.use(language).
    return i18n.install(
        Environment(
            loader=PackageLoader("templates", ""),
            autoescape=select_autoescape(enabled_extensions=("html",), default=False),
            undefined=StrictUndefined,
            trim_blocks=True,
            keep_trailing_newline=True,
        )
    )


_builtin = lru_cache(maxsize=1)(_builtin_env)


def render(name: str, **context: Any) -> str:
    """Render one of the hub's own templates, e.g. ``email/confirmation.txt.j2``, in the
    language in effect (``with hub.core.i18n.use(language):``)."""
    return _builtin().get_template(name).render(**context)


# -- the bounds ---------------------------------------------------------------------------
class _Steps:
    def __init__(self, limit: int) -> None:
        self.left = limit

    def take(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise TemplateLimitExceeded(
                f"the template loops more than {MAX_LOOP_STEPS} times in all; loop over fewer items"
            )


# The loop budget of the render in progress (render_bounded sets a fresh one).
_steps: contextvars.ContextVar[_Steps | None] = contextvars.ContextVar("smshub_steps", default=None)


def _step() -> None:
    steps = _steps.get()
    if steps is not None:
        steps.take()


def _counted(iterable: Iterable[Any]) -> Iterator[Any]:
    # Wrapped around every {% for %}: each step of each loop costs one of the render's budget
    # (of this loop alone when rendered without render_bounded).
    steps = _steps.get() or _Steps(MAX_LOOP_STEPS)
    for item in iterable:
        steps.take()
        yield item


def _concat(values: list[Any]) -> str:
    # The `~` operator, measured before it is joined.
    texts = [str(v) for v in values]
    size = sum(len(t) for t in texts)
    if size > MAX_LENGTH:
        raise _too_long("a joined text", size)
    return "".join(texts)


def _too_long(what: str, size: int) -> TemplateLimitExceeded:
    return TemplateLimitExceeded(
        f"the template builds {what} of {size} items or characters; the limit is {MAX_LENGTH}"
    )


def _check_size(value: Any) -> Any:
    if isinstance(value, str | bytes | list | tuple) and len(value) > MAX_LENGTH:
        raise _too_long("a value", len(value))
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise TemplateLimitExceeded(
            f"the template computes a number of more than {MAX_INT_BITS} bits"
        )
    return value


def _bounded_range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise TemplateLimitExceeded(
            f"range() of {len(numbers)} numbers in a template; the limit is {MAX_RANGE}"
        )
    return numbers


_SEQUENCE = (str, bytes, list, tuple)
# Numbers in a format string (widths, precisions) and nested fields that take them from the
# arguments ('%*d', '{:>{}}').
_FORMAT_NUMBER = re.compile(r"\d+")
_FORMAT_INDIRECT = re.compile(r"\*|\{[^{}]*\{")


_FORMAT_LIMIT = f"a format width or precision in the template is over the limit of {MAX_LENGTH}"


def _check_format(fmt: str, args: Iterable[Any]) -> None:
    """Refuse a format that would pad to more than MAX_LENGTH characters."""
    if any(int(n) > MAX_LENGTH for n in _FORMAT_NUMBER.findall(fmt)):
        raise TemplateLimitExceeded(_FORMAT_LIMIT)
    if _FORMAT_INDIRECT.search(fmt):
        for arg in args:
            values = arg.values() if isinstance(arg, Mapping) else arg
            for value in values if isinstance(values, list | tuple) else [values]:
                if isinstance(value, int) and abs(value) > MAX_LENGTH:
                    raise TemplateLimitExceeded(_FORMAT_LIMIT)


def _too_big() -> TemplateLimitExceeded:
    return TemplateLimitExceeded(f"the template computes a number of more than {MAX_INT_BITS} bits")


def _check_mul(left: Any, right: Any) -> None:
    for seq, n in ((left, right), (right, left)):
        if isinstance(seq, _SEQUENCE) and isinstance(n, int):
            if len(seq) * max(n, 0) > MAX_LENGTH:
                raise _too_long("a repeated text or list", len(seq) * n)
            return
    if (
        isinstance(left, int)
        and isinstance(right, int)
        and left.bit_length() + right.bit_length() > MAX_INT_BITS
    ):
        raise _too_big()


def _check_add(left: Any, right: Any) -> None:
    if (
        isinstance(left, _SEQUENCE)
        and isinstance(right, _SEQUENCE)
        and len(left) + len(right) > MAX_LENGTH
    ):
        raise _too_long("a joined text or list", len(left) + len(right))


def _check_pow(left: Any, right: Any) -> None:
    if (
        isinstance(left, int)
        and isinstance(right, int)
        and right > 0
        and abs(left) > 1
        and right * max(left.bit_length() - 1, 1) > MAX_INT_BITS
    ):
        raise _too_big()


def _check_mod(left: Any, right: Any) -> None:
    if isinstance(left, str):
        _check_format(left, [right])


# The operators BoundedSandbox intercepts, each with the check of its operands.
_BINOP_CHECKS: dict[str, Callable[[Any, Any], None]] = {
    "*": _check_mul,
    "+": _check_add,
    "**": _check_pow,
    "%": _check_mod,
}


def _check_binop(op: str, left: Any, right: Any) -> None:
    check = _BINOP_CHECKS.get(op)
    if check is not None:
        check(left, right)


def _check_padding(owner: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    numbers = [a for a in (*args, *kwargs.values()) if _is_number(a)]
    if any(n > MAX_LENGTH for n in numbers):
        raise _too_long(f"a padded text ({name})", max(numbers))
    expanded = owner.count("\t") * max(numbers, default=8)
    if name == "expandtabs" and expanded > MAX_LENGTH:
        raise _too_long("a text with tabs expanded", expanded)


def _check_str_format(owner: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    _check_format(owner, [*args, kwargs])


def _check_replace(owner: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    if len(args) < 2:
        return
    old, new = args[0], args[1]
    if isinstance(old, str) and isinstance(new, str):
        hits = owner.count(old) if old else len(owner) + 1
        if len(owner) + hits * max(len(new) - len(old), 0) > MAX_LENGTH:
            raise _too_long("a text with replacements", hits * len(new))


def _check_join(owner: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    items = args[0] if args else None
    if isinstance(items, list | tuple):
        size = sum(len(i) if isinstance(i, str | bytes) else 0 for i in items)
        if size + len(owner) * max(len(items) - 1, 0) > MAX_LENGTH:
            raise _too_long("a joined text", size + len(owner) * len(items))


# The str methods whose result can be far longer than their inputs, with their checks.
_CALL_CHECKS: dict[str, Callable[[str, str, tuple[Any, ...], dict[str, Any]], None]] = {
    "center": _check_padding,
    "ljust": _check_padding,
    "rjust": _check_padding,
    "zfill": _check_padding,
    "expandtabs": _check_padding,
    "format": _check_str_format,
    "format_map": _check_str_format,
    "replace": _check_replace,
    "join": _check_join,
}


def _check_call(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Refuse the str methods whose result can be far longer than their inputs."""
    owner = getattr(obj, "__self__", None)
    name = getattr(obj, "__name__", "")
    if isinstance(owner, str) and name in _CALL_CHECKS:
        _CALL_CHECKS[name](owner, name, args, kwargs)


def _bounded_filter(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """FN (a Jinja filter) with its arguments checked first, its result checked after."""

    def bounded(*args: Any, **kwargs: Any) -> Any:
        values = [a for a in args if not _is_jinja_internal(a)]
        numbers = [a for a in (*values[1:], *kwargs.values()) if _is_number(a)]
        if name in {"center", "indent", "wordwrap", "truncate", "batch", "slice"} and any(
            n > MAX_LENGTH for n in numbers
        ):
            raise _too_long(f"a {name} filter argument", max(numbers))
        if name == "format" and values and isinstance(values[0], str):
            _check_format(values[0], [tuple(values[1:]), kwargs])
        if name == "replace" and len(values) >= 3:
            _check_call(str(values[0]).replace, tuple(values[1:3]), {})
        if name in {"join", "sum", "list", "wordwrap", "indent", "batch", "slice"}:
            # Their result can be far larger than any one argument: the inputs are made
            # lists first and their total measured.
            args = tuple(list(a) if isinstance(a, Iterator | range) else a for a in args)
            _check_inputs(name, args, kwargs)
        return _check_size(fn(*args, **kwargs))

    # wraps() keeps Jinja's marks (pass_context, pass_environment) on the wrapper.
    return functools.wraps(fn)(bounded)


def _is_number(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_jinja_internal(value: Any) -> bool:
    return isinstance(value, Environment) or type(value).__name__ in {"Context", "EvalContext"}


def _check_inputs(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    values = [a for a in args if not _is_jinja_internal(a)]
    if not values:
        return
    first = values[0]
    extra = [a for a in (*values[1:], *kwargs.values()) if isinstance(a, str | int)]
    seps = sum(len(a) for a in extra if isinstance(a, str))
    widths = [a for a in extra if isinstance(a, int) and _is_number(a)]
    total = _input_size(first) + _added_size(name, first, seps, widths)
    if total > MAX_LENGTH:
        raise _too_long(f"the result of the {name} filter", total)


def _input_size(first: Any) -> int:
    """The size of a filter's input: characters of a text, items (or their lengths) of a list."""
    if isinstance(first, list | tuple):
        return sum(
            len(item) if isinstance(item, str | bytes | list | tuple) else 1 for item in first
        )
    return len(first) if isinstance(first, str) else 0


def _added_size(name: str, first: Any, seps: int, widths: list[int]) -> int:
    """What filter NAME adds to its input FIRST: separators (SEPS characters in all the
    string arguments) and padding (WIDTHS, the integer arguments)."""
    if name == "join":
        return seps * max(len(first) if isinstance(first, list | tuple) else 0, 0)
    if name in {"wordwrap", "indent"} and isinstance(first, str):
        lines = first.count("\n") + 1 + (len(first) // max(min(widths, default=1), 1))
        return lines * (seps + max((w for w in widths if w < MAX_LENGTH), default=0))
    if name in {"batch", "slice"}:
        return max(widths, default=0)
    return 0


class BoundedSandbox(SandboxedEnvironment):
    """The sandbox, with arithmetic, calls, filters, ranges and loops bounded."""

    intercepted_binops = frozenset({"*", "+", "**", "%"})
    _OPS: dict[str, Callable[[Any, Any], Any]] = {
        "*": operator.mul,
        "+": operator.add,
        "**": operator.pow,
        "%": operator.mod,
    }

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        return _check_size(self._OPS[operator](left, right))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 (Jinja's signature)
        # A call (macros calling themselves twice, loop()) costs a step of the budget too.
        _step()
        _check_call(__obj, args, kwargs)
        return _check_size(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        # Jinja hands out its own sandboxed wrapper for str.format: its widths are checked
        # before it pads anything.
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt = value.__self__

        def checked(*args: Any, **kwargs: Any) -> str:
            _check_format(fmt, [*args, kwargs])
            result: str = _check_size(wrapped(*args, **kwargs))
            return result

        return checked

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = _Bounds().visit(super()._parse(source, name, filename))
        assert isinstance(tree, nodes.Template)
        return tree


class _Bounds(NodeTransformer):
    """Rewrites a parsed template so that its loops, ``~`` joins and ``{% set %}`` blocks go
    through the bounds (as filters, so that meta.find_undeclared_variables does not take
    them for merge fields)."""

    def visit_For(self, node: nodes.For) -> nodes.Node:  # noqa: N802 (Jinja's visitor names)
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, "smshub_steps", [], [], None, None)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:  # noqa: N802
        self.generic_visit(node)
        return nodes.Filter(nodes.List(node.nodes), "smshub_concat", [], [], None, None)

    def visit_AssignBlock(self, node: nodes.AssignBlock) -> nodes.Node:  # noqa: N802
        self.generic_visit(node)
        # The captured text (or what the block's own filter made of it) is measured.
        inner = node.filter
        node.filter = nodes.Filter(inner, "smshub_size", [], [], None, None)
        return node


def _sandbox_env() -> BoundedSandbox:
    env = BoundedSandbox(undefined=StrictUndefined, autoescape=False)
    env.filters = {name: _bounded_filter(name, fn) for name, fn in env.filters.items()}
    env.filters["smshub_steps"] = _counted
    env.filters["smshub_concat"] = _concat
    env.filters["smshub_size"] = _check_size
    env.globals["range"] = _bounded_range
    return env


@lru_cache(maxsize=1)
def sandbox() -> BoundedSandbox:
    """The environment for templates written by users (reminders, campaigns, auto-replies)."""
    return _sandbox_env()


def output_limit(max_parts: int) -> int:
    """Characters a template may write for a text of at most MAX_PARTS SMS parts (with room
    for layout whitespace)."""
    return max_parts * _CHARS_PER_PART * _LAYOUT_FACTOR


def too_many_parts(max_parts: int) -> TemplateLimitExceeded:
    """The error for a template whose text would exceed MAX_PARTS SMS parts."""
    return TemplateLimitExceeded(
        f"template output is longer than {max_parts} parts (sending.max_parts)"
    )


def _context(template: Template, context: Mapping[str, Any]) -> Context | None:
    """The context ``template.generate(**context)`` would render with, built from the
    globals' maps: Jinja reads its globals (a ChainMap) key by key twice a render, most of a
    short text's cost (the planner renders one text per appointment). None when
    ``generate`` itself must run: it runs async templates, and a "self" field is the
    TypeError generate(**context) raises."""
    found = template.globals
    if template.environment.is_async or not isinstance(found, ChainMap) or "self" in context:
        return None
    # What dict(ChainMap) gives: each key's value from the first map that has it, in the
    # ChainMap's order.
    merged: dict[str, Any] = {}
    for layer in reversed(found.maps):
        merged.update(layer)
    # dict(..., **context): non-string keys raise the TypeError generate(**context) raises.
    env = template.environment
    return env.context_class(env, dict(merged, **context), template.name, template.blocks, merged)


def _stream(template: Template, context: Mapping[str, Any]) -> tuple[Iterator[str], bool]:
    """The chunks ``template.generate(**context)`` yields, with the context built by
    ``_context``, and whether an exception raised while reading them needs its traceback
    rewritten (generate() rewrites its own): hand both to ``_failed``. With ``_failed``, the
    one place of that flow: ``_generate`` and ``render_bounded`` read the chunks themselves
    (render_bounded with no generator between: one frame switch less per chunk, and a
    reminder has a dozen)."""
    ctx = _context(template, context)
    if ctx is None:
        return template.generate(**context), False
    return template.root_render_func(ctx), True


def _failed(template: Template, rewrite: bool) -> NoReturn:
    """Raise the exception being handled (call it in the ``except`` block around reading
    ``_stream``'s chunks); REWRITE: as generate(), Jinja first rewrites its traceback to point
    into the template."""
    if rewrite:
        template.environment.handle_exception()
    raise


def _generate(template: Template, context: Mapping[str, Any]) -> Iterator[str]:
    """``template.generate(**context)``, with its context built by ``_context``."""
    stream, rewrite = _stream(template, context)
    try:
        yield from stream
    except Exception:
        _failed(template, rewrite)


def render_bounded(template: Template, context: Mapping[str, Any], *, max_parts: int) -> str:
    """TEMPLATE (from ``sandbox()``) rendered with CONTEXT, within the loop budget and at
    most ``output_limit(max_parts)`` characters; TemplateLimitExceeded names a limit, and
    errors Python raises inside the template (1/0, a wrong type) become TemplateError."""
    limit = output_limit(max_parts)
    token = _steps.set(_Steps(MAX_LOOP_STEPS))
    try:
        chunks: list[str] = []
        size = 0
        stream, rewrite = _stream(template, context)
        too_long = False
        try:
            for chunk in stream:
                size += len(chunk)
                if size > limit:
                    too_long = True
                    break
                chunks.append(chunk)
        except Exception:
            _failed(template, rewrite)
        if too_long:
            raise too_many_parts(max_parts)
        return "".join(chunks)
    except (TemplateError, InvalidInput):
        raise
    except OverflowError:
        raise TemplateLimitExceeded(
            f"the template computes a number too large to use (the limit is {MAX_INT_BITS} bits)"
        ) from None
    except (ArithmeticError, TypeError, ValueError, LookupError, RecursionError) as exc:
        raise TemplateError(f"{type(exc).__name__}: {exc}") from None
    finally:
        _steps.reset(token)
