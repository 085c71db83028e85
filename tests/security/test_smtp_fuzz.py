"""Fuzz: mutated mails through the real SMTP listener (issue 14, "Must show").

Real mails from tests/data/mail, mutated (headers, bytes, MIME nesting, charsets,
boundaries, non-ASCII subjects and file names), sent with smtplib to a running hub. For
every mail: the answer is one line of printable ASCII; it is 250 or a 5xx (a content
problem is never a 4xx, which the sender's server retries for days, nor a 500); nothing is
stored for a refused mail; and the hub still answers on the same connection. Bounded:
150 mails, about 20 s per database.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import smtplib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.sending.credits import top_up
from hub.store.db import session_scope
from tests.security.smtp_hub import INTAKE, SmtpHub, smtp_hub_fixture, tls_pair_fixture  # noqa: F401 (fixtures)

SEEDS = sorted((Path(__file__).parent.parent / "data" / "mail").glob("*.eml"))
_ids = itertools.count()

# Text with what breaks naive code: accents, symbols, invisible and control characters,
# right-to-left marks, emoji, and lone surrogates (written as undecodable bytes).
_CHARS = st.characters(
    codec=None,
    categories=("L", "M", "N", "P", "S", "Z", "C"),
    exclude_characters="\r\n",
)
_TEXT = st.text(_CHARS, max_size=40)
_NUMBER = st.sampled_from(["0612345678", "06 12 34 56 79", "+33612345670", "0123456789"])


def _header_bytes(text: str, how: int) -> bytes:
    """TEXT as a header value: raw UTF-8, raw latin-1-ish bytes or an RFC 2047 word."""
    data = text.encode("utf-8", "surrogatepass")
    if how == 0:
        return data
    if how == 1:
        return text.encode("latin-1", "replace")
    return b"=?utf-8?b?" + base64.b64encode(data) + b"?="


def _set_header(raw: bytes, name: bytes, value: bytes) -> bytes:
    head, sep, body = (
        raw.partition(b"\n\n") if b"\r\n\r\n" not in raw else raw.partition(b"\r\n\r\n")
    )
    lines = [line for line in head.splitlines() if not line.lower().startswith(name.lower() + b":")]
    return b"\r\n".join([name + b": " + value, *lines]) + (sep or b"\r\n\r\n") + body


@st.composite
def _subject(draw: st.DrawFn) -> tuple[bytes, bytes]:
    words = draw(st.lists(st.one_of(_NUMBER, _TEXT), min_size=0, max_size=4))
    return b"Subject", _header_bytes(", ".join(words), draw(st.integers(0, 2)))


@st.composite
def _message_id(draw: st.DrawFn) -> tuple[bytes, bytes]:
    junk = draw(st.binary(max_size=30).filter(lambda b: b"\r" not in b and b"\n" not in b))
    size = draw(st.sampled_from([0, 0, 300]))
    # A new id for each mail (of fixed width: the mutations' positions depend on the size).
    return b"Message-ID", b"<%08d.%s%s@fuzz.example>" % (next(_ids), junk, b"x" * size)


@st.composite
def _any_header(draw: st.DrawFn) -> tuple[bytes, bytes]:
    name = draw(st.sampled_from([b"From", b"To", b"Content-Type", b"X-Fuzz", b"Date"]))
    value = _header_bytes(draw(_TEXT), draw(st.integers(0, 2)))
    return name, value


def _nest(raw: bytes, depth: int) -> bytes:
    """RAW's body wrapped in DEPTH multiparts."""
    head, _, body = raw.partition(b"\r\n\r\n")
    inner_type = b"text/plain; charset=utf-8"
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-type:"):
            inner_type = line.split(b":", 1)[1].strip()
    opening = b"".join(
        b"--n%d\r\nContent-Type: multipart/mixed; boundary=n%d\r\n\r\n" % (i, i + 1)
        for i in range(depth - 1)
    )
    part = b"--n%d\r\nContent-Type: %s\r\n\r\n%s\r\n" % (depth - 1, inner_type, body)
    closing = b"".join(b"--n%d--\r\n" % i for i in reversed(range(depth)))
    nested = _set_header(head + b"\r\n\r\n", b"Content-Type", b"multipart/mixed; boundary=n0")
    return nested.rstrip(b"\r\n") + b"\r\n\r\n" + opening + part + closing


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    raw = draw(st.sampled_from(SEEDS)).read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    raw = _set_header(raw, *draw(_message_id()))
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.integers(0, 8))
        if kind == 0:
            raw = _set_header(raw, *draw(_subject()))
        elif kind == 1:
            raw = _set_header(raw, *draw(_any_header()))
        elif kind == 2:  # bytes inserted anywhere
            at = draw(st.integers(0, len(raw)))
            raw = raw[:at] + draw(st.binary(min_size=1, max_size=16)) + raw[at:]
        elif kind == 3:  # bytes cut out
            at = draw(st.integers(0, len(raw)))
            raw = raw[:at] + raw[at + draw(st.integers(1, 200)) :]
        elif kind == 4:
            raw = _nest(raw, draw(st.sampled_from([1, 3, 19, 21, 40, 2000])))
        elif kind == 5:  # boundaries broken or removed
            raw = raw.replace(
                b"boundary=", draw(st.sampled_from([b"boundary=zz", b"x-b=", b'boundary=""']))
            )
        elif kind == 6:
            charset = draw(
                st.sampled_from(
                    [b"utf-7", b"bogus", b"base64", b"utf-16", b"iso-2022-jp", b"x\xff", b""]
                )
            )
            raw = raw.replace(b"charset=", b"charset=" + charset + b"-", 1)
        elif kind == 7:  # an attachment with a non-ASCII name
            name = draw(_TEXT).encode("utf-8", "surrogatepass")
            raw = _nest(raw, 1).replace(
                b"--n0--",
                b"--n0\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; "
                b'filename="' + name + b'.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
                b"JVBERi0xLjQK\r\n--n0--",
            )
        else:
            raw = raw.replace(b"Content-Transfer-Encoding: ", b"Content-Transfer-Encoding: x", 1)
    # Bare CR or LF is refused before anything is read (SMTP smuggling): keep CRLF only.
    return raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


