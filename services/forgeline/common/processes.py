"""Forgeline services as child processes: how the demo, the tests and the benchmarks start them.

A service runs as `python -m forgeline.cli serve SERVICE --port PORT` with its output in a
log file (never a pipe: vLLM logs a lot, and a full pipe would stall it). It is ready when
it prints `<service> listening on <host>:<port>`, which it does only once it answers; a
gRPC service says where its metrics are just before (`<service> metrics on <host>:<port>`).
"""

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
class ServiceProcess:
    """A `forgeline serve` process and its log file; `port` (and `metrics_port`, 0 when it
    serves no metrics) is known once it listens.

    `offset` is where this process's output starts in the log (a restarted service appends
    to the log of the one before).
    """

    service: str
    proc: subprocess.Popen
    log: Path
    port: int = 0
    offset: int = 0
    metrics_port: int = 0

    @property
    def address(self) -> str:
        """host:port of the service."""
        return f"127.0.0.1:{self.port}"

    def output(self) -> str:
        """What it printed so far."""
        with open(self.log, "rb") as f:
            f.seek(self.offset)
            return f.read().decode(errors="replace")

    def listening(self) -> bool:
        """Whether it has announced its port yet (and records the port when it has)."""
        output = self.output()
        match = re.search(rf"{re.escape(self.service)} listening on \S+:(\d+)", output)
        if match:
            self.port = int(match[1])
            metrics = re.search(rf"{re.escape(self.service)} metrics on \S+:(\d+)", output)
            self.metrics_port = int(metrics[1]) if metrics else 0
        return match is not None

    def wait_listening(self, timeout: float = 300) -> ServiceProcess:
        """Waits until the service announces its port.

        Raises:
            RuntimeError: it exited, or did not announce itself within `timeout` seconds
                (it is killed then; the message ends with its last output).
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.listening():
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"{self.service} did not start:\n{self.output()[-3000:]}")

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, then waits; SIGKILL after `timeout` seconds. Returns the exit code.

        Raises:
            subprocess.TimeoutExpired: it had to be killed.
        """
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        """SIGKILL, and waits for it to be gone."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def launch_service(
    service: str,
    env: dict[str, str],
    log: Path | None = None,
    *,
    port: int = 0,
    metrics_port: str | None = None,
) -> ServiceProcess:
    """Starts `forgeline serve SERVICE` without waiting for it (see `wait_listening`).

    Args:
        service: Which service.
        env: Its whole environment (`FORGELINE_*` settings included).
        log: Where its output goes (appended); a new temporary file when None.
        port: Port to bind; 0 lets it pick one and announce it.
        metrics_port: FORGELINE_METRICS_PORT for this process (a port, 0, or 'off'); None
            leaves `env`'s.
    """
    if metrics_port is not None:
        env = {**env, "FORGELINE_METRICS_PORT": metrics_port}
    if log is None:
        fd, name = tempfile.mkstemp(prefix=f"forgeline-{service}-", suffix=".log")
        os.close(fd)
        log = Path(name)
    with open(log, "ab") as out:
        offset = out.tell()
        proc = subprocess.Popen(
            [*FORGELINE, "serve", service, "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return ServiceProcess(service, proc, log, port, offset)


def start_service(
    service: str,
    env: dict[str, str],
    log: Path | None = None,
    *,
    port: int = 0,
    timeout: float = 300,
) -> ServiceProcess:
    """Starts `forgeline serve SERVICE` and waits until it listens.

    Job services start (or join) Ray first; on a busy small machine a local Ray can take
    minutes, hence the generous default.

    Raises:
        RuntimeError: it exited or did not announce itself within `timeout` seconds.
    """
    return launch_service(service, env, log, port=port).wait_listening(timeout)
