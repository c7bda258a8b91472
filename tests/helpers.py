"""Helpers for end-to-end tests that run real `forgeline` processes."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

FORGELINE = [sys.executable, "-m", "forgeline.cli"]


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Process:
    """A `forgeline` service running in a subprocess, its output in a log file."""

    proc: subprocess.Popen
    port: int
    log: Path

    @property
    def address(self) -> str:
        """host:port of the service."""
        return f"127.0.0.1:{self.port}"

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, then wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise

    def kill(self) -> None:
        """SIGKILL, and wait for it to be gone."""
        self.proc.kill()
        self.proc.wait(10)

    def output(self) -> str:
        """What it printed so far."""
        return self.log.read_text(errors="replace")


def start_process(
    service: str,
    env: dict[str, str],
    log: Path | None = None,
    *,
    port: int = 0,
    timeout: float = 120,
) -> Process:
    """Starts `forgeline serve SERVICE` and waits until it says it is listening.

    Output goes to `log` (a temporary file by default), not to a pipe: vLLM logs a lot, and
    a full pipe would stall it.

    Raises:
        RuntimeError: it exited or did not announce itself within `timeout` seconds.
    """
    if log is None:
        fd, name = tempfile.mkstemp(prefix=f"forgeline-{service}-", suffix=".log")
        os.close(fd)
        log = Path(name)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*FORGELINE, "serve", service, "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = re.search(rf"{service} listening on [\d.]+:(\d+)", log.read_text(errors="replace"))
        if match:
            return Process(proc, int(match[1]), log)
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{service} did not start:\n{log.read_text(errors='replace')[-3000:]}")


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.02) -> None:
    """Polls `predicate` until it is true.

    Raises:
        TimeoutError: it stayed false for `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached in time")
        time.sleep(interval)
