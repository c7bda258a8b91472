"""`forgeline up -d | status | down`: the whole suite as real processes on one machine.

Every service (and one Ray head the job services share) runs as its own process on a free
port; a service killed with SIGKILL comes back on the same address; `down` leaves no
process of the suite behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import psutil
import pytest

from forgeline.common.settings import ServiceName
from tests.helpers import FORGELINE, scrape, wait_for

pytestmark = pytest.mark.e2e


def forgeline(*args: str, env: dict[str, str], timeout: float = 300):
    return subprocess.run(
        [*FORGELINE, *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def status(env: dict[str, str]) -> tuple[int, dict]:
    result = forgeline("status", "--json", env=env, timeout=60)
    return result.returncode, json.loads(result.stdout) if result.stdout.strip() else {}


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "forgeline.toml"
    # Every address from the config file, port 0: free ports picked by `up`.
    config.write_text(
        "".join(f'{s.value}_address = "127.0.0.1:0"\n' for s in ServiceName)
        + 'log_level = "DEBUG"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORGELINE_")}
    return {**env, "FORGELINE_HOME": str(tmp_path / "home"), "FORGELINE_CONFIG": str(config)}


def test_up_restarts_a_killed_service_and_down_stops_everything(env):
    started = forgeline("up", "--detach", env=env)
    assert started.returncode == 0, started.stderr + started.stdout
    try:
        code, state = status(env)
        assert code == 0, state
        processes = {p["name"]: p for p in state["processes"]}
        assert set(processes) == {"ray", *(s.value for s in ServiceName)}
        assert all(p["health"] == "SERVING" for p in processes.values()), processes
        addresses = {p["address"] for p in processes.values()}
        assert len(addresses) == len(processes) and all(":0" not in a for a in addresses)
        # Each gRPC service serves metrics on a port of its own.
        http = ("ray", "gateway", "console")
        metrics = {p["metrics"] for n, p in processes.items() if n not in http}
        assert len(metrics) == 5 and "" not in metrics and not metrics & addresses
        samples = scrape(int(processes["registry"]["metrics"].rsplit(":", 1)[1]))
        health = 'method="Check",service="grpc.health.v1.Health"'
        assert samples[f'forgeline_rpc_handled_total{{code="OK",{health}}}'] >= 1
        # The config file reached the services (the environment did not hold it).
        trainer_log = Path(processes["trainer"]["log"]).read_text()
        assert "DEBUG" in trainer_log

        victim = processes["evaluator"]
        os.kill(victim["pid"], signal.SIGKILL)

        def restarted() -> bool:
            code, state = status(env)
            now = {p["name"]: p for p in state.get("processes", [])}["evaluator"]
            return code == 0 and now["restarts"] == 1 and now["pid"] != victim["pid"]

        wait_for(restarted, timeout=120, interval=1)
        _, state = status(env)
        now = {p["name"]: p for p in state["processes"]}["evaluator"]
        assert now["address"] == victim["address"] and now["health"] == "SERVING"
        up_log = (Path(env["FORGELINE_HOME"]) / "logs" / "up.log").read_text()
        assert "evaluator exited (code -9); restarting in 1 s" in up_log

        again = forgeline("up", "--detach", env=env)
        assert again.returncode == 1 and "is already up" in again.stderr
    finally:
        _, state = status(env)
        pids = [p["pid"] for p in state.get("processes", [])] + [state.get("pid", 0)]
        stopped = forgeline("down", env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert not any(alive(pid) for pid in pids if pid)
    assert not (Path(env["FORGELINE_HOME"]) / "run" / "up.json").exists()
    code, _ = status(env)
    assert code == 1


def test_a_bad_config_file_is_refused_naming_the_file_and_key(env, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('hme = "/srv"\n')
    result = forgeline("up", "--config", str(config), env=env, timeout=60)
    assert result.returncode == 2
    assert str(config) in result.stderr and "'hme' is not a setting" in result.stderr