class _Connection:
    """One logged-in client, reopened if the hub closed it."""

    def __init__(self, hub: SmtpHub) -> None:
        self.hub = hub
        self.client: smtplib.SMTP | None = None

    def get(self) -> smtplib.SMTP:
        if self.client is None:
            self.client = self.hub.client()
        return self.client


def _check_reply(code: int, text: bytes) -> None:
    assert b"\n" not in text and b"\r" not in text, (code, text)
    assert all(32 <= b < 127 for b in text), (code, text)
    assert code == 250 or 500 < code < 600, (code, text)


async def test_mutated_mails_get_an_ascii_answer_and_a_5xx_when_refused(smtp_hub: SmtpHub):
    with session_scope(smtp_hub.engine) as s:
        top_up(s, "acme", 1_000_000)
    connection = _Connection(smtp_hub)
    answers: list[int] = []

    @settings(
        max_examples=150,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(_mutated())
    def check(raw: bytes) -> None:
        before = smtp_hub.counts()
        client = connection.get()
        client.rset()
        assert client.mail("anne@clinic.example")[0] == 250
        assert client.rcpt(INTAKE)[0] == 250
        try:
            code, text = client.data(raw)
        except smtplib.SMTPDataError as exc:
            code, text = exc.smtp_code, exc.smtp_error
        _check_reply(code, text)
        answers.append(code)
        after = smtp_hub.counts()
        if code == 250 and b"already received" not in text:
            assert after[1] == before[1] + 1, (text, before, after)
        else:
            assert after == before, (code, text, before, after)
        # The hub still answers on the same connection.
        assert client.noop()[0] == 250

    await asyncio.to_thread(check)

    def still_answers() -> tuple[int, int]:
        with smtp_hub.client() as client:
            return client.ehlo()[0], client.noop()[0]

    assert await asyncio.to_thread(still_answers) == (250, 250)
    # The fuzz reached both sides: mails taken in and mails refused.
    print(sorted(__import__("collections").Counter(answers).items()))
    assert 250 in answers and any(code >= 500 for code in answers), answers
