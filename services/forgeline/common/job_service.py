"""The Submit / Get / List / Cancel / Watch RPCs shared by every job service.

Each job service's servicer delegates its five job RPCs to a `JobRpcs` built over its
`JobManager` and its `JobMessages` (the SDK's table naming the service's request and
response classes: `SubmitTrainJobResponse`, `SubmitQuantizeJobResponse`, ...).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from forgeline.client.jobs import JobMessages
from forgeline.common.jobs import JobManager, JobStore, Runner
from forgeline.common.jobs.metrics import JobMetrics
from forgeline.common.metrics import ServiceMetrics
from forgeline.common.server import ForgelineServer, Service, build_server
from forgeline.common.settings import Settings


class JobRpcs:
    """Implements the job RPCs for one service.

    Args:
        manager: The service's job manager.
        messages: The service's job request and response classes.
    """

    def __init__(self, manager: JobManager, messages: JobMessages):
        self.manager = manager
        self.messages = messages

    async def submit(self, request: Any) -> Any:
        """Validates, persists and queues the spec; returns the job and its spec."""
        job = self.manager.submit(request.spec, dict(request.spec.labels))
        return self.messages.submit_response(job=job.to_pb(), spec=request.spec)

    async def get(self, request: Any) -> Any:
        """Returns a job and its spec."""
        job, spec = self.manager.get(request.job_id)
        return self.messages.get_response(job=job.to_pb(), spec=spec)

    async def list(self, request: Any) -> Any:
        """Returns a page of jobs, newest first."""
        jobs, token = self.manager.store.list(
            self.manager.kind,
            states=list(request.filter.states),
            labels=dict(request.filter.labels),
            page_size=request.page.page_size,
            page_token=request.page.page_token,
        )
        return self.messages.list_response(jobs=[j.to_pb() for j in jobs], next_page_token=token)

    async def cancel(self, request: Any) -> Any:
        """Cancels a queued or running job."""
        job = self.manager.cancel(request.job_id, request.reason or "cancelled by request")
        return self.messages.cancel_response(job=job.to_pb())

    async def watch(self, request: Any) -> AsyncIterator[Any]:
        """Streams events after `after_seq`, then live ones, until the job ends."""
        async for event in self.manager.watch(request.job_id, request.after_seq):
            yield self.messages.watch_response(event=event.to_pb())


def build_job_server(
    settings: Settings,
    *,
    service_name: str,
    add_servicer: Callable[[Any, grpc.aio.Server], None],
    make_servicer: Callable[[JobRpcs], Any],
    messages: JobMessages,
    kind: int,
    runner: Runner,
    validate: Callable[[Any], None] | None = None,
) -> ForgelineServer:
    """Builds a job service: its SQL job store and a manager started and stopped with it,
    its job metrics beside the RPC metrics."""
    store = JobStore(settings.database_url)
    metrics = ServiceMetrics()
    manager = JobManager(
        store,
        kind,
        messages.spec,
        runner,
        settings.service_dir / "jobs",
        concurrency=settings.max_concurrent_jobs,
        validate=validate,
        metrics=JobMetrics(metrics.registry, store, kind),
        service_name=settings.service.value,
    )
    rpcs = JobRpcs(manager, messages)
    servicer = make_servicer(rpcs)
    server = build_server(
        settings, [Service(service_name, lambda s: add_servicer(servicer, s))], metrics
    )
    server.on_start.append(manager.start)

    async def stop_manager() -> None:
        await manager.stop()
        store.close()

    server.on_stop.append(stop_manager)
    server.components["jobs"] = manager
    return server
