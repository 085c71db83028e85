"""The Google source's API resource: built once per process and endpoint, shared by every
source, each request run on its own source's signed-in http, with the client library's
universe-domain check unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.api_core.universe import UniverseMismatchError
from google.oauth2 import credentials as user_credentials

from connectors.calendar.google import GoogleCalendarSource, GoogleSettings
from hub.ports.calendar import SourceContext

ENDPOINT = "http://127.0.0.1:9/"


def _source(tmp_path: Path, name: str) -> GoogleCalendarSource:
    settings = GoogleSettings(anonymous=True, api_endpoint=ENDPOINT)
    return GoogleCalendarSource(settings, SourceContext(name=name, data_dir=tmp_path))


def test_sources_share_the_resource_not_the_connection(tmp_path: Path) -> None:
    first, second = _source(tmp_path, "a"), _source(tmp_path, "b")
    assert first._api() is second._api()
    assert first._http is not None and first._http is not second._http
    request = first._api().list(calendarId="primary", singleEvents=True)
    assert request.uri.startswith(f"{ENDPOINT}calendar/v3/calendars/primary/events?")
    # A request run without a source's http would go out unsigned: it cannot.
    with pytest.raises(RuntimeError, match="own http"):
        request.execute()


def test_credentials_of_another_universe_are_refused_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _source(tmp_path, "c")
    creds = user_credentials.Credentials(token="t", universe_domain="other.example")
    monkeypatch.setattr(source, "_credentials", lambda: creds)
    with pytest.raises(UniverseMismatchError):
        source._api().list(calendarId="primary", singleEvents=True)
