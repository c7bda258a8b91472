"""The supervisor's restart backoff, its state file, and the settings file `up` reads."""

from __future__ import annotations

import json
import os

import pytest

from forgeline.common import supervisor as sv
from forgeline.common.config_file import read_config_file


def child() -> sv.Child:
    return sv.Child("trainer", 1234, sv.Path("/tmp/trainer.log"), state=sv.State.RUNNING)


def test_restarts_back_off_doubling_up_to_a_minute():
    s = sv.Supervisor.__new__(sv.Supervisor)
    s.report = lambda message: None
    c = child()
    delays = []
    for _ in range(9):
        c.started_at = 100.0
        s._schedule_restart(c, -9, now=101.0)  # exited a second after it started
        delays.append(c.restart_at - 101.0)
        c.restarts += 1
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert c.state == sv.State.RESTARTING and c.process is None


def test_a_process_that_ran_a_minute_restarts_after_one_second_again():
    s = sv.Supervisor.__new__(sv.Supervisor)
    messages = []
    s.report = messages.append
    c = child()
    for _ in range(4):
        c.started_at = 0.0
        s._schedule_restart(c, 1, now=1.0)
    c.started_at = 10.0
    s._schedule_restart(c, 1, now=10.0 + sv.STABLE_SECONDS)
    assert c.restart_at - (10.0 + sv.STABLE_SECONDS) == 1.0
    assert messages[-1].startswith("trainer exited (code 1); restarting in 1 s")


def test_the_state_of_a_dead_supervisor_is_discarded(tmp_path):
    path = sv.state_file(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"pid": os.getpid(), "processes": []}))
    assert sv.read_state(tmp_path)["pid"] == os.getpid()
    path.write_text(json.dumps({"pid": 2**22 + 17, "processes": []}))  # above pid_max
    assert sv.read_state(tmp_path) is None and not path.exists()
    path.write_text("{not json")
    assert sv.read_state(tmp_path) is None


def test_the_port_of_an_address_setting():
    assert sv.listen_port("127.0.0.1:50052", sv.ServiceName.REGISTRY) == 50052
    assert sv.listen_port("127.0.0.1:0", sv.ServiceName.REGISTRY) == 0
    assert sv.listen_port("", sv.ServiceName.GATEWAY) == 8000


def test_a_config_file_becomes_environment_variables(tmp_path):
    path = tmp_path / "forgeline.toml"
    path.write_text('home = "/srv/forgeline"\nmax_concurrent_jobs = 2\nlog_format = "json"\n')
    assert read_config_file(path) == {
        "FORGELINE_HOME": "/srv/forgeline",
        "FORGELINE_MAX_CONCURRENT_JOBS": "2",
        "FORGELINE_LOG_FORMAT": "json",
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('hme = "/srv"\n', "'hme' is not a setting"),
        ('config = "other.toml"\n', "'config' is not a setting"),
        ("home = [1, 2]\n", "'home' must be a string, number or boolean"),
        ('home = "/srv"\nport = \n', "not valid TOML: Invalid value (at line 2, column 8)"),
    ],
)
def test_a_bad_config_file_names_the_file_and_the_problem(tmp_path, text, message):
    path = tmp_path / "forgeline.toml"
    path.write_text(text)
    with pytest.raises(ValueError) as raised:
        read_config_file(path)
    assert str(raised.value).startswith(f"{path}: ") and message in str(raised.value)


def test_a_missing_config_file_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"missing\.toml: cannot read it"):
        read_config_file(tmp_path / "missing.toml")
