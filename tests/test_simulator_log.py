"""The simulator's JSONL log is read lazily: start-up memory does not grow with the log."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from connectors.sms.simulator import SimulatorProvider, SimulatorSettings
from hub.cli import main as hub_cli
from hub.cli.main import app
from hub.ports.sms import OutgoingSms, ProviderContext


def write_log(path: Path, messages: int) -> None:
    """A log of MESSAGES sent SMS, each with its delivery report (as a long-running hub's)."""
    with path.open("w") as out:
        for n in range(messages):
            key = f"{n:032x}.0"
            entry = {
                "kind": "mt",
                "id": f"sim-{n:020x}",
                "key": key,
                "message_id": f"{n:032x}",
                "to": f"+336{n % 100_000_000:08d}",
                "from": "ACME",
                "text": "Rappel: votre rendez-vous demain a 09:00 au cabinet. Repondez OUI ou NON.",
                "encoding": "GSM-7",
                "segments": 1,
                "at": "2026-12-01T10:00:00+00:00",
            }
            out.write(json.dumps(entry) + "\n")
            out.write(json.dumps({"kind": "dlr", "id": entry["id"]}) + "\n")


def provider(tmp_path: Path, log: Path, **settings: Any) -> SimulatorProvider:
    ctx = ProviderContext(name="simulator", public_url="http://hub", data_dir=tmp_path)
    return SimulatorProvider(SimulatorSettings(log_path=str(log), **settings), ctx)


async def start_peak(tmp_path: Path, log: Path) -> int:
    """Bytes allocated at the peak of starting a simulator on LOG."""
    sim = provider(tmp_path, log, dedupe_window=5_000)
    tracemalloc.start()
    try:
        await sim.start()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        await sim.close()
    return peak


async def test_start_up_memory_stays_flat_however_long_the_log(tmp_path: Path) -> None:
    small, large = tmp_path / "small.jsonl", tmp_path / "large.jsonl"
    write_log(small, 30_000)
    write_log(large, 120_000)  # 240,000 lines, 46 MB of JSON
    assert large.stat().st_size > 40_000_000
    peak_small = await start_peak(tmp_path, small)
    peak_large = await start_peak(tmp_path, large)
    # Reading the whole file used to hold it all (the text, then one dict per line).
    assert peak_large < 4_000_000, f"{peak_large / 1e6:.1f} MB at start"
    assert peak_large - peak_small < 1_000_000, "start-up memory grows with the log"


def sms(key: str) -> OutgoingSms:
    return OutgoingSms(
        message_id="m",
        to="+33612345678",
        text="x",
        sender=None,
        encoding="GSM-7",
        segments=1,
        dedupe_key=key,
    )


async def test_recent_sends_are_still_recognised_after_a_restart(tmp_path: Path) -> None:
    log = tmp_path / "sim.jsonl"
    write_log(log, 3_000)
    sim = provider(tmp_path, log, dedupe_window=1_000, send_reports=False)
    await sim.start()
    try:
        result = await sim.send(sms(f"{2_999:032x}.0"))
        assert result.detail == "duplicate ignored"
        # Outside the window: a resend after a crash comes within minutes, never this late.
        assert (await sim.send(sms(f"{0:032x}.0"))).detail != "duplicate ignored"
    finally:
        await sim.close()


def test_simulator_log_streams_the_last_entries(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    write_log(data / "simulator.jsonl", 500)
    config = tmp_path / "smshub.toml"
    config.write_text(f'[hub]\ndata_dir = "{data}"\n')
    hub_cli._state.clear()
    result = CliRunner().invoke(
        app, ["--config", str(config), "simulator", "log", "--json", "--limit", "3"]
    )
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert [e["message_id"] for e in shown] == [f"{n:032x}" for n in (497, 498, 499)]
