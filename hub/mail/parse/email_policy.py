"""The ``email`` policy the mail doors parse with: ``email.policy.default``, whose header
objects and header parameters are built once per value instead of at every lookup.

The stdlib builds a fresh header class and parses the value again each time a header is read
(``get_content_type``, ``get_param``, ``get_payload(decode=True)`` ... read Content-Type and
Content-Transfer-Encoding many times per mail): that was most of the time spent parsing a
short mail. Header objects are immutable and most MIME header values repeat from mail to
mail, so sharing them changes nothing but the time.
"""

from __future__ import annotations

from email.headerregistry import HeaderRegistry
from email.message import EmailMessage
from email.policy import EmailPolicy
from functools import lru_cache
from typing import Any

# Longer values (a References chain, an odd Subject) are parsed each time rather than kept.
_LONGEST_KEPT = 256


class _Headers(HeaderRegistry):
    """The stdlib's header factory, which makes a new class per lookup: one per name here."""

    def __init__(self) -> None:
        super().__init__()
        self._classes = lru_cache(maxsize=256)(super().__getitem__)

    def __getitem__(self, name: str) -> Any:
        return self._classes(name)


class _ParsePolicy(EmailPolicy):
    """``policy.default``, handing out one header object per (name, value) read."""

    def header_fetch_parse(self, name: str, value: str) -> Any:
        if hasattr(value, "name") or len(value) > _LONGEST_KEPT:
            return super().header_fetch_parse(name, value)
        return _fetched(name, value)


class _SharedParamsMessage(EmailMessage):
    """A parsed message whose header parameters (charset, format, filename, boundary...) are
    parsed once per header value: the stdlib parses them again at each ``get_param``."""

    def _get_params_preserve(self, failobj: Any, header: str) -> Any:
        value = self.get(header, _MISSING)
        if value is _MISSING:
            return failobj
        key = str(value)  # what the stdlib parses; the result depends on it only
        params = _PARAMS.get(key)
        if params is None:
            params = tuple(super()._get_params_preserve(failobj, header))  # type: ignore[misc]
            if len(key) <= _LONGEST_KEPT:
                if len(_PARAMS) >= 1024:
                    _PARAMS.clear()
                _PARAMS[key] = params
        return list(params)


_MISSING = object()
_PARAMS: dict[str, tuple[Any, ...]] = {}

PARSE_POLICY = _ParsePolicy(header_factory=_Headers(), message_factory=_SharedParamsMessage)


@lru_cache(maxsize=1024)
def _fetched(name: str, value: str) -> Any:
    return EmailPolicy.header_fetch_parse(PARSE_POLICY, name, value)
