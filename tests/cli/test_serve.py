"""`forgeline serve SVC` starts a real process that answers health and stops on SIGTERM."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers import FORGELINE, start_service

pytestmark = pytest.mark.e2e


def forgeline(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*FORGELINE, *args], env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "FORGELINE_HOME": str(tmp_path), "FORGELINE_TOKEN": "tok"}


@pytest.mark.parametrize("service", ["registry", "trainer", "quantizer", "evaluator", "inference"])
def test_service_starts_answers_health_and_stops_gracefully(service, env):
    proc = start_service(service, env)
    try:
        address = proc.address
        result = forgeline("health", address, env=env)
        assert result.returncode == 0, result.stderr
        assert "SERVING" in result.stdout
        unknown = forgeline("health", address, "--service", "nope.Service", env=env)
        assert unknown.returncode == 1 and "NOT_FOUND" in unknown.stderr
    finally:
        assert proc.stop(timeout=30) == 0
    assert "shutting down" in proc.output()


def test_health_of_nothing_fails(env):
    result = forgeline("health", "127.0.0.1:1", "--timeout", "1", env=env)
    assert result.returncode == 1 and "UNAVAILABLE" in result.stderr
