"""/healthz with the database down says so without naming the database's host, port or
name (issue #14): it answers anyone; the details go to the log."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from tests.conftest import make_config


@pytest.mark.parametrize(
    ("url", "secrets"),
    [
        (
            "postgresql+psycopg://smshub@127.0.0.1:1/clinic_secret_db?connect_timeout=2",
            ["127.0.0.1", ":1", "clinic_secret_db", "smshub"],
        ),
        # A file that is no database: the driver's error is not shown either.
        ("sqlite:///{tmp}/clinic-secret.db", ["not a database", "clinic-secret"]),
    ],
    ids=["postgresql", "sqlite"],
)
async def test_healthz_with_the_database_down_shows_no_details(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, url: str, secrets: list[str]
) -> None:
    from hub.app import Hub

    if url.startswith("sqlite"):
        (tmp_path / "clinic-secret.db").write_bytes(b"this is not a database file" * 100)
        url = url.format(tmp=tmp_path)
    hub = Hub(make_config(url, tmp_path))
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=hub.api), base_url="http://hub"
        ) as client:
            with caplog.at_level(logging.ERROR, logger="smshub.api"):
                response = await client.get("/healthz")
        assert response.status_code == 503
        assert response.json() == {"status": "error", "database": "database unreachable"}
        for secret in secrets:
            assert secret not in response.text
        # The operator still finds the reason in the log.
        assert any(r.exc_info for r in caplog.records)
    finally:
        await hub.hub_client.aclose()
        hub.engine.dispose()
