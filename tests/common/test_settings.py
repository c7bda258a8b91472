"""Settings: defaults, environment fallbacks, overrides, and bad values."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from forgeline.common.settings import (
    DEFAULT_PORTS,
    ENVIRONMENT,
    LogFormat,
    ServiceName,
    Settings,
)


def test_defaults_per_service(monkeypatch):
    for var in ENVIRONMENT:
        monkeypatch.delenv(var.name, raising=False)
    s = Settings.load("evaluator")
    assert s.port == DEFAULT_PORTS[ServiceName.EVALUATOR] == 50054
    assert s.token == "" and not s.tls.enabled
    assert s.database_url.endswith("evaluator.db")
    assert s.addresses[ServiceName.REGISTRY] == "127.0.0.1:50051"


def test_environment_then_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("FORGELINE_HOME", str(tmp_path))
    monkeypatch.setenv("FORGELINE_PORT", "6000")
    monkeypatch.setenv("FORGELINE_TOKEN", "tok")
    monkeypatch.setenv("FORGELINE_LOG_FORMAT", "json")
    monkeypatch.setenv("FORGELINE_REGISTRY_ADDRESS", "reg:1")
    s = Settings.load("trainer", port=0)
    assert s.home == Path(tmp_path) and s.port == 0 and s.token == "tok"
    assert s.log_format is LogFormat.JSON
    assert s.addresses[ServiceName.REGISTRY] == "reg:1"
    assert s.database_url == f"sqlite:///{tmp_path / 'trainer.db'}"


def test_malformed_integer_names_the_variable(monkeypatch):
    monkeypatch.setenv("FORGELINE_MAX_CONCURRENT_JOBS", "two")
    with pytest.raises(ValueError, match="FORGELINE_MAX_CONCURRENT_JOBS"):
        Settings.load("trainer")


def test_every_variable_read_in_the_code_is_documented():
    source = (Path(__file__).parents[2] / "services/forgeline/common/settings.py").read_text()
    read = set(re.findall(r'_env\(\s*f?"(FORGELINE_[A-Z_]+)"', source))
    read |= {f"FORGELINE_{s.name}_ADDRESS" for s in ServiceName if s is not ServiceName.GATEWAY}
    documented = {v.name for v in ENVIRONMENT}
    assert read <= documented


def test_tokens_and_keys_stay_out_of_reprs(tmp_path):
    from forgeline.client.channel import ChannelOptions

    settings = Settings.load(
        "registry", home=tmp_path, token="s3cret-token", gateway_api_keys="s3cret-key"
    )
    shown = " ".join(
        repr(x)
        for x in (
            settings,
            settings.channel_options(),
            settings.cache_config(),
            ChannelOptions("t0k"),
        )
    )
    assert "s3cret" not in shown and "t0k" not in shown
