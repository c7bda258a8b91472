"""The Ray cluster a job service runs its work on, and the event channel back from a task.

A job service joins the cluster at `FORGELINE_RAY_ADDRESS`, or starts a local Ray once
(lazily, on first use). Work runs as Ray tasks with the resources a job asks for; a task
reports progress through an `EventSink` actor that the service drains, and is stopped by
cancelling it (which kills its worker process). Submitting is a span of the job's trace,
and the task runs in a span continuing it on its worker (`forgeline.common.tracing`).

A joined cluster runs the service's code in processes its own nodes start, so every node
needs `forgeline` importable (installed, or on the `PYTHONPATH` its `ray start` ran with);
the job's environment variables (`WORKER_ENV`) travel as the job's runtime environment.
Nodes on other machines must also reach the registry: `loopback_host` helps tell when the
address handed to them cannot work there.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

from forgeline.common.settings import is_loopback
from forgeline.common.tracing import launch_span, ray_task

log = logging.getLogger(__name__)

# Environment of every worker: quiet tokenizers. OpenMP keeps its default wait policy (spin
# briefly, then sleep): a task owns the CPUs Ray gave it, and PASSIVE cost training about a
# third of its speed on a 2-core machine.
WORKER_ENV = {"TOKENIZERS_PARALLELISM": "false"}
LOCAL_START_ATTEMPTS = 2


class EventSink:
    """Collects a task's events for the service (a Ray actor; see `RayCluster.submit`)."""

    def __init__(self) -> None:
        self._events: list[tuple] = []

    def put(self, event: tuple) -> None:
        """Queues one event, e.g. ("progress", done, total, stage) or ("log", message)."""
        self._events.append(event)

    def drain(self) -> list[tuple]:
        """Returns and forgets the queued events."""
        events, self._events = self._events, []
        return events


class TaskHandle:
    """A submitted task: drain its events, ask whether it ended, get its result, stop it."""

    def __init__(self, ref: Any, sink: Any):
        self._ref = ref
        self._sink = sink

    def done(self) -> bool:
        """Whether the task ended (either way)."""
        import ray

        ready, _ = ray.wait([self._ref], timeout=0)
        return bool(ready)

    def events(self) -> list[tuple]:
        """Events the task reported since the last call."""
        import ray

        try:
            return ray.get(self._sink.drain.remote(), timeout=30)
        except Exception:  # the sink is gone once the task is torn down
            return []

    def result(self) -> Any:
        """Waits for the task and returns what it returned.

        Raises:
            Exception: what the task raised, unwrapped from Ray's error where possible.
        """
        import ray

        try:
            return ray.get(self._ref)
        except ray.exceptions.RayTaskError as exc:
            raise exc.as_instanceof_cause() from None

    def stop(self) -> None:
        """Kills the task's worker process, and the event sink."""
        import ray

        ray.cancel(self._ref, force=True)
        ray.kill(self._sink)


class RayCluster:
    """A connection to Ray: the cluster at `address`, or a local one started on first use.

    Args:
        address: A Ray cluster address; empty starts (or reuses) a local Ray.
        num_cpus: CPUs of a locally started Ray (default: all).
    """

    def __init__(self, address: str = "", num_cpus: int | None = None):
        self.address = address
        self.num_cpus = num_cpus
        self._lock = threading.Lock()
        self._started_here = False

    def ensure_started(self) -> None:
        """Connects to (or starts) Ray once; an already initialized Ray is reused."""
        import ray

        with self._lock:
            if ray.is_initialized():
                return
            runtime_env = {"env_vars": dict(WORKER_ENV)}
            if self.address:
                log.info("joining the Ray cluster at %s", self.address)
                ray.init(address=self.address, runtime_env=runtime_env, log_to_driver=False)
            else:
                # Ray waits 30 s for its GCS to bind; a busy small machine can take longer.
                os.environ.setdefault("RAY_gcs_server_port_wait_time_s", "120")
                for attempt in range(1, LOCAL_START_ATTEMPTS + 1):
                    log.info("starting a local Ray (attempt %d)", attempt)
                    try:
                        # "local": a new Ray of our own, never one a `ray start` left running.
                        ray.init(
                            address="local",
                            num_cpus=self.num_cpus,
                            include_dashboard=False,
                            runtime_env=runtime_env,
                            log_to_driver=False,
                        )
                        break
                    except Exception:
                        ray.shutdown()
                        if attempt == LOCAL_START_ATTEMPTS:
                            raise
                        log.warning("the local Ray did not start; trying again", exc_info=True)
                self._started_here = True

    def other_hosts(self) -> list[str]:
        """Addresses of the cluster's live nodes on machines other than this one."""
        import ray

        self.ensure_started()
        here = ray.util.get_node_ip_address()
        hosts = {n.get("NodeManagerAddress", "") for n in ray.nodes() if n.get("Alive")}
        return sorted(h for h in hosts if h and h != here)

    def resources(self) -> dict[str, float]:
        """The cluster's total resources (CPU, GPU, memory, ...)."""
        import ray

        self.ensure_started()
        return dict(ray.cluster_resources())

    def probe(self, fn: Callable[[], Any]) -> Any:
        """What `fn()` returns on a worker of the cluster (this process for a local Ray)."""
        import ray

        self.ensure_started()
        if not self.address:
            return fn()
        return ray.get(ray.remote(num_cpus=0)(fn).remote(), timeout=120)

    def submit(
        self, fn: Callable[..., Any], *args: Any, resources: Mapping[str, float]
    ) -> TaskHandle:
        """Runs `fn(*args, sink)` as a Ray task with `resources` (CPU, GPU, memory)."""
        import ray

        self.ensure_started()
        sink = ray.remote(num_cpus=0)(EventSink).remote()
        options: dict[str, Any] = {"num_cpus": resources.get("CPU", 1.0), "max_retries": 0}
        if resources.get("GPU"):
            options["num_gpus"] = resources["GPU"]
        if resources.get("memory"):
            options["memory"] = resources["memory"]
        name = getattr(fn, "__name__", "task")
        with launch_span(f"ray submit {name}", **{"ray.resources": str(dict(resources))}):
            task = ray.remote(ray_task(fn, f"ray task {name}")).options(**options)
            return TaskHandle(task.remote(*args, sink), sink)

    def shutdown(self) -> None:
        """Stops the local Ray this connection started (a joined cluster is left alone)."""
        import ray

        with self._lock:
            if self._started_here and ray.is_initialized():
                ray.shutdown()
                self._started_here = False


def loopback_host(address: str) -> bool:
    """Whether a `host:port` address names this machine only (127.0.0.1, ::1, localhost)."""
    return is_loopback(address.rsplit(":", 1)[0] if ":" in address else address)
