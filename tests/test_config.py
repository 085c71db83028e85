"""Configuration: defaults, validation errors that name the key, secrets from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.app import Hub
from hub.core.config import load_config, parse_config
from hub.errors import ConfigError

EXAMPLE = Path(__file__).parent.parent / "config.example.toml"


def test_embedded_defaults_run_on_sqlite_and_the_simulator():
    config = load_config(None)
    assert config.database_url.startswith("sqlite:///")
    assert config.http.port == 8025
    assert config.routing.default == ["simulator"]


def test_example_config_is_valid_and_builds_its_providers(tmp_path, monkeypatch):
    monkeypatch.setenv("SMSHUB_SIMULATOR_SECRET", "s3cret")
    config = load_config(EXAMPLE)
    config.hub.data_dir = tmp_path
    Hub(config)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"hub": {"colour": "blue"}}, "unknown key 'hub.colour'"),
        ({"http": {"port": 99999}}, "'http.port'"),
        ({"hub": {"default_region": "France"}}, "'hub.default_region'"),
        ({"routing": {"default": ["kannel"]}}, "no [providers.kannel] section"),
        ({"providers": {"sim": {"report_delay": 1}}}, "'providers.sim.type' is missing"),
    ],
)
def test_bad_config_names_the_key(data, message):
    with pytest.raises(ConfigError) as err:
        parse_config(data, "smshub.toml")
    assert message in str(err.value)
    assert str(err.value).startswith("smshub.toml")


def test_bad_provider_section_names_the_key(tmp_path):
    config = parse_config({"providers": {"simulator": {"type": "simulator", "speed": 3}}})
    config.hub.data_dir = tmp_path
    with pytest.raises(ConfigError, match=r"unknown key 'providers.simulator.speed'"):
        Hub(config)
    config = parse_config({"providers": {"simulator": {"type": "carrier-pigeon"}}})
    with pytest.raises(ConfigError, match="unknown provider type 'carrier-pigeon'"):
        Hub(config)


def test_secret_env_that_is_not_set_is_an_error(tmp_path, monkeypatch):
    monkeypatch.delenv("NOPE_SECRET", raising=False)
    config = parse_config(
        {"providers": {"simulator": {"type": "simulator", "secret_env": "NOPE_SECRET"}}}
    )
    config.hub.data_dir = tmp_path
    with pytest.raises(ConfigError, match="NOPE_SECRET, which is not set"):
        Hub(config)


def test_file_errors_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[hub\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_relative_data_dir_is_relative_to_the_config_file(tmp_path):
    cfg = tmp_path / "etc" / "smshub.toml"
    cfg.parent.mkdir()
    cfg.write_text('[hub]\ndata_dir = "data"\n')
    assert load_config(cfg).hub.data_dir == (tmp_path / "etc" / "data").resolve()


def test_example_documents_every_option():
    """config.example.toml lists every option of every section, each with a comment."""
    import tomllib

    from hub.core.config import Config

    example = tomllib.loads(EXAMPLE.read_text())
    for name, field in Config.model_fields.items():
        if name in {"source", "providers", "imap"}:  # tables documented with their connector
            continue
        section = field.annotation
        assert name in example, f"[{name}] missing from config.example.toml"
        documented = set(example[name]) | {
            k.removesuffix("_env") + "_file" for k in example[name] if k.endswith("_env")
        }
        missing = set(section.model_fields) - documented  # type: ignore[union-attr]
        assert not missing, f"[{name}] lacks {sorted(missing)}"
    from connectors.sms.simulator import SimulatorSettings

    missing = set(SimulatorSettings.model_fields) - set(example["providers"]["simulator"])
    assert missing <= {"secret_file"}, f"[providers.simulator] lacks {sorted(missing)}"


def test_metrics_token_comes_from_the_environment_or_a_file(tmp_path, monkeypatch):
    assert parse_config({}).http.metrics_token() is None
    monkeypatch.setenv("SMSHUB_TEST_METRICS", " tok-env \n")
    assert (
        parse_config({"http": {"metrics_token_env": "SMSHUB_TEST_METRICS"}}).http.metrics_token()
        == "tok-env"
    )
    token_file = tmp_path / "metrics.token"
    token_file.write_text("tok-file\n")
    config = parse_config({"http": {"metrics_token_file": str(token_file)}})
    assert config.http.metrics_token() == "tok-file"


@pytest.mark.parametrize(
    ("http", "message"),
    [
        (
            {"metrics_token_env": "NOPE_METRICS"},
            "'http.metrics_token_env' names the environment variable NOPE_METRICS, which is not",
        ),
        (
            {"metrics_token_env": "EMPTY_METRICS"},
            "'http.metrics_token_env': the metrics token is empty",
        ),
        ({"metrics_token_file": "MISSING"}, "'http.metrics_token_file': cannot read"),
        ({"metrics_token_file": "EMPTY"}, "'http.metrics_token_file': the metrics token is empty"),
        ({"metrics_token": "in-the-file"}, "unknown key 'http.metrics_token'"),
    ],
)
def test_bad_metrics_token_stops_the_start(tmp_path, monkeypatch, http, message):
    monkeypatch.delenv("NOPE_METRICS", raising=False)
    monkeypatch.setenv("EMPTY_METRICS", "  ")
    (tmp_path / "EMPTY").write_text("\n")
    http = {k: str(tmp_path / v) if k.endswith("_file") else v for k, v in http.items()}
    with pytest.raises(ConfigError) as err:
        config = parse_config({"hub": {"data_dir": str(tmp_path)}, "http": http})
        Hub(config)
    assert message in str(err.value)
    assert "in-the-file" not in str(err.value)
