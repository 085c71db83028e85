"""The Kannel fixture itself: MTs reach fakesmsc intact (GSM, UCS-2, concatenated), DLRs
reach a dlr-url, MOs reach the sms-service URL. The MO/DLR target is a tiny stdlib HTTP
server that records every request.

One Kannel serves the whole module (starting one takes about a second); each test uses its own
receiver number so it only looks at its own messages.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import httpx
import pytest

from tests.servers._util import BackgroundServer, port_is_open, wait_until, wait_until_async
from tests.servers.kannel import (
    DLR_QUERY,
    ConcatInfo,
    FakeSmscLine,
    KannelServer,
    KannelStartError,
    guess_coding,
    kannel_factory,  # noqa: F401  (the fixture)
    kannel_mo_url,
    parse_concat_udh,
    parse_fakesmsc_log,
    reassemble,
    start_kannel,
)

SENDER = "36001"


@dataclass(frozen=True)
class Recorded:
    """One request the recorder got; ``params`` values are the URL-decoded *bytes*."""

    path: str
    params: dict[str, bytes]

    def text(self, name: str) -> str:
        return self.params[name].decode("utf-8")


class HttpRecorder:
    """A stdlib HTTP server in a thread answering 200 to everything and recording it."""

    def __init__(self) -> None:
        recorded: list[Recorded] = []
        self.requests = recorded

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                split = urllib.parse.urlsplit(self.path)
                query = split.query
                if self.command == "POST":
                    length = int(self.headers.get("Content-Length") or 0)
                    query += "&" + self.rfile.read(length).decode("latin-1")
                # latin-1 maps each byte to one code point, so .encode gives the raw bytes
                # back whatever the charset (UTF-16BE MOs would not survive a UTF-8 decode).
                pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, encoding="latin-1")
                params = {key: value.encode("latin-1") for key, value in pairs}
                recorded.append(Recorded(split.path, params))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = _record

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep pytest's output clean

        self._server = BackgroundServer(Handler).start()
        self.url = self._server.url

    def wait_for(
        self, count: int, where: Callable[[Recorded], bool], what: str, timeout: float = 10.0
    ) -> list[Recorded]:
        return wait_until(
            lambda: (
                found if len(found := [r for r in self.requests if where(r)]) >= count else None
            ),
            timeout,
            what,
            details=lambda: "received so far:\n" + "\n".join(map(repr, self.requests)),
        )

    def close(self) -> None:
        self._server.close()


@pytest.fixture(scope="module")
def recorder() -> Iterator[HttpRecorder]:
    server = HttpRecorder()
    yield server
    server.close()


@pytest.fixture(scope="module")
def kannel(
    recorder: HttpRecorder, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KannelServer]:
    mo_url = kannel_mo_url(f"{recorder.url}/callbacks/kannel/mo?secret=s3cret")
    with start_kannel(tmp_path_factory.mktemp("kannel"), mo_url) as server:
        yield server


def sendsms(kannel: KannelServer, to: str, text: str, **extra: str) -> None:
    response = httpx.get(
        kannel.sendsms_url, params=kannel.sendsms_params(SENDER, to, text, **extra)
    )
    assert response.status_code == 202, response.text
    assert "Accepted for delivery" in response.text


# --------------------------------------------------------------------------- MT


def test_gsm_text_reaches_fakesmsc_exactly(kannel: KannelServer) -> None:
    to = "+33600000001"
    text = "Hello from smshub: 100% + @ £ $ ¥ è é ù Ç Ø Å Δ _ ß É ¡ § ¿ à € { } [ ] ~ ^ | \\"
    sendsms(kannel, to, text)
    sendsms(kannel, to, "first line\nsecond line")

    first, second = kannel.wait_for_sms(2, receiver=to)
    assert (first.sender, first.receiver, first.coding, first.text) == (SENDER, to, "gsm", text)
    assert [part.type for part in first.parts] == ["text"]
    # A newline ends fakesmsc's raw line; the parser glues the rest back.
    assert second.text == "first line\nsecond line"


def test_ucs2_with_emoji_arrives_intact(kannel: KannelServer) -> None:
    to = "+33600000002"
    sendsms(kannel, to, "Привет 😀", coding="2", charset="UTF-8")

    [sms] = kannel.wait_for_sms(1, receiver=to)
    assert sms.parts[0].type == "ucs-2"
    assert sms.parts[0].data == "Привет 😀".encode("utf-16-be")
    assert (sms.coding, sms.text) == ("ucs2", "Привет 😀")


def test_three_part_gsm_message_reassembles(kannel: KannelServer) -> None:
    to = "+33600000003"
    text = "".join(f"Line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(9))
    text = text[:400]
    sendsms(kannel, to, text)

    [sms] = kannel.wait_for_sms(1, receiver=to)
    assert sms.text == text
    assert sms.coding == "gsm"
    concat = [part.concat for part in sms.parts if part.concat is not None]
    assert [c.seq for c in concat] == [1, 2, 3]
    assert {(c.ref, c.total) for c in concat} == {(concat[0].ref, 3)}
    assert [len(part.data) for part in sms.parts] == [153, 153, 94]


def test_three_part_ucs2_message_reassembles_across_split_surrogates(
    kannel: KannelServer,
) -> None:
    to = "+33600000004"
    text = "Ж😀" * 50  # 150 UTF-16 units: parts of 67 units, cutting an emoji in two
    sendsms(kannel, to, text, coding="2", charset="UTF-8")

    [sms] = kannel.wait_for_sms(1, receiver=to)
    assert len(sms.parts) == 3
    assert all(part.type == "udh" and part.text is None for part in sms.parts)
    assert (sms.coding, sms.text) == ("ucs2", text)


# --------------------------------------------------------------------------- DLR


def test_dlrs_from_fakesmsc_are_types_8_and_1(kannel: KannelServer, recorder: HttpRecorder) -> None:
    to = "+33600000005"

    def dlr_url(our_id: str) -> str:
        return f"{recorder.url}/dlr?id={our_id}&{DLR_QUERY}"

    sendsms(kannel, to, "x" * 400, dlr_mask="31", dlr_url=dlr_url("LONG"))
    sendsms(kannel, to, "short one", dlr_mask="31", dlr_url=dlr_url("SHORT"))

    def of(our_id: str) -> Callable[[Recorded], bool]:
        return lambda r: r.path == "/dlr" and r.params["id"] == our_id.encode()

    short = recorder.wait_for(2, of("SHORT"), "2 DLRs of the short MT")
    long = recorder.wait_for(2, of("LONG"), "2 DLRs of the 3-part MT")
    for dlrs in (short, long):
        # Exactly one SMSC-success (8) and one delivered (1), in either order, even for the
        # three parts of the long message; never 2 (undelivered), 4 (buffered), 16 (rejected).
        assert len(dlrs) == 2
        by_type = {dlr.text("type"): dlr for dlr in dlrs}
        assert set(by_type) == {"8", "1"}
        for dlr in dlrs:
            assert dlr.text("smsc") == kannel.smsc_id
            assert (dlr.text("to"), dlr.text("from")) == (to, SENDER)
            assert dlr.text("ts").isdigit()
        assert by_type["8"].text("reply") == "ACK/"
        assert by_type["1"].text("reply") == ""
        assert by_type["1"].text("smsc_id")  # the fake SMSC's message id (%F)
    # %F of the type-8 DLR: empty for a single part, the type-1 DLR's id for a long message.
    assert {dlr.text("type"): dlr.text("smsc_id") for dlr in short}["8"] == ""
    assert len({dlr.text("smsc_id") for dlr in long}) == 1


# --------------------------------------------------------------------------- MO


@pytest.mark.parametrize(
    ("sender", "text"),
    [
        ("+33610000001", "Hello hub, 100% + ok @ £ €"),
        ("+33610000002", "Ça va? 😀"),
        ("+33610000003", "two  spaces\nand a newline"),
    ],
    ids=["gsm", "ucs2-emoji", "whitespace"],
)
def test_mo_reaches_the_mo_url(
    kannel: KannelServer, recorder: HttpRecorder, sender: str, text: str
) -> None:
    kannel.send_mo(sender, "36001", text)

    [mo] = recorder.wait_for(
        1,
        lambda r: r.path == "/callbacks/kannel/mo" and r.params.get("from") == sender.encode(),
        "the MO at the mo_url",
    )
    assert mo.text("secret") == "s3cret"
    assert mo.text("to") == "36001"
    # mo-recode turned UCS-2 MOs into UTF-8, so every text MO comes as coding 0 / UTF-8.
    assert (mo.text("coding"), mo.text("charset")) == ("0", "UTF-8")
    assert mo.params["text"].decode(mo.text("charset")) == text
    assert mo.text("smsc") == kannel.mo_smsc_id
    assert len(mo.text("id")) == 36  # Kannel's UUID for the MO
    assert mo.text("ts").isdigit()


def test_concatenated_mo_parts_are_recombined(kannel: KannelServer, recorder: HttpRecorder) -> None:
    sender = "+33610000004"
    kannel.send_concatenated_mo(
        sender, "36001", ["Hello, ", "long ", "world!"], send_order=[2, 0, 1]
    )

    [mo] = recorder.wait_for(
        1, lambda r: r.params.get("from") == sender.encode(), "the recombined MO"
    )
    assert mo.text("text") == "Hello, long world!"


# --------------------------------------------------------------------------- lifecycle


def test_factory_starts_and_stops_kannel(
    kannel_factory: Callable[..., KannelServer],  # noqa: F811
) -> None:
    server = kannel_factory()  # no mo_url: MOs are dropped
    assert "fake-mt" in server.status()
    server.send_mo("+33612345678", "36001", "nobody listens")
    sendsms(server, "+33600000009", "ping")
    [sms] = server.wait_for_sms(1)
    assert sms.text == "ping"


def test_start_kannel_cleans_up(tmp_path: Path) -> None:
    with start_kannel(tmp_path / "k") as server:
        port = urllib.parse.urlsplit(server.sendsms_url).port
        assert port and port_is_open(port)
    assert not port_is_open(port)
    assert not port_is_open(server.mt_smsc_port)


# --------------------------------------------------------------------------- parsing (no Kannel)


def _log(*bodies: bytes) -> bytes:
    return b"".join(
        b"2026-01-01 00:00:00 [1] [0] DEBUG: Got message %d: <%s>\n" % (n, body)
        for n, body in enumerate(bodies, 1)
    )


def test_parser_handles_continuations_partial_lines_and_unknown_codings() -> None:
    content = _log(
        b"1 2 text a\rb",
        b"rest of it",
        b"1 2 udh %05%00%03%07%02%02 data %00b",
        b"1 2 udh %05%00%03%07%02%01 data %00a",
    )
    lines = parse_fakesmsc_log(content + b"2026-01-01 00:00:00 [1] [0] DEBUG: Got mess")
    assert [line.type for line in lines] == ["text", "udh", "udh"]
    assert lines[0].text == "a\rb\nrest of it"
    assert [m.text for m in reassemble(lines)] == ["a\rb\nrest of it", "ab"]
    assert [m.coding for m in reassemble(lines, coding="8bit")] == ["gsm", "8bit"]


def test_concat_udh_and_coding_guess() -> None:
    assert parse_concat_udh(bytes.fromhex("0500030a0302")) == ConcatInfo(10, 3, 2)
    assert parse_concat_udh(bytes.fromhex("06080412340301")) == ConcatInfo(0x1234, 3, 1)
    assert parse_concat_udh(bytes.fromhex("0605040b8423f0")) is None  # port addressing only
    assert guess_coding("é€ plain".encode()) == "gsm"
    assert guess_coding("Привет".encode("utf-16-be")) == "ucs2"
    assert guess_coding("hi".encode("utf-16-be")) == "ucs2"
    assert guess_coding(b"\xff\xfe\x00") == "8bit"
    line = FakeSmscLine(1, "a", "b", "data", b"\x00")
    assert line.text is None


async def test_async_helpers_keep_the_event_loop_free(
    kannel: KannelServer, recorder: HttpRecorder
) -> None:
    to = "+33600000006"
    async with httpx.AsyncClient() as client:
        params = kannel.sendsms_params(SENDER, to, "async hello")
        response = await client.get(kannel.sendsms_url, params=params)
    assert response.status_code == 202
    [sms] = await kannel.wait_for_sms_async(1, receiver=to)
    assert sms.text == "async hello"

    await kannel.send_mo_async("+33610000009", "36001", "async MO")
    [mo] = await wait_until_async(
        lambda: [r for r in recorder.requests if r.params.get("from") == b"+33610000009"],
        10,
        "the async MO",
    )
    assert mo.text("text") == "async MO"


def test_a_broken_config_fails_with_the_log(tmp_path: Path) -> None:
    with (
        pytest.raises(KannelStartError, match=r"bearerbox exited(.|\n)*bearerbox"),
        start_kannel(tmp_path / "k", extra_config="group = no-such-group\n"),
    ):
        pass
