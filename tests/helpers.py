"""Helpers for end-to-end tests that run real `forgeline` processes."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time

FORGELINE = [sys.executable, "-m", "forgeline.cli"]


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_service(service: str, env: dict[str, str], port: int = 0) -> tuple[subprocess.Popen, int]:
    """Starts `forgeline serve SERVICE` and returns the process and its bound port."""
    proc = subprocess.Popen(
        [*FORGELINE, "serve", service, "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    match = re.search(r"listening on [\d.]+:(\d+)", line)
    if not match:
        proc.kill()
        raise RuntimeError(f"{service} did not start: {line!r} {proc.stderr.read()}")
    return proc, int(match[1])


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
