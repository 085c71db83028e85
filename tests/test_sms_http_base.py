"""The HTTP providers' one transport-error policy (connectors/sms/http_base.py), over real sockets.

A failure before the request left (nobody listening) is TRANSIENT: safe to send again. A
request that reached the provider and got no answer (connection closed or reset after it,
or a read timeout) is UNKNOWN, unless the provider deduplicates on our id (then TRANSIENT).
The same rule for Kannel, Twilio and SMSFactor; Kannel used to call every timeout TRANSIENT
(a resend that could double the SMS).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.sms.http_base import (
    HttpProviderSettings,
    HttpRequest,
    HttpSmsProvider,
    transport_outcome,
)
from connectors.sms.kannel import KannelProvider, KannelSettings
from connectors.sms.smsfactor import SmsFactorProvider, SmsFactorSettings
from connectors.sms.twilio import TwilioProvider, TwilioSettings
from hub.ports.sms import OutgoingSms, ProviderContext, SendOutcome, SendResult
from tests.servers._util import free_port
from tests.servers.dropping_http import DroppingHttpServer, Mode

SMS = OutgoingSms("m1", "+33612345678", "hello", None, "GSM-7", 1, "m1.0")
ACCOUNT_SID = "AC" + "0" * 32
# Short enough for a quick test, long enough for a loaded machine to connect locally.
TIMEOUT = 0.5


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMSHUB_TEST_HTTP_SECRET", "secret-value")


def _ctx(tmp_path: Path) -> ProviderContext:
    return ProviderContext("p", "http://127.0.0.1:8025", tmp_path)


def _kannel(url: str, tmp_path: Path) -> HttpSmsProvider[Any]:
    settings = KannelSettings(
        sendsms_url=f"{url}/cgi-bin/sendsms",
        username="u",
        password_env="SMSHUB_TEST_HTTP_SECRET",
        timeout=TIMEOUT,
    )
    return KannelProvider(settings, _ctx(tmp_path))


def _twilio(url: str, tmp_path: Path) -> HttpSmsProvider[Any]:
    settings = TwilioSettings(
        base_url=url,
        account_sid=ACCOUNT_SID,
        auth_token_env="SMSHUB_TEST_HTTP_SECRET",
        from_number="+33700000001",
        timeout=TIMEOUT,
    )
    return TwilioProvider(settings, _ctx(tmp_path))


def _smsfactor(url: str, tmp_path: Path) -> HttpSmsProvider[Any]:
    settings = SmsFactorSettings(base_url=url, token_env="SMSHUB_TEST_HTTP_SECRET", timeout=TIMEOUT)
    return SmsFactorProvider(settings, _ctx(tmp_path))


class _DedupingSettings(HttpProviderSettings):
    base_url: str


class _DedupingProvider(HttpSmsProvider[_DedupingSettings]):
    """A provider stand-in that keys on our id, as some APIs do (an idempotency key)."""

    settings_model = _DedupingSettings
    label = "Deduper"
    deduplicates = True

    def build_request(self, sms: OutgoingSms) -> HttpRequest:
        return HttpRequest("POST", f"{self.settings.base_url}/send", json={"id": sms.dedupe_key})

    def parse_response(self, response: httpx.Response, sms: OutgoingSms) -> SendResult:
        return SendResult(SendOutcome.ACCEPTED, sms.message_id)


def _deduper(url: str, tmp_path: Path) -> HttpSmsProvider[Any]:
    settings = _DedupingSettings(type="deduper", base_url=url, timeout=TIMEOUT)
    return _DedupingProvider(settings, _ctx(tmp_path))


Builder = Callable[[str, Path], HttpSmsProvider[Any]]
PROVIDERS: dict[str, Builder] = {"kannel": _kannel, "twilio": _twilio, "smsfactor": _smsfactor}


async def _send(provider: HttpSmsProvider[Any]) -> SendResult:
    await provider.start()
    try:
        return await provider.send(SMS)
    finally:
        await provider.close()


@pytest.mark.parametrize("name", [*PROVIDERS, "deduper"])
async def test_nobody_listening_is_transient(name: str, tmp_path: Path) -> None:
    build = PROVIDERS.get(name, _deduper)
    url = f"http://127.0.0.1:{free_port()}"
    result = await _send(build(url, tmp_path))
    assert result.outcome == SendOutcome.TRANSIENT
    assert result.detail.startswith("cannot reach ") and url in result.detail


@pytest.mark.parametrize("mode", ["close", "reset", "silent"])
@pytest.mark.parametrize("name", list(PROVIDERS))
async def test_no_answer_after_the_request_is_unknown(
    name: str, mode: Mode, tmp_path: Path
) -> None:
    async with DroppingHttpServer(mode) as server:
        result = await _send(PROVIDERS[name](server.url, tmp_path))
        # The provider had the whole request: it may have sent the SMS.
        assert len(server.requests) == 1
    assert result.outcome == SendOutcome.UNKNOWN, result.detail
    assert "may have taken the message" in result.detail


@pytest.mark.parametrize("mode", ["close", "reset", "silent"])
async def test_no_answer_is_transient_when_the_provider_deduplicates(
    mode: Mode, tmp_path: Path
) -> None:
    async with DroppingHttpServer(mode) as server:
        result = await _send(_deduper(server.url, tmp_path))
        assert len(server.requests) == 1
    assert result.outcome == SendOutcome.TRANSIENT, result.detail
    assert "sent again" in result.detail


async def test_kannel_read_timeout_is_unknown_no_longer_a_resend(tmp_path: Path) -> None:
    """The behaviour change of the one policy: Kannel's sendsms has no idempotency key, so
    a sendsms that got no answer in time is not sent again (it was TRANSIENT before)."""
    async with DroppingHttpServer("silent") as server:
        provider = _kannel(server.url, tmp_path)
        assert provider.deduplicates is False
        result = await _send(provider)
    assert result.outcome == SendOutcome.UNKNOWN
    assert "ReadTimeout" in result.detail


def _request() -> httpx.Request:
    return httpx.Request("GET", "http://provider.test/send")


@pytest.mark.parametrize(
    ("error", "sent"),
    [
        (httpx.ConnectError, False),  # refused, unreachable, and a failed DNS lookup
        (httpx.ConnectTimeout, False),
        (httpx.PoolTimeout, False),
        (httpx.WriteError, False),
        (httpx.WriteTimeout, False),
        (httpx.UnsupportedProtocol, False),
        (httpx.LocalProtocolError, False),
        (httpx.ProxyError, False),
        (httpx.ReadTimeout, True),
        (httpx.ReadError, True),
        (httpx.RemoteProtocolError, True),
        (httpx.DecodingError, True),  # an answer came, unreadable: it was taken
    ],
)
def test_the_policy_by_error(error: type[httpx.HTTPError], sent: bool) -> None:
    exc = error("boom", request=_request())
    assert transport_outcome(exc, deduplicates=True) == SendOutcome.TRANSIENT
    expected = SendOutcome.UNKNOWN if sent else SendOutcome.TRANSIENT
    assert transport_outcome(exc, deduplicates=False) == expected
