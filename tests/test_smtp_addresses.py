"""The listener's cached address parser answers exactly as aiosmtpd's own."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from aiosmtpd.smtp import SMTP
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.mail.intake.smtp import IntakeSMTP


def _answer(server: SMTP, arg: str) -> object:
    # Some inputs make aiosmtpd's parser raise (it then answers 500): ours must too.
    try:
        return server._getaddr(arg)
    except Exception as exc:
        return type(exc)


EXAMPLES = [
    "",
    "<>",
    "<anne@clinic.example>",
    "<anne@clinic.example> SIZE=1234 BODY=8BITMIME",
    "anne@clinic.example",
    '<"anne marie"@clinic.example>',
    "<+33612345678@sms.example.com>",
    "<@relay.example:anne@clinic.example>",
    "<anne@clinic.example",
    "<a@b@c>",
    "not an address",
    "0@",
    "<" + "x" * 80 + "@clinic.example>",
]


@pytest.fixture
def servers() -> Iterator[tuple[SMTP, SMTP]]:
    loop = asyncio.new_event_loop()
    try:
        yield SMTP(object(), loop=loop), IntakeSMTP(object(), loop=loop)
    finally:
        loop.close()


@pytest.mark.parametrize("arg", EXAMPLES)
def test_examples_parse_as_aiosmtpd_does(servers: tuple[SMTP, SMTP], arg: str) -> None:
    upstream, ours = servers
    for _ in range(2):  # the second answer comes from the cache
        assert _answer(ours, arg) == _answer(upstream, arg)


def test_local_part_limit_is_part_of_the_answer(servers: tuple[SMTP, SMTP]) -> None:
    upstream, ours = servers
    arg = "<" + "x" * 80 + "@clinic.example>"
    for limit in (0, 64, 100):
        upstream.local_part_limit = ours.local_part_limit = limit
        assert ours._getaddr(arg) == upstream._getaddr(arg)
    assert ours._getaddr(arg)[0] is not None
    ours.local_part_limit = 64
    assert ours._getaddr(arg) == (None, None)


_ATOM = st.text(alphabet='abcxyz019.+-_"@<> ', min_size=0, max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    local=_ATOM,
    domain=_ATOM,
    bracket=st.booleans(),
    params=st.sampled_from(["", " SIZE=12", " BODY=8BITMIME SMTPUTF8", "x"]),
)
def test_generated_arguments_parse_as_aiosmtpd_does(
    local: str, domain: str, bracket: bool, params: str
) -> None:
    arg = f"{local}@{domain}"
    arg = (f"<{arg}>" if bracket else arg) + params
    loop = asyncio.new_event_loop()
    try:
        upstream, ours = SMTP(object(), loop=loop), IntakeSMTP(object(), loop=loop)
        assert _answer(ours, arg) == _answer(upstream, arg)
    finally:
        loop.close()
