"""A Ray node as a child process: the head `forgeline up` shares between the job services.

`ray start --block` runs the node (GCS, raylet, agents, workers) until it is stopped. Every
port is picked free and its temporary folder is a fresh short one (Ray's socket paths under
it must stay within ~107 characters), so that other Rays on the machine are no obstacle.
Stopping SIGTERMs the whole process tree at once, as `ray stop` would for this node only
(Ray's own drain would wait for running tasks), and SIGKILLs what lingers.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from forgeline.common.processes import free_port

RAY = [sys.executable, "-m", "ray.scripts.scripts"]
STARTED = "Ray runtime started"


@dataclass
class RayNode:
    """A `ray start --block` process and the folder it keeps its sockets and logs in.

    `offset` is where this process's output starts in `log` (which may be shared).
    """

    proc: subprocess.Popen
    temp_dir: Path
    log: Path
    offset: int = 0

    @property
    def address(self) -> str:
        """host:port of the head's GCS, as `ray start` recorded it ('' before it started)."""
        path = self.temp_dir / "ray_current_cluster"
        return path.read_text().strip() if path.exists() else ""

    def output(self) -> str:
        """What `ray start` printed so far."""
        with open(self.log, "rb") as f:
            f.seek(self.offset)
            return f.read().decode(errors="replace")

    def started(self) -> bool:
        """Whether the node runs (for a head: and its GCS address is known)."""
        return STARTED in self.output() and (not self.is_head or self.address != "")

    def wait_started(self, timeout: float = 180) -> RayNode:
        """Waits until the node runs.

        Raises:
            RuntimeError: it exited or did not start within `timeout` seconds (it is stopped
                then; the message ends with its output).
        """
        deadline = time.monotonic() + timeout
        while not self.started():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the Ray node did not start:\n{self.output()[-3000:]}")
            time.sleep(0.5)
        return self

    @property
    def is_head(self) -> bool:
        """Whether this node is a head (it started a GCS)."""
        return "--head" in self.proc.args

    def processes(self) -> list[psutil.Process]:
        """The node's live processes: `ray start` and its descendants."""
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def kill(self) -> None:
        """SIGKILLs every process of the node at once, as a machine that dies."""
        processes = self.processes()
        for process in processes:
            with contextlib.suppress(psutil.Error):
                process.kill()
        psutil.wait_procs(processes, timeout=30)

    def stop(self) -> None:
        """SIGTERM to every process of the node, SIGKILL to what lingers after 10 s; removes
        its temporary folder."""
        processes = self.processes()
        for process in processes:
            with contextlib.suppress(psutil.Error):
                process.terminate()
        _, alive = psutil.wait_procs(processes, timeout=10)
        for process in alive:
            with contextlib.suppress(psutil.Error):
                process.kill()
        psutil.wait_procs(alive, timeout=10)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def launch_ray_node(
    env: dict[str, str],
    *,
    head: str = "",
    port: int = 0,
    log: Path | None = None,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    object_store_bytes: int = 0,
) -> RayNode:
    """Starts a Ray node without waiting for it (see `RayNode.wait_started`).

    Args:
        env: Its whole environment (Ray auth variables included, when used).
        head: The GCS address of a head to join; empty starts a head.
        port: The head's GCS port; 0 picks a free one.
        log: Where its output goes (appended); a file in its temporary folder when None.
        num_cpus: CPUs it offers; None: all of the machine's.
        num_gpus: GPUs it offers; None: all it finds.
        object_store_bytes: Object store size; 0: Ray's default.
    """
    temp_dir = Path(tempfile.mkdtemp(prefix="fl-ray-", dir="/tmp"))
    log = log or temp_dir / "ray-start.log"
    command = [
        *RAY,
        "start",
        "--block",
        f"--temp-dir={temp_dir}",
        f"--dashboard-agent-listen-port={free_port()}",
        "--disable-usage-stats",
    ]
    if num_cpus is not None:
        command.append(f"--num-cpus={num_cpus}")
    if num_gpus is not None:
        command.append(f"--num-gpus={num_gpus}")
    if object_store_bytes:
        command.append(f"--object-store-memory={object_store_bytes}")
    if head:
        command.append(f"--address={head}")
    else:
        command += [
            "--head",
            f"--port={port or free_port()}",
            f"--ray-client-server-port={free_port()}",
            "--include-dashboard=false",
        ]
    with open(log, "ab") as out:
        offset = out.tell()
        proc = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return RayNode(proc, temp_dir, log, offset)
