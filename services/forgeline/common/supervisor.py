"""The whole suite on one machine: what `forgeline up` runs and the demo and tests reuse.

A `Supervisor` starts one Ray head (unless `FORGELINE_RAY_ADDRESS` names a cluster to join)
that the trainer, quantizer and evaluator share, then every service as its own `forgeline
serve` process on its own port, with its output appended to `<logs>/<service>.log`. It
waits for each to answer, then watches them: a process that exits is started again on the
same port after a backoff (1 s, doubling up to a minute, back to 1 s once it has run for a
minute), and every such event is reported. `stop` SIGTERMs the services at once (each
finishes in-flight calls within its grace period), then stops the Ray head.

Each gRPC service serves its Prometheus metrics on a port of its own: its gRPC port + 1000,
or a free one picked here when its gRPC port is picked too (FORGELINE_METRICS_PORT may
only be unset, `0` or `off` here, as one port cannot serve five services).

What runs is written to `<home>/run/up.json` after every change (`read_state` reads it), so
that `forgeline status` and `forgeline down` in another shell find the suite of a home.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

from forgeline.common.processes import ServiceProcess, free_port, launch_service
from forgeline.common.ray_node import RayNode, launch_ray_node
from forgeline.common.settings import (
    DEFAULT_PORTS,
    HTTP_SERVICES,
    METRICS_OFF,
    METRICS_PORT_OFFSET,
    ServiceName,
)

SERVICES = tuple(ServiceName)
RAY = "ray"
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 60.0
# A process that ran this long before exiting is restarted after FIRST_BACKOFF again.
STABLE_SECONDS = 60.0
POLL_SECONDS = 0.5


class State:
    """What a supervised process is doing (the strings `forgeline status` shows)."""

    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    STOPPED = "stopped"


@dataclass
class Child:
    """One supervised process: a service, or the Ray head."""

    name: str
    port: int
    log: Path
    process: ServiceProcess | RayNode | None = None
    state: str = State.STOPPED
    restarts: int = 0
    failures: int = 0  # exits in a row without STABLE_SECONDS of running in between
    started_at: float = 0.0
    restart_at: float = 0.0
    # FORGELINE_METRICS_PORT given to it (a port, '0' or 'off'); None for the gateway and Ray.
    metrics: str | None = None

    @property
    def pid(self) -> int:
        """Its process id (0 when none runs)."""
        return self.process.proc.pid if self.process else 0

    @property
    def address(self) -> str:
        """host:port it listens on."""
        if isinstance(self.process, RayNode):
            return self.process.address
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_address(self) -> str:
        """host:port of its metrics endpoint once it listens; empty when it has none."""
        if isinstance(self.process, ServiceProcess) and self.process.metrics_port:
            return f"127.0.0.1:{self.process.metrics_port}"
        return ""

    def exit_code(self) -> int | None:
        """Its exit code once it exited, None while it runs (or none was started)."""
        return self.process.proc.poll() if self.process else None


def state_file(home: Path) -> Path:
    """Where a home's supervisor records what runs."""
    return home / "run" / "up.json"


def read_state(home: Path) -> dict | None:
    """What the live supervisor of `home` recorded; None when none runs (a record left by
    one that died is removed)."""
    path = state_file(home)
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    try:
        alive = psutil.Process(state["pid"]).is_running()
    except (psutil.Error, KeyError, TypeError):
        alive = False
    if not alive:
        path.unlink(missing_ok=True)
        return None
    return state


def metrics_setting(env: Mapping[str, str]) -> str:
    """FORGELINE_METRICS_PORT as the suite takes it: '' (derive a port), '0' or 'off'.

    Raises:
        ValueError: it names one port, which five services cannot share.
    """
    value = env.get("FORGELINE_METRICS_PORT", "").strip().lower()
    if value not in ("", "0", METRICS_OFF):
        raise ValueError(
            f"FORGELINE_METRICS_PORT={value} would give every service of the suite one port; "
            f"leave it unset (each serves metrics on its gRPC port + {METRICS_PORT_OFFSET}), "
            "or set it to 0 (free ports) or off"
        )
    return value


def listen_port(address: str, service: ServiceName) -> int:
    """The port of a `host:port` setting (0: pick a free one when starting)."""
    return int(address.rsplit(":", 1)[1]) if ":" in address else DEFAULT_PORTS[service]


