"""Never an open gateway by default: with no API keys it listens on loopback only, unless
told `--insecure-no-keys`; the refusal names the settings to change and comes before
anything binds.
"""

from __future__ import annotations

import logging
import os
import subprocess

import pytest
from typer.testing import CliRunner

from forgeline.cli.main import app as cli
from forgeline.common import logs
from forgeline.common.settings import Settings
from forgeline.gateway import server
from forgeline.gateway.config import OpenGatewayRefused, check_exposure, is_loopback
from forgeline.gateway.keys import ApiKey, KeyStore, digest
from tests.helpers import FORGELINE

NO_KEYS = KeyStore()
KEYS = KeyStore([ApiKey("alice", digest("alice-key"))])
FIXES = (
    "FORGELINE_GATEWAY_KEYS_FILE",
    "FORGELINE_GATEWAY_API_KEYS",
    "--insecure-no-keys",
    "FORGELINE_GATEWAY_INSECURE_NO_KEYS=1",
)


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LocalHost", "::ffff:127.0.0.2"],
)
def test_loopback_addresses(host):
    assert is_loopback(host)


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "[::]", "", "192.168.1.20", "10.0.0.1", "fe80::1", "gateway.lan"]
)
def test_addresses_the_network_reaches(host):
    assert not is_loopback(host)


def test_no_keys_beyond_loopback_is_refused_naming_the_fixes():
    with pytest.raises(OpenGatewayRefused) as err:
        check_exposure("0.0.0.0", NO_KEYS, insecure_no_keys=False)
    assert "0.0.0.0" in str(err.value)
    for fix in FIXES:
        assert fix in str(err.value)


@pytest.mark.parametrize(
    ("host", "keys", "insecure", "open_to_network"),
    [
        ("127.0.0.1", NO_KEYS, False, False),  # open, but only to this machine
        ("0.0.0.0", KEYS, False, False),  # keys close it
        ("[::]", KEYS, True, False),
        ("0.0.0.0", NO_KEYS, True, True),  # told to run open: the caller warns
    ],
)
def test_what_may_start(host, keys, insecure, open_to_network):
    assert check_exposure(host, keys, insecure) is open_to_network


def test_the_setting_and_its_bad_values(monkeypatch, tmp_path):
    monkeypatch.delenv("FORGELINE_GATEWAY_INSECURE_NO_KEYS", raising=False)
    assert not Settings.load("gateway", home=tmp_path).gateway_insecure_no_keys
    for value, expected in (("1", True), ("true", True), ("0", False), ("no", False)):
        monkeypatch.setenv("FORGELINE_GATEWAY_INSECURE_NO_KEYS", value)
        assert Settings.load("gateway", home=tmp_path).gateway_insecure_no_keys is expected
    monkeypatch.setenv("FORGELINE_GATEWAY_INSECURE_NO_KEYS", "maybe")
    with pytest.raises(ValueError, match="FORGELINE_GATEWAY_INSECURE_NO_KEYS must be 1 or 0"):
        Settings.load("gateway", home=tmp_path)


def gateway_env(tmp_path) -> dict[str, str]:
    """The environment with no gateway keys, host or insecure flag of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORGELINE_GATEWAY_")}
    env.pop("FORGELINE_HOST", None)
    return {**env, "FORGELINE_HOME": str(tmp_path)}


def test_serve_gateway_refuses_to_start_open_before_binding(tmp_path):
    result = subprocess.run(
        [*FORGELINE, "serve", "gateway", "--host", "0.0.0.0", "--port", "0"],
        env=gateway_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "listening" not in result.stdout
    assert "refusing to listen on 0.0.0.0 with no API keys" in result.stderr
    assert "Traceback" not in result.stderr
    for fix in FIXES:
        assert fix in result.stderr


class Bound(Exception):
    """Raised instead of binding, once the gateway got that far."""


@pytest.fixture
def invoke(monkeypatch):
    """Runs `forgeline` in this process, leaving the root logger (and caplog) as it is."""
    monkeypatch.setattr(logs, "configure_logging", lambda *args: None)

    def run(*args: str):
        return CliRunner().invoke(cli, list(args), env={"COLUMNS": "400"})

    return run


def test_the_flag_starts_it_with_a_loud_warning(monkeypatch, tmp_path, caplog, invoke):
    def bind(host: str, port: int):
        raise Bound(host)

    monkeypatch.setattr(server, "bind", bind)
    for name in ("FORGELINE_GATEWAY_KEYS_FILE", "FORGELINE_GATEWAY_API_KEYS", "FORGELINE_HOST"):
        monkeypatch.delenv(name, raising=False)
    args = ["serve", "gateway", "--host", "0.0.0.0", "--port", "0", "--home", str(tmp_path)]
    with caplog.at_level(logging.WARNING, logger="forgeline.gateway.server"):
        result = invoke(*args, "--insecure-no-keys")
    assert isinstance(result.exception, Bound), result.output
    assert "INSECURE: no API keys and listening on 0.0.0.0" in caplog.text
    # The same through the environment; without either, nothing gets to bind.
    monkeypatch.setenv("FORGELINE_GATEWAY_INSECURE_NO_KEYS", "1")
    assert isinstance(invoke(*args).exception, Bound)
    monkeypatch.setenv("FORGELINE_GATEWAY_INSECURE_NO_KEYS", "0")
    refused = invoke(*args)
    assert refused.exit_code == 2 and "--insecure-no-keys" in refused.output


def test_the_flag_is_for_the_gateway_only(tmp_path, invoke):
    result = invoke("serve", "registry", "--insecure-no-keys", "--home", str(tmp_path))
    assert result.exit_code == 2
    assert "only `forgeline serve gateway` takes it" in result.output
