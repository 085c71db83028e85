"""A real Kannel for the tests: bearerbox + smsbox + Kannel's own test SMSC ``fakesmsc``.

Usage (the fixture must be imported into the test module, or into ``tests/conftest.py``)::

    from tests.servers.kannel import kannel_factory  # noqa: F401  (registers the fixture)

    def test_something(kannel_factory):
        kannel = kannel_factory(mo_url=kannel_mo_url("http://127.0.0.1:8080/callbacks/kannel/mo"))
        httpx.get(kannel.sendsms_url, params=kannel.sendsms_params("12345", "+33600000001", "Hi"))
        [sms] = kannel.wait_for_sms(1)
        assert sms.text == "Hi"
        kannel.send_mo("+33600000001", "12345", "Ça va? 😀")   # -> GET on mo_url

In async tests use the ``*_async`` variants (``wait_for_sms_async``, ``send_mo_async``...): the
plain ones block, which would also stall a hub running in the test's event loop.

Needs the Debian packages ``kannel`` (bearerbox, smsbox) and ``kannel-extras`` (fakesmsc in
``/usr/lib/kannel/test``); without them the fixture skips (fails in CI, see
``tests.conftest.require_server``).

Topology (one generated ``kannel.conf`` in a temp dir, every port free and on 127.0.0.1)::

    test/hub --sendsms--> smsbox --> bearerbox --smsc "fake-mt"--> fakesmsc (long-running)
                                              <--smsc "fake-mo"-- fakesmsc -m 1 (one per MO)
    hub MO endpoint <--get-url (sms-service)-- smsbox <-- bearerbox

What arrives at fakesmsc (found by experiment with Kannel 1.4.5; the MT fakesmsc logs each
line it receives as ``DEBUG: Got message N: <LINE>`` on stderr, which goes to
``fakesmsc-mt.log``)::

    single part, coding 0:  SENDER RECEIVER text <raw text, UTF-8>
    single part, coding 2:  SENDER RECEIVER ucs-2 <URL-encoded UTF-16BE>   (emoji = surrogates)
    single part, coding 1:  SENDER RECEIVER data <URL-encoded bytes>
    concatenated (any):     SENDER RECEIVER udh <URL-encoded UDH> data <URL-encoded part>

Long messages: with ``concatenation = true`` and ``max-messages`` in ``sendsms-user``, smsbox
/bearerbox split them into parts with a concatenation UDH ``05 00 03 REF TOTAL SEQ``; GSM
parts hold 153 septets (an extension char such as ``€`` or ``{`` counts 2) and are cut on
character boundaries; UCS-2 parts hold 134 bytes (67 UTF-16 units) and may cut an emoji's
surrogate pair in two. The ``udh`` lines do not say which coding the parts use, so
:func:`reassemble` joins the raw bytes of all parts first and then decodes them (coding given by
the caller, or guessed: valid UTF-8 without control characters is GSM, else UTF-16BE).
Caveats of the fakesmsc line protocol: a *single-part* coding-0 text is sent raw, so a newline
in it ends the line (the rest arrives as a separate line, which the parser glues back with
``\\n``; a ``\\r`` before it is lost); Cyrillic and other non-GSM text sent with coding 0
arrives as ``?`` (that is Kannel, not the fixture: send it with ``coding=2``). Senders with a
space (alphanumeric "My Shop") cannot be parsed.

MO injection: bearerbox's fake SMSC serves one client connection at a time, and the
long-running MT fakesmsc only prints (it is started with ``-m 0``, so it never sends). MOs go
through a second ``group = smsc`` (``smsc-id = fake-mo``, ``allowed-smsc-id`` set to an id
nobody uses, so no MT is ever routed to it): :meth:`KannelServer.send_mo` starts a
short-lived ``fakesmsc -m 1 "SENDER RECEIVER TYPE DATA"``, waits until it logs that it sent
the line, then stops it with SIGINT (fakesmsc -m 1 never exits by itself). MOs are serialized
with a lock. This was preferred over fakesmsc's interactive mode (lines on stdin): that mode
reads stdin with ``fgets`` into a 256-byte buffer (longer lines are split into several MOs)
and mixes ``select`` with stdio buffering, so lines written quickly one after another stay
stuck until more input arrives, and it only looks for MTs once a second.
GSM text without CR/LF goes as ``text`` (raw UTF-8 bytes, coding 0); anything else as
``ucs2`` (UTF-16BE, every byte %-encoded). With ``mo-recode = true`` (set here) smsbox turns a
UCS-2 MO into UTF-8 before calling the service, so the hub sees ``coding=0&charset=UTF-8``
for both, and the exact text. bearerbox also recombines concatenated MOs
(``sms-combine-concatenated-mo``, checked also with parts out of order):
:meth:`KannelServer.send_concatenated_mo` sends GSM parts with a UDH, and
:meth:`KannelServer.send_mo_line` any raw line (types ``text``, ``data``, ``ucs2``,
``udh-text``, ``udh-data``, ``route``).

MO URL (``get-url`` of the ``keyword = default`` sms-service): :func:`kannel_mo_url` appends
:data:`MO_QUERY` = ``from=%p&to=%P&text=%b&coding=%c&charset=%C&smsc=%i&id=%I&ts=%T``:

- ``%b`` is the message *as is* (URL-encoded bytes); ``%a`` ("all words") is NOT: it splits on
  whitespace and joins with ``+``, collapsing double spaces, tabs and newlines;
- ``%c``/``%C`` are the coding (0, 1 = 8-bit, 2 = UCS-2) and charset (``UTF-8`` for text,
  ``UTF-16BE`` for UCS-2 that mo-recode did not convert, ``8-BIT`` for binary); the hub
  should decode the URL-decoded *bytes* of ``text`` with ``charset``;
- ``%i`` is the smsc-id (``fake-mo`` here), ``%I`` Kannel's UUID of the MO, ``%T`` its Unix
  timestamp. ``%I`` is the idempotency key: with ``http-request-retry = N`` (pass
  ``smsbox_options={"http-request-retry": 2, "http-queue-delay": 1}``) smsbox retries a failed
  call with the very same URL, same ``%I`` (checked with an HTTP 500 answer).

DLRs through fakesmsc (``dlr-mask`` and ``dlr-url`` are per sendsms request): the fake SMSC
produces only two kinds. Type **8** (SMSC success) when the line was written to fakesmsc,
if the mask has bit 8, with ``%A`` = ``ACK/``; and type **1** (delivered) right after, if
the mask has bit 1, with ``%A`` empty and ``%F`` = the fake SMSC's message id. ``%F`` of the
type 8 is empty for a single-part MT and equal to the type 1's for a concatenated one. Types
2, 4 and 16 never happen (checked masks 1, 2, 3, 4, 8, 16: only 1 and 8 produce anything).
So ``dlr-mask=31`` gives exactly one 8 and one 1 per message, in *either order*, also for a
3-part message (Kannel merges the parts' DLRs). In both, ``%i`` =
``fake-mt``, ``%p`` = the MT's receiver (the phone), ``%P`` = its sender, ``%T`` = Unix time,
``%I`` = an internal id that differs between the two DLRs (useless for matching: put your own
id in the dlr-url, e.g. ``...?id=OURID&type=%d``).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import shutil
import signal
import subprocess
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

import pytest

from tests.servers._util import free_ports, port_is_open, wait_until, wait_until_async

Coding = Literal["gsm", "ucs2", "8bit"]
_T = TypeVar("_T")

#: The query the hub's MO endpoint gets (see the module docstring for why these codes).
MO_QUERY = "from=%p&to=%P&text=%b&coding=%c&charset=%C&smsc=%i&id=%I&ts=%T"
#: A dlr-url query carrying everything useful that fakesmsc DLRs have (append your own id).
DLR_QUERY = "type=%d&smsc=%i&reply=%A&smsc_id=%F&to=%p&from=%P&ts=%T"

FAKESMSC_CANDIDATES = ("/usr/lib/kannel/test/fakesmsc", "/usr/local/lib/kannel/test/fakesmsc")
INSTALL_HINT = "install with apt-get install kannel kannel-extras"

_GOT_LINE = re.compile(rb"Got message (\d+): <(.*)>$")
_SIMPLE = re.compile(rb"^(\S+) (\S+) (text|ucs-2|data) (.*)$", re.DOTALL)
_UDH = re.compile(rb"^(\S+) (\S+) udh (\S*) data (\S*)$")
# GSM 03.38 default alphabet and its extension table (ESC excluded: not a character).
_GSM7 = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
    "\f^{}\\[~]|€"
)


class KannelStartError(RuntimeError):
    """Kannel did not come up; the message holds the tails of its logs."""


def kannel_mo_url(base_url: str) -> str:
    """``base_url`` (the hub's MO endpoint, may already have a query such as ``?secret=S``)
    with :data:`MO_QUERY` appended, ready to pass as ``mo_url``."""
    if "%" in base_url:
        # Kannel would read it as an escape code; keep the hub's own parameters plain.
        raise ValueError(f"a literal % in the MO base URL is not supported: {base_url!r}")
    return base_url + ("&" if "?" in base_url else "?") + MO_QUERY


def url_decode_bytes(value: bytes | str) -> bytes:
    """Kannel's ``octstr_url_decode``: ``+`` is a space, ``%XX`` a byte."""
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogateescape")
    return urllib.parse.unquote_to_bytes(value.replace(b"+", b" "))


def _percent_encode(data: bytes) -> str:
    # Every byte encoded: fakesmsc's line protocol then never sees a space, + or newline.
    return "".join(f"%{byte:02X}" for byte in data)


def is_gsm7(text: str) -> bool:
    """Whether ``text`` fits the GSM 7-bit alphabet (default + extension table)."""
    return all(char in _GSM7 for char in text)


# --------------------------------------------------------------------------- fakesmsc lines


@dataclass(frozen=True)
class ConcatInfo:
    """The concatenation information element of a UDH."""

    ref: int
    total: int
    seq: int


@dataclass(frozen=True)
class FakeSmscLine:
    """One MT line as fakesmsc received it from bearerbox.

    ``type`` is ``text`` (single-part coding 0), ``ucs-2`` (single-part coding 2), ``data``
    (single-part coding 1), ``udh`` (a part of a concatenated message, coding not given) or
    ``unknown`` (a line the parser did not understand; ``data`` holds it raw).
    ``data`` is the payload as bytes, already URL-decoded where fakesmsc encodes it.
    """

    number: int
    sender: str
    receiver: str
    type: str
    data: bytes
    udh: bytes = b""
    raw: bytes = b""

    @property
    def text(self) -> str | None:
        """The text of a single-part message; ``None`` for ``udh`` parts (use
        :func:`reassemble`) and binary ``data``."""
        if self.type == "text":
            return self.data.decode("utf-8", "replace")
        if self.type == "ucs-2":
            return self.data.decode("utf-16-be", "replace")
        return None

    @property
    def concat(self) -> ConcatInfo | None:
        """The part's concatenation info (8- or 16-bit reference), if its UDH has one."""
        return parse_concat_udh(self.udh)


@dataclass(frozen=True)
class FakeSmscMessage:
    """A whole MT: a single line, or the parts of a concatenated message joined in order."""

    sender: str
    receiver: str
    coding: Coding
    data: bytes
    parts: tuple[FakeSmscLine, ...]

    @property
    def text(self) -> str | None:
        """The decoded text (``None`` for 8-bit binary messages)."""
        if self.coding == "gsm":
            return self.data.decode("utf-8", "replace")
        if self.coding == "ucs2":
            return self.data.decode("utf-16-be", "replace")
        return None


def parse_concat_udh(udh: bytes) -> ConcatInfo | None:
    """The concatenation IE (0x00: 8-bit ref, 0x08: 16-bit ref) of a UDH, if any."""
    if not udh:
        return None
    end = min(len(udh), 1 + udh[0])
    pos = 1
    while pos + 2 <= end:
        iei, length = udh[pos], udh[pos + 1]
        value = udh[pos + 2 : pos + 2 + length]
        if iei == 0x00 and length == 3 and len(value) == 3:
            return ConcatInfo(ref=value[0], total=value[1], seq=value[2])
        if iei == 0x08 and length == 4 and len(value) == 4:
            return ConcatInfo(ref=value[0] << 8 | value[1], total=value[2], seq=value[3])
        pos += 2 + length
    return None


def parse_fakesmsc_log(content: bytes) -> list[FakeSmscLine]:
    """Every MT line in a fakesmsc log (its stderr), in arrival order.

    Only complete log lines (ending with a newline) count, so a line still being written is
    picked up on the next call. Bytes, not text: an MT text may contain a lone ``\\r``, which
    Python's universal newlines would take for a line break.
    """
    lines: list[FakeSmscLine] = []
    for log_line in content.split(b"\n")[:-1]:
        match = _GOT_LINE.search(log_line)
        if match is None:
            continue
        number, body = int(match.group(1)), match.group(2)
        parsed = _parse_mt_line(number, body)
        if parsed is None:
            previous = lines[-1] if lines else None
            if previous is not None and previous.type == "text":
                # A newline inside a raw single-part text ended fakesmsc's line early: this is
                # the rest of the previous message.
                lines[-1] = FakeSmscLine(
                    previous.number,
                    previous.sender,
                    previous.receiver,
                    "text",
                    previous.data + b"\n" + body,
                    raw=previous.raw + b"\n" + body,
                )
                continue
            parsed = FakeSmscLine(number, "", "", "unknown", body, raw=body)
        lines.append(parsed)
    return lines


def _parse_mt_line(number: int, body: bytes) -> FakeSmscLine | None:
    match = _UDH.match(body)
    if match is not None:
        sender, receiver, udh, data = match.groups()
        return FakeSmscLine(
            number,
            sender.decode("utf-8", "replace"),
            receiver.decode("utf-8", "replace"),
            "udh",
            url_decode_bytes(data),
            udh=url_decode_bytes(udh),
            raw=body,
        )
    match = _SIMPLE.match(body)
    if match is None:
        return None
    sender, receiver, kind, payload = match.groups()
    data = payload if kind == b"text" else url_decode_bytes(payload)
    return FakeSmscLine(
        number,
        sender.decode("utf-8", "replace"),
        receiver.decode("utf-8", "replace"),
        kind.decode(),
        data,
        raw=body,
    )


def guess_coding(data: bytes) -> Coding:
    """Guess the coding of reassembled ``udh`` parts (fakesmsc does not print it).

    GSM parts reach fakesmsc as UTF-8 text; UCS-2 parts as UTF-16BE, which is rarely valid
    UTF-8 free of control characters (Cyrillic gives 0x04 bytes, emoji 0xD8.., ASCII 0x00).
    Pass ``coding`` to :func:`reassemble` when a test knows better.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and not any(ord(c) < 32 and c not in "\n\r\t\f" for c in text):
        return "gsm"
    if len(data) % 2 == 0:
        try:
            data.decode("utf-16-be")
        except UnicodeDecodeError:
            return "8bit"
        return "ucs2"
    return "8bit"


_TYPE_CODING: dict[str, Coding] = {"text": "gsm", "ucs-2": "ucs2", "data": "8bit"}


def reassemble(
    lines: Iterable[FakeSmscLine], coding: Coding | None = None
) -> list[FakeSmscMessage]:
    """Whole messages from MT lines, in the order they completed.

    Parts of a concatenated message are grouped by (sender, receiver, reference, total),
    ordered by sequence number and their bytes joined *before* decoding (a UCS-2 split can
    cut a surrogate pair). Incomplete messages are left out. ``coding`` applies to
    concatenated messages only (single lines say their coding); ``None`` guesses it.
    """
    messages: list[FakeSmscMessage] = []
    pending: dict[tuple[str, str, int, int], dict[int, FakeSmscLine]] = {}
    for line in lines:
        concat = line.concat if line.type == "udh" else None
        if concat is None:
            if line.type == "unknown":
                continue
            line_coding = _TYPE_CODING.get(line.type) or coding or guess_coding(line.data)
            messages.append(
                FakeSmscMessage(line.sender, line.receiver, line_coding, line.data, (line,))
            )
            continue
        key = (line.sender, line.receiver, concat.ref, concat.total)
        group = pending.setdefault(key, {})
        if concat.seq in group:
            # Same reference again before the previous one completed: references wrap
            # around, so this is a new message and the old one will never complete.
            group = pending[key] = {}
        group[concat.seq] = line
        if len(group) == concat.total and set(group) == set(range(1, concat.total + 1)):
            del pending[key]
            parts = tuple(group[seq] for seq in range(1, concat.total + 1))
            data = b"".join(part.data for part in parts)
            messages.append(
                FakeSmscMessage(
                    line.sender, line.receiver, coding or guess_coding(data), data, parts
                )
            )
    return messages


# --------------------------------------------------------------------------- the server


@dataclass
class KannelServer:
    """A running Kannel. Send MTs with an HTTP GET/POST on :attr:`sendsms_url` (see
    :meth:`sendsms_params`); read what the SMSC got with :meth:`mt_messages` /
    :meth:`mt_sms` / ``wait_for_*``; inject MOs with :meth:`send_mo`."""

    workdir: Path
    config_path: Path
    sendsms_url: str
    username: str
    password: str
    admin_url: str
    admin_password: str
    #: smsc-id of the connection MTs go out on (``%i`` in DLRs).
    smsc_id: str
    #: smsc-id MOs come in from (``%i`` in the MO URL).
    mo_smsc_id: str
    mo_url: str | None
    mt_smsc_port: int
    mo_smsc_port: int
    fakesmsc: Path
    bearerbox_log: Path
    smsbox_log: Path
    fakesmsc_log: Path
    _mo_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _mo_count: itertools.count[int] = field(default_factory=lambda: itertools.count(1), repr=False)
    _concat_refs: itertools.count[int] = field(
        default_factory=lambda: itertools.count(1), repr=False
    )

    # ---- MT side

    def sendsms_params(self, sender: str, receiver: str, text: str, **extra: str) -> dict[str, str]:
        """Query parameters for :attr:`sendsms_url` (``extra``: ``coding``, ``charset``,
        ``dlr-mask``... written with ``_`` for ``-``, e.g. ``dlr_mask="31"``)."""
        params = {
            "username": self.username,
            "password": self.password,
            "from": sender,
            "to": receiver,
            "text": text,
        }
        params.update({key.replace("_", "-"): value for key, value in extra.items()})
        return params

    def mt_messages(self, receiver: str | None = None) -> list[FakeSmscLine]:
        """Every MT line fakesmsc has received so far (parts of long messages separately),
        optionally only those to ``receiver``."""
        try:
            content = self.fakesmsc_log.read_bytes()
        except FileNotFoundError:
            return []
        lines = parse_fakesmsc_log(content)
        return [line for line in lines if receiver is None or line.receiver == receiver]

    def mt_sms(
        self, receiver: str | None = None, coding: Coding | None = None
    ) -> list[FakeSmscMessage]:
        """Every complete MT so far, long messages reassembled (see :func:`reassemble`)."""
        return reassemble(self.mt_messages(receiver), coding)

    def wait_for_mt(
        self, count: int, timeout: float = 10.0, *, receiver: str | None = None
    ) -> list[FakeSmscLine]:
        """Wait until fakesmsc has received at least ``count`` lines (to ``receiver``, if
        given); return all of them."""
        return wait_until(
            lambda: self._at_least(self.mt_messages(receiver), count),
            timeout,
            f"{count} MT line(s) at fakesmsc",
            details=self._mt_details,
        )

    def wait_for_sms(
        self,
        count: int,
        timeout: float = 10.0,
        *,
        receiver: str | None = None,
        coding: Coding | None = None,
    ) -> list[FakeSmscMessage]:
        """Wait until at least ``count`` complete (reassembled) MTs arrived (to ``receiver``,
        if given); return them all."""
        return wait_until(
            lambda: self._at_least(self.mt_sms(receiver, coding), count),
            timeout,
            f"{count} complete MT(s) at fakesmsc",
            details=self._mt_details,
        )

    async def wait_for_mt_async(
        self, count: int, timeout: float = 10.0, *, receiver: str | None = None
    ) -> list[FakeSmscLine]:
        """:meth:`wait_for_mt` without blocking the event loop."""
        return await wait_until_async(
            lambda: self._at_least(self.mt_messages(receiver), count),
            timeout,
            f"{count} MT line(s) at fakesmsc",
            details=self._mt_details,
        )

    async def wait_for_sms_async(
        self,
        count: int,
        timeout: float = 10.0,
        *,
        receiver: str | None = None,
        coding: Coding | None = None,
    ) -> list[FakeSmscMessage]:
        """:meth:`wait_for_sms` without blocking the event loop."""
        return await wait_until_async(
            lambda: self._at_least(self.mt_sms(receiver, coding), count),
            timeout,
            f"{count} complete MT(s) at fakesmsc",
            details=self._mt_details,
        )

    @staticmethod
    def _at_least(items: list[_T], count: int) -> list[_T] | None:
        return items if len(items) >= count else None

    def _mt_details(self) -> str:
        received = "\n".join(repr(line) for line in self.mt_messages()) or "(nothing)"
        return f"fakesmsc received:\n{received}\n{self.log_tail()}"

    # ---- MO side

    def send_mo(
        self,
        sender: str,
        receiver: str,
        text: str,
        *,
        coding: Literal["auto", "gsm", "ucs2"] = "auto",
        timeout: float = 10.0,
    ) -> None:
        """Inject an MO as if ``sender`` texted ``receiver``; smsbox then calls the mo_url.

        ``auto`` sends GSM-alphabet text without CR/LF as a 7-bit ``text`` line and anything
        else as ``ucs2`` (a raw line cannot hold a newline). Returns once fakesmsc has written
        it to bearerbox; wait for the HTTP call on the hub's side.
        """
        if coding == "auto":
            coding = "gsm" if is_gsm7(text) and not ({"\n", "\r"} & set(text)) else "ucs2"
        if coding == "gsm":
            if "\n" in text or "\r" in text:
                raise ValueError("a 7-bit fakesmsc MO cannot contain CR/LF; use ucs2")
            line = f"{sender} {receiver} text {text}"
        else:
            line = f"{sender} {receiver} ucs2 {_percent_encode(text.encode('utf-16-be'))}"
        self.send_mo_line(line, timeout=timeout)

    def send_concatenated_mo(
        self,
        sender: str,
        receiver: str,
        parts: Sequence[str],
        *,
        send_order: Sequence[int] | None = None,
        timeout: float = 10.0,
    ) -> None:
        """Inject a long GSM MO as ``parts`` (in text order) with a concatenation UDH each.
        bearerbox recombines them (``sms-combine-concatenated-mo``), so the mo_url gets one
        call with the joined text. ``send_order`` (indexes into ``parts``, e.g. ``[2, 0, 1]``)
        sends them out of order. fakesmsc has no UDH + UCS-2 line type, so only 7-bit parts
        without CR/LF are possible."""
        if not 1 < len(parts) < 256 or any(not is_gsm7(p) or {"\n", "\r"} & set(p) for p in parts):
            raise ValueError("2..255 parts of GSM text without CR/LF are needed")
        order = list(range(len(parts))) if send_order is None else list(send_order)
        if sorted(order) != list(range(len(parts))):
            raise ValueError(f"send_order must be a permutation of 0..{len(parts) - 1}")
        ref = next(self._concat_refs) % 256
        for index in order:
            udh = _percent_encode(bytes([5, 0, 3, ref, len(parts), index + 1]))
            self.send_mo_line(f"{sender} {receiver} udh-text {udh} {parts[index]}", timeout=timeout)

    def send_mo_line(self, line: str, timeout: float = 10.0) -> None:
        """Send one raw fakesmsc line ``SENDER RECEIVER TYPE DATA`` as an MO (types: ``text``,
        ``data``/``ucs2`` URL-encoded, ``udh-text UDH TEXT``, ``udh-data UDH DATA``,
        ``route SMSBOX-ID TEXT``)."""
        fields = line.split(" ", 3)
        if len(fields) < 4 or not all(fields[:3]) or "\n" in line or "\0" in line:
            raise ValueError(f"not a fakesmsc line 'SENDER RECEIVER TYPE DATA': {line!r}")
        with self._mo_lock:
            log = self.workdir / f"fakesmsc-mo-{next(self._mo_count):04d}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    [str(self.fakesmsc), "-H", "127.0.0.1", "-r", str(self.mo_smsc_port)]
                    + ["-i", "0", "-m", "1", "-v", "0", line],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            try:
                wait_until(
                    lambda: process.poll() is not None or b"sent message 1" in log.read_bytes(),
                    timeout,
                    "fakesmsc to send the MO",
                    details=lambda: _tail(log) + "\n" + self.log_tail(),
                )
                if process.poll() is not None:
                    raise RuntimeError(f"fakesmsc exited before sending the MO:\n{_tail(log)}")
            finally:
                # fakesmsc -m 1 waits for replies forever; SIGINT makes it close the connection
                # (bearerbox reads the line before it sees the end of the stream).
                _stop(process, signal.SIGINT)

    async def send_mo_async(
        self,
        sender: str,
        receiver: str,
        text: str,
        *,
        coding: Literal["auto", "gsm", "ucs2"] = "auto",
        timeout: float = 10.0,
    ) -> None:
        """:meth:`send_mo` in a thread, so an async test's event loop keeps running."""
        await asyncio.to_thread(
            self.send_mo, sender, receiver, text, coding=coding, timeout=timeout
        )

    # ---- diagnostics

    def status(self) -> str:
        """bearerbox's ``status.txt`` (connections, queues, counters)."""
        url = f"{self.admin_url}/status.txt?password={urllib.parse.quote(self.admin_password)}"
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.read().decode("utf-8", "replace")

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of every log, for error messages."""
        logs = [self.bearerbox_log, self.smsbox_log, self.fakesmsc_log]
        logs += [self.workdir / "bearerbox.out", self.workdir / "smsbox.out"]
        return "\n".join(_tail(path, lines) for path in logs if path.exists())


def _tail(path: Path, lines: int = 30) -> str:
    try:
        content = path.read_bytes().decode("utf-8", "replace").splitlines()
    except FileNotFoundError:
        return f"--- {path.name}: (missing)"
    return f"--- {path.name} (last {lines} lines):\n" + "\n".join(content[-lines:])


def _stop(
    process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 3.0
) -> None:
    """Ask nicely, then kill."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
            return
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait()


# --------------------------------------------------------------------------- starting it


@dataclass(frozen=True)
class KannelBinaries:
    bearerbox: Path
    smsbox: Path
    fakesmsc: Path


def find_kannel_binaries() -> KannelBinaries | None:
    """bearerbox, smsbox (package ``kannel``, in /usr/sbin which a non-root PATH may lack)
    and fakesmsc (package ``kannel-extras``), or ``None`` if one is missing."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
    bearerbox, smsbox = shutil.which("bearerbox", path=search), shutil.which("smsbox", path=search)
    fakesmsc = next((p for p in FAKESMSC_CANDIDATES if os.access(p, os.X_OK)), None)
    if fakesmsc is None and shutil.which("dpkg"):
        listing = subprocess.run(
            ["dpkg", "-L", "kannel-extras"], capture_output=True, text=True, check=False
        ).stdout
        fakesmsc = next((p for p in listing.split() if p.endswith("/fakesmsc")), None)
    if not (bearerbox and smsbox and fakesmsc):
        return None
    return KannelBinaries(Path(bearerbox), Path(smsbox), Path(fakesmsc))


def _config_value(value: str) -> str:
    if '"' in value or "\n" in value or "\\" in value:
        raise ValueError(f"cannot put this in a Kannel config string: {value!r}")
    return f'"{value}"'


@dataclass(frozen=True)
class _Settings:
    """What :func:`start_kannel` was asked for (see its docstring)."""

    mo_url: str | None
    max_messages: int
    log_level: int
    smsbox_options: Mapping[str, str | int]
    extra_config: str
    startup_timeout: float


_USERNAME, _PASSWORD, _ADMIN_PASSWORD = "smshub", "smshub-sendsms", "smshub-admin"


def _write_config(workdir: Path, ports: dict[str, int], settings: _Settings) -> Path:
    mo_url, log_level = settings.mo_url, settings.log_level
    if mo_url is None:
        # Without a service smsbox answers MOs with an error reply; a fixed text with
        # max-messages = 0 just drops them.
        service = 'text = "no mo_url configured"'
    else:
        service = f"get-url = {_config_value(mo_url)}"
    log = lambda name: _config_value(str(workdir / name))  # noqa: E731
    smsbox_extra = "".join(
        f"{key} = {_config_value(str(value))}\n" for key, value in settings.smsbox_options.items()
    )
    config = f"""\
group = core
admin-port = {ports["admin"]}
admin-interface = "127.0.0.1"
admin-password = "{_ADMIN_PASSWORD}"
status-password = "{_ADMIN_PASSWORD}"
admin-deny-ip = "*.*.*.*"
admin-allow-ip = "127.0.0.1"
smsbox-port = {ports["smsbox"]}
smsbox-interface = "127.0.0.1"
box-deny-ip = "*.*.*.*"
box-allow-ip = "127.0.0.1"
log-file = {log("bearerbox.log")}
log-level = {log_level}
access-log = {log("access.log")}
dlr-storage = internal
sms-combine-concatenated-mo = true

# MTs: the long-running fakesmsc that prints what it gets.
group = smsc
smsc = fake
smsc-id = fake-mt
our-host = "127.0.0.1"
port = {ports["mt_smsc"]}
connect-allow-ip = "127.0.0.1"

# MOs: one short-lived fakesmsc per MO; no MT may be routed here.
group = smsc
smsc = fake
smsc-id = fake-mo
our-host = "127.0.0.1"
port = {ports["mo_smsc"]}
connect-allow-ip = "127.0.0.1"
allowed-smsc-id = no-mt-here

group = smsbox
bearerbox-host = "127.0.0.1"
bearerbox-port = {ports["smsbox"]}
sendsms-port = {ports["sendsms"]}
sendsms-interface = "127.0.0.1"
log-file = {log("smsbox.log")}
log-level = {log_level}
access-log = {log("smsbox-access.log")}
mo-recode = true
{smsbox_extra}
group = sendsms-user
username = "{_USERNAME}"
password = "{_PASSWORD}"
user-allow-ip = "127.0.0.1"
concatenation = true
max-messages = {settings.max_messages}

group = sms-service
keyword = default
catch-all = true
{service}
max-messages = 0
omit-empty = true
"""
    path = workdir / "kannel.conf"
    path.write_text(config + settings.extra_config, encoding="utf-8")
    return path


def _is_ready(server: KannelServer, processes: dict[str, subprocess.Popen[bytes]]) -> bool:
    for name, process in processes.items():
        if process.poll() is not None:
            raise KannelStartError(
                f"{name} exited with code {process.returncode}\n{server.log_tail()}"
            )
    try:
        status = server.status()
    except OSError:
        return False
    mt_online = re.search(rf"^\s*{server.smsc_id}\[.*\(online", status, re.MULTILINE)
    smsbox_connected = re.search(r"^\s*smsbox:", status, re.MULTILINE)
    sendsms_port = urllib.parse.urlsplit(server.sendsms_url).port
    return bool(mt_online and smsbox_connected and sendsms_port and port_is_open(sendsms_port))


@contextmanager
def start_kannel(
    workdir: Path,
    mo_url: str | None = None,
    *,
    max_messages: int = 10,
    log_level: int = 0,
    smsbox_options: Mapping[str, str | int] | None = None,
    extra_config: str = "",
    startup_timeout: float = 20.0,
) -> Iterator[KannelServer]:
    """Start bearerbox, the MT fakesmsc and smsbox with a config generated in ``workdir``
    (created if needed); yield the ready :class:`KannelServer`; stop everything on exit.

    ``mo_url``: the sms-service ``get-url`` for every MO (Kannel escape codes allowed; build it
    with :func:`kannel_mo_url`); ``None`` drops MOs. ``max_messages``: the sendsms-user's
    maximum number of parts for a long MT. ``log_level``: Kannel's (0 = debug ... 4 = panic).
    ``smsbox_options``: more keys for the smsbox group (e.g. ``http-request-retry``).
    ``extra_config``: raw groups appended to ``kannel.conf``.
    Skips the test (fails in CI) if Kannel is not installed.
    """
    binaries = find_kannel_binaries()
    if binaries is None:
        from tests.conftest import require_server

        require_server("Kannel", f"bearerbox, smsbox or fakesmsc not found; {INSTALL_HINT}")
        raise AssertionError("unreachable")  # require_server raises
    settings = _Settings(
        mo_url, max_messages, log_level, dict(smsbox_options or {}), extra_config, startup_timeout
    )
    workdir.mkdir(parents=True, exist_ok=True)
    # A free port can be taken between our check and bearerbox's bind; try again then.
    for attempt in range(3):
        with ExitStack() as stack:
            try:
                server = _launch(stack, binaries, workdir, settings)
            except KannelStartError as exc:
                if attempt < 2 and "already in use" in str(exc):
                    continue
                raise
            yield server
            return


def _launch(
    stack: ExitStack, binaries: KannelBinaries, workdir: Path, settings: _Settings
) -> KannelServer:
    ports = dict(
        zip(["admin", "smsbox", "sendsms", "mt_smsc", "mo_smsc"], free_ports(5), strict=True)
    )
    config = _write_config(workdir, ports, settings)
    server = KannelServer(
        workdir=workdir,
        config_path=config,
        sendsms_url=f"http://127.0.0.1:{ports['sendsms']}/cgi-bin/sendsms",
        username=_USERNAME,
        password=_PASSWORD,
        admin_url=f"http://127.0.0.1:{ports['admin']}",
        admin_password=_ADMIN_PASSWORD,
        smsc_id="fake-mt",
        mo_smsc_id="fake-mo",
        mo_url=settings.mo_url,
        mt_smsc_port=ports["mt_smsc"],
        mo_smsc_port=ports["mo_smsc"],
        fakesmsc=binaries.fakesmsc,
        bearerbox_log=workdir / "bearerbox.log",
        smsbox_log=workdir / "smsbox.log",
        fakesmsc_log=workdir / "fakesmsc-mt.log",
    )
    for stale in (server.bearerbox_log, server.smsbox_log, server.fakesmsc_log):
        stale.unlink(missing_ok=True)  # a retry must not read the previous attempt's lines
    processes: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(name: str, args: list[str], output: Path) -> None:
        with output.open("wb") as out:
            process = subprocess.Popen(
                args, cwd=workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        processes[name] = process
        # Callbacks run last-in first-out: fakesmsc, smsbox, then bearerbox.
        stack.callback(_stop, process)

    spawn("bearerbox", [str(binaries.bearerbox), str(config)], workdir / "bearerbox.out")
    try:
        wait_until(
            lambda: _bearerbox_listening(server, processes["bearerbox"]),
            settings.startup_timeout,
            "bearerbox to listen",
            details=server.log_tail,
        )
    except TimeoutError as exc:
        raise KannelStartError(str(exc)) from None
    # -m 0: never send an MO, and block on the socket so every MT is printed at once. The
    # message argument is required but unused.
    spawn(
        "fakesmsc",
        [str(binaries.fakesmsc), "-H", "127.0.0.1", "-r", str(ports["mt_smsc"])]
        + ["-i", "0", "-m", "0", "-v", "0", "0 0 text unused"],
        server.fakesmsc_log,
    )
    spawn("smsbox", [str(binaries.smsbox), str(config)], workdir / "smsbox.out")
    try:
        wait_until(
            lambda: _is_ready(server, processes),
            settings.startup_timeout,
            "Kannel to be ready (smsbox connected, fake-mt online, sendsms listening)",
            details=server.log_tail,
        )
    except TimeoutError as exc:
        raise KannelStartError(str(exc)) from None
    return server


def _bearerbox_listening(server: KannelServer, bearerbox: subprocess.Popen[bytes]) -> bool:
    if bearerbox.poll() is not None:
        raise KannelStartError(
            f"bearerbox exited with code {bearerbox.returncode}\n{server.log_tail()}"
        )
    return port_is_open(server.mt_smsc_port) and port_is_open(
        urllib.parse.urlsplit(server.admin_url).port or 0
    )


@pytest.fixture
def kannel_factory(tmp_path: Path) -> Iterator[Callable[..., KannelServer]]:
    """A function ``(mo_url=None, **start_kannel_options) -> KannelServer`` starting a Kannel
    (each in its own ``tmp_path/kannelN``); all of them are stopped after the test."""
    with ExitStack() as stack:
        numbers = itertools.count(1)

        def factory(mo_url: str | None = None, **options: object) -> KannelServer:
            workdir = tmp_path / f"kannel{next(numbers)}"
            return stack.enter_context(start_kannel(workdir, mo_url, **options))  # type: ignore[arg-type]

        yield factory