class Supervisor:
    """Starts, watches, restarts and stops the suite's processes.

    Args:
        home: FORGELINE_HOME of every service.
        env: The services' environment (settings included); addresses, home and the Ray
            address are set here.
        logs: Folder of the log files.
        report: Told every event worth a line ("trainer exited (code -9); restarting in 1 s").
        start_timeout: Seconds a service may take to answer after it is started.

    Raises:
        ValueError: FORGELINE_METRICS_PORT names one port for every service.
    """

    def __init__(
        self,
        home: Path,
        env: Mapping[str, str],
        logs: Path,
        report: Callable[[str], None] = lambda message: None,
        start_timeout: float = 300,
    ):
        self.home = home
        self.logs = logs
        self.report = report
        self.start_timeout = start_timeout
        self._lock = threading.Lock()
        self.metrics = metrics_setting(env)
        self.children: dict[str, Child] = {}
        for service in SERVICES:
            default = f"127.0.0.1:{DEFAULT_PORTS[service]}"
            address = env.get(f"FORGELINE_{service.name}_ADDRESS", default)
            port = listen_port(address, service)
            self.children[service.value] = Child(service.value, port, logs / f"{service}.log")
        self.env = {**env, "FORGELINE_HOME": str(home)}
        if not env.get("FORGELINE_RAY_ADDRESS"):
            # A Ray of our own, with a token of its own (Ray's token authentication).
            self.env |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
            self.children = {RAY: Child(RAY, free_port(), logs / "ray.log"), **self.children}

    # ------------------------------------------------------------------ starting

    def _launch(self, child: Child) -> None:
        child.state = State.STARTING
        child.started_at = time.monotonic()
        if child.name == RAY:
            child.process = launch_ray_node(self.env, port=child.port, log=child.log)
        else:
            child.process = launch_service(
                child.name, self.env, child.log, port=child.port, metrics_port=child.metrics
            )

    def _started(self, child: Child) -> bool:
        """Whether a STARTING child now answers (and moves it to RUNNING)."""
        process = child.process
        ready = process is not None and (
            process.started() if isinstance(process, RayNode) else process.listening()
        )
        if ready:
            child.state = State.RUNNING
            if isinstance(process, RayNode):
                self.env["FORGELINE_RAY_ADDRESS"] = process.address
        return ready

    def start(self) -> None:
        """Starts the Ray head, then every service at once, and waits until all answer.

        Raises:
            RuntimeError: one exited or did not answer in time (everything is stopped, and
                the message ends with that one's output).
        """
        self.logs.mkdir(parents=True, exist_ok=True)
        try:
            if RAY in self.children:
                ray = self.children[RAY]
                self._launch(ray)
                self.report("starting the Ray head")
                assert isinstance(ray.process, RayNode)
                ray.process.wait_started(self.start_timeout)
                self._started(ray)
            services = [c for c in self.children.values() if c.name != RAY]
            # Free ports are picked only now: Ray's processes take ports of their own.
            for child in services:
                picked = not child.port
                child.port = child.port or free_port()
                if child.name not in HTTP_SERVICES:
                    child.metrics = self._metrics_port(child.port, picked)
            # Every address, the gateway's too: the console calls it.
            self.env |= {f"FORGELINE_{c.name.upper()}_ADDRESS": c.address for c in services}
            for child in services:
                self._launch(child)
            self._write_state()
            for child in services:
                assert isinstance(child.process, ServiceProcess)
                child.process.wait_listening(self.start_timeout)
                child.state = State.RUNNING
                self.report(f"{child.name} is up on {child.address}")
                self._write_state()
        except BaseException:
            self.stop()
            raise

    def _metrics_port(self, port: int, picked: bool) -> str:
        """FORGELINE_METRICS_PORT for a service on `port` (`picked`: chosen free here)."""
        if self.metrics:
            return self.metrics
        return str(free_port() if picked else port + METRICS_PORT_OFFSET)

    # ------------------------------------------------------------------ watching

    def poll(self) -> None:
        """One round of watching: notes started and exited processes, restarts those due."""
        now = time.monotonic()
        changed = False
        with self._lock:
            for child in self.children.values():
                if child.state is State.STARTING and self._started(child):
                    self.report(f"{child.name} is up again on {child.address}")
                    changed = True
                elif child.state in (State.STARTING, State.RUNNING):
                    code = child.exit_code()
                    if code is not None:
                        self._schedule_restart(child, code, now)
                        changed = True
                elif child.state is State.RESTARTING and now >= child.restart_at:
                    self._launch(child)
                    child.restarts += 1
                    changed = True
            if changed:
                self._write_state()

    def _schedule_restart(self, child: Child, code: int, now: float) -> None:
        if now - child.started_at >= STABLE_SECONDS:
            child.failures = 0
        child.failures += 1
        delay = min(FIRST_BACKOFF * 2 ** (child.failures - 1), MAX_BACKOFF)
        if isinstance(child.process, RayNode):
            child.process.stop()  # what is left of its tree, and its folder
        child.process = None
        child.state = State.RESTARTING
        child.restart_at = now + delay
        self.report(
            f"{child.name} exited (code {code}); restarting in {delay:.0f} s "
            f"(restart {child.restarts + 1}, log {child.log})"
        )

    def run(self, stop: threading.Event) -> None:
        """Watches until `stop` is set."""
        while not stop.wait(POLL_SECONDS):
            self.poll()

    # ------------------------------------------------------------------ stopping

    def stop(self, timeout: float = 60) -> None:
        """SIGTERMs every service at once, waits (SIGKILL after `timeout` s), then stops Ray."""
        with self._lock:
            services = [c for c in self.children.values() if c.name != RAY and c.process]
            for child in services:
                assert isinstance(child.process, ServiceProcess)
                if child.process.proc.poll() is None:
                    child.process.proc.send_signal(signal.SIGTERM)
            for child in services:
                assert isinstance(child.process, ServiceProcess)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.process.stop(timeout)
                child.state = State.STOPPED
            ray = self.children.get(RAY)
            if ray is not None and ray.process is not None:
                assert isinstance(ray.process, RayNode)
                ray.process.stop()
                ray.state = State.STOPPED
            state_file(self.home).unlink(missing_ok=True)

    # ------------------------------------------------------------------ state

    def state(self) -> dict:
        """What runs, as recorded in the state file."""
        return {
            "pid": os.getpid(),
            "home": str(self.home),
            "logs": str(self.logs),
            "processes": [
                {
                    "name": c.name,
                    "address": c.address,
                    "metrics": c.metrics_address,
                    "pid": c.pid,
                    "state": c.state,
                    "restarts": c.restarts,
                    "log": str(c.log),
                }
                for c in self.children.values()
            ],
        }

    def _write_state(self) -> None:
        path = state_file(self.home)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(self.state(), indent=2))
        partial.replace(path)
