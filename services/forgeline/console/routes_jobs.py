"""Jobs of the three job services: lists with filters, one job with its spec and outputs,
cancel, and its events as Server-Sent Events.

The events route replays a job's log from the start (or from `Last-Event-ID`, so a
reconnecting browser misses nothing) and then follows it live through the SDK's
`watch`, until the job ends; the page draws the loss curve from its metrics events.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from forgeline.cli.jobfile_write import dump_job_file, split_inputs
from forgeline.client import exceptions
from forgeline.client.labels import labels
from forgeline.console.auth import require_session
from forgeline.console.clients import JOB_SERVICES, Clients
from forgeline.console.errors import ConsoleError
from forgeline.console.views import event_view, job_view, message_dict, version_view
from forgeline.v1 import common_pb2

router = APIRouter(prefix="/api/jobs", dependencies=[Depends(require_session)])
# The newest jobs a list shows per service.
LIST_LIMIT = 200
SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


def _clients(request: Request) -> Clients:
    return request.app.state.clients


def _kind(kind: str) -> str:
    if kind not in JOB_SERVICES:
        raise ConsoleError(404, f"no job kind {kind!r}; one of {', '.join(JOB_SERVICES)}")
    return kind


@router.get("")
def list_jobs(
    request: Request,
    kind: str = Query("", description="training, quantization or evaluation; empty: all"),
    state: str = Query("", description="queued, running, succeeded, failed or cancelled"),
) -> dict:
    """The newest jobs of one kind or all, newest first, optionally of one state."""
    states = []
    if state:
        known = labels(common_pb2.JobState)
        if state not in known:
            raise ConsoleError(400, f"not one of {', '.join(known)}", field="state")
        states = [known[state]]
    kinds = [_kind(kind)] if kind else list(JOB_SERVICES)
    jobs, unavailable = [], []
    for k in kinds:
        try:
            listed = _clients(request).jobs(k).list(states=states)
            for _, job in zip(range(LIST_LIMIT), listed, strict=False):
                jobs.append(job_view(job, k))
        except exceptions.Unavailable:
            unavailable.append(k)  # one service down leaves the others' jobs listed
    jobs.sort(key=lambda j: j["create_time"], reverse=True)
    return {"jobs": jobs, "unavailable": unavailable}


@router.get("/{kind}/{job_id}")
def get_job(request: Request, kind: str, job_id: str) -> dict:
    """A job, its spec (for training also as a job file) and the versions it registered."""
    client = _clients(request).jobs(_kind(kind))
    job, spec = client.get(job_id)
    body = {"job": job_view(job, kind), "spec": message_dict(spec), "outputs": []}
    if kind == "training":
        rest, inputs = split_inputs(spec)
        body["job_file"] = dump_job_file(rest, inputs)
    registry = _clients(request).registry
    for version in registry.list_versions(job_id=job_id):
        body["outputs"].append(version_view(version))
    return body


@router.post("/{kind}/{job_id}/cancel")
def cancel_job(request: Request, kind: str, job_id: str) -> dict:
    """Cancels a queued or running job (409 when it already ended)."""
    job = _clients(request).jobs(_kind(kind)).cancel(job_id, reason="cancelled from the console")
    return {"job": job_view(job, kind)}


@router.get("/{kind}/{job_id}/events")
def job_events(request: Request, kind: str, job_id: str) -> StreamingResponse:
    """The job's events as Server-Sent Events (`id` is the event's sequence number), then
    an `end` event once the job ended."""
    client = _clients(request).jobs(_kind(kind))
    client.get(job_id)  # a 404 now rather than inside the stream
    after = request.headers.get("last-event-id", "")
    after_seq = int(after) if after.isdigit() else 0

    def stream() -> Iterator[str]:
        yield "retry: 2000\n\n"
        try:
            for event in client.watch(job_id, after_seq):
                yield f"id: {event.seq}\ndata: {json.dumps(event_view(event))}\n\n"
        except exceptions.ForgelineError as err:
            yield f"event: failure\ndata: {json.dumps({'message': err.message})}\n\n"
            return
        yield "event: end\ndata: {}\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream", headers=SSE_HEADERS)
