"""How a failed run is reported: the worker's own error, or the loss of a worker or node."""

from __future__ import annotations

from ray.exceptions import ActorUnavailableError, RayTaskError, WorkerCrashedError
from ray.train import WorkerGroupError
from ray.train.v2._internal.exceptions import WorkerHealthCheckFailedError

from forgeline.trainer.launcher import _worker_error


def from_fit(error: Exception) -> RayTaskError:
    """What `ray.get` on the run's driver task raises when `trainer.fit()` raised `error`."""
    return RayTaskError("_fit", "Traceback (most recent call last): ...", error)


def test_a_worker_exception_is_reported_as_is():
    error = WorkerGroupError("ValueError: no examples", {0: ValueError("no examples")})
    assert _worker_error(from_fit(error)) == "ValueError: no examples"


def test_a_lost_node_is_said_so():
    unreachable = ActorUnavailableError(
        "The actor is temporarily unavailable: Connection refused", None
    )
    # As Ray Train reports it: rank 1's health check failed, since its actor is unreachable.
    failure = WorkerHealthCheckFailedError("rank 1 failed its health check", unreachable)
    error = WorkerGroupError(f"rank 1: {failure}", {1: failure})
    message = _worker_error(from_fit(error))
    assert message.startswith("a Ray worker or the node it ran on was lost: ")
    assert "Connection refused" in message


def test_a_lost_driver_task_is_said_so():
    assert _worker_error(WorkerCrashedError()).startswith("a Ray worker or the node")
