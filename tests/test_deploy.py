"""The systemd units in deploy/ pass `systemd-analyze verify` (no warning either), keep their
hardening, and give the hub's graceful stop the time it needs."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_server

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
UNITS = sorted((DEPLOY / "systemd").iterdir())
INSTALLED = "/opt/smshub/venv/bin/smshub"
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "RestrictSUIDSGID": "yes",
    "SystemCallArchitectures": "native",
}
# The hub's stop grace period: SIGTERM drains within it, so systemd must wait longer.
STOP_GRACE_SECONDS = 30


def service(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text())
    return dict(parser["Service"]) if parser.has_section("Service") else {}


@pytest.fixture(scope="module")
def analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        require_server("systemd-analyze", "install Debian's systemd package")
    assert found is not None
    return found


def test_every_unit_passes_systemd_analyze_verify(analyze: str, tmp_path: Path) -> None:
    # ExecStart must name an executable that exists: this checkout's smshub stands in for
    # the installed one.
    here = Path(sys.executable).with_name("smshub")
    assert here.exists()
    for unit in UNITS:
        (tmp_path / unit.name).write_text(unit.read_text().replace(INSTALLED, str(here)))
    names = [p.name.replace("@.", "@dispatcher.") for p in UNITS]
    result = subprocess.run(
        [analyze, "verify", *(str(tmp_path / n) for n in names)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr
    assert {"smshub.service", "smshub@.service"} <= {p.name for p in UNITS}


@pytest.mark.parametrize("unit", [u for u in UNITS if u.suffix == ".service"], ids=str)
def test_services_are_hardened(unit: Path) -> None:
    settings = service(unit)
    for key, value in HARDENING.items():
        assert settings.get(key) == value, f"{unit.name}: {key}={value}"
    assert settings.get("User") == "smshub", "never as root"


@pytest.mark.parametrize("unit", ["smshub.service", "smshub@.service"])
def test_systemd_waits_for_the_graceful_stop(unit: str) -> None:
    settings = service(DEPLOY / "systemd" / unit)
    assert settings["KillSignal"] == "SIGTERM"
    assert int(settings["TimeoutStopSec"]) > STOP_GRACE_SECONDS
    assert "run" in settings["ExecStart"]


def test_the_proxy_example_passes_tls_to_the_hub_and_keeps_ops_private() -> None:
    nginx = (DEPLOY / "nginx" / "smshub.conf").read_text()
    assert "proxy_pass http://127.0.0.1:8025" in nginx and "ssl_certificate" in nginx
    assert "X-Forwarded-For" in nginx and "127.0.0.1:9025" not in nginx
