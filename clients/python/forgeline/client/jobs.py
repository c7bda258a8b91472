"""Typed clients of the job services: the trainer, the quantizer and the evaluator.

The three share the Submit / Get / List / Cancel / Watch shape. `JobMessages` names each
service's ten message classes explicitly (the servers' shared job RPCs use the same
tables), and each client binds its five stub methods by name in `_job_methods`, so a
search for a message or RPC name finds every user. `watch` reconnects after UNAVAILABLE
from the last sequence number it saw, so a restart of the service loses and repeats
nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import grpc
from google.protobuf.message import Message

from forgeline.client import exceptions
from forgeline.client.base import BaseClient
from forgeline.client.channel import ChannelOptions
from forgeline.v1 import (
    common_pb2,
    evaluator_pb2,
    evaluator_pb2_grpc,
    quantizer_pb2,
    quantizer_pb2_grpc,
    trainer_pb2,
    trainer_pb2_grpc,
)

log = logging.getLogger(__name__)

SpecT = TypeVar("SpecT", bound=Message)

TERMINAL = frozenset(
    {common_pb2.JOB_STATE_SUCCEEDED, common_pb2.JOB_STATE_FAILED, common_pb2.JOB_STATE_CANCELLED}
)


@dataclass(frozen=True)
class JobMessages:
    """The request and response classes of one job service's five job RPCs."""

    spec: type[Message]
    submit_request: type[Message]
    submit_response: type[Message]
    get_request: type[Message]
    get_response: type[Message]
    list_request: type[Message]
    list_response: type[Message]
    cancel_request: type[Message]
    cancel_response: type[Message]
    watch_request: type[Message]
    watch_response: type[Message]


TRAIN_JOBS = JobMessages(
    spec=trainer_pb2.TrainJobSpec,
    submit_request=trainer_pb2.SubmitTrainJobRequest,
    submit_response=trainer_pb2.SubmitTrainJobResponse,
    get_request=trainer_pb2.GetTrainJobRequest,
    get_response=trainer_pb2.GetTrainJobResponse,
    list_request=trainer_pb2.ListTrainJobsRequest,
    list_response=trainer_pb2.ListTrainJobsResponse,
    cancel_request=trainer_pb2.CancelTrainJobRequest,
    cancel_response=trainer_pb2.CancelTrainJobResponse,
    watch_request=trainer_pb2.WatchTrainJobRequest,
    watch_response=trainer_pb2.WatchTrainJobResponse,
)

QUANTIZE_JOBS = JobMessages(
    spec=quantizer_pb2.QuantizeJobSpec,
    submit_request=quantizer_pb2.SubmitQuantizeJobRequest,
    submit_response=quantizer_pb2.SubmitQuantizeJobResponse,
    get_request=quantizer_pb2.GetQuantizeJobRequest,
    get_response=quantizer_pb2.GetQuantizeJobResponse,
    list_request=quantizer_pb2.ListQuantizeJobsRequest,
    list_response=quantizer_pb2.ListQuantizeJobsResponse,
    cancel_request=quantizer_pb2.CancelQuantizeJobRequest,
    cancel_response=quantizer_pb2.CancelQuantizeJobResponse,
    watch_request=quantizer_pb2.WatchQuantizeJobRequest,
    watch_response=quantizer_pb2.WatchQuantizeJobResponse,
)

EVAL_JOBS = JobMessages(
    spec=evaluator_pb2.EvalJobSpec,
    submit_request=evaluator_pb2.SubmitEvalJobRequest,
    submit_response=evaluator_pb2.SubmitEvalJobResponse,
    get_request=evaluator_pb2.GetEvalJobRequest,
    get_response=evaluator_pb2.GetEvalJobResponse,
    list_request=evaluator_pb2.ListEvalJobsRequest,
    list_response=evaluator_pb2.ListEvalJobsResponse,
    cancel_request=evaluator_pb2.CancelEvalJobRequest,
    cancel_response=evaluator_pb2.CancelEvalJobResponse,
    watch_request=evaluator_pb2.WatchEvalJobRequest,
    watch_response=evaluator_pb2.WatchEvalJobResponse,
)


@dataclass(frozen=True)
class _JobMethods:
    submit: Callable[..., Any]
    get: Callable[..., Any]
    list: Callable[..., Any]
    cancel: Callable[..., Any]
    watch: Callable[..., Any]


class JobClient(BaseClient, Generic[SpecT]):
    """What every job client offers; subclasses give their messages and stub methods."""

    messages: JobMessages

    def __init__(self, target: str | grpc.Channel, options: ChannelOptions | None = None):
        super().__init__(target, options)
        self._jobs = self._job_methods()

    def _job_methods(self) -> _JobMethods:
        raise NotImplementedError

    def submit(self, spec: SpecT) -> common_pb2.Job:
        """Submits a job; returns it QUEUED.

        Raises:
            InvalidArgument: the spec is invalid; every problem is listed with its field.
        """
        request = self.messages.submit_request(spec=spec)
        return self._unary(self._jobs.submit, request).job

    def get(self, job_id: str) -> tuple[common_pb2.Job, SpecT]:
        """Returns a job and its spec.

        Raises:
            NotFound: no job of this service has this id.
        """
        response = self._unary(self._jobs.get, self.messages.get_request(job_id=job_id))
        return response.job, response.spec

    def list(
        self, states: list[int] | None = None, labels: dict[str, str] | None = None
    ) -> Iterator[common_pb2.Job]:
        """Iterates over jobs, newest first, across pages."""
        token = ""
        while True:
            request = self.messages.list_request(
                page=common_pb2.PageRequest(page_token=token),
                filter=common_pb2.JobFilter(states=states or [], labels=labels or {}),
            )
            page = self._unary(self._jobs.list, request)
            yield from page.jobs
            token = page.next_page_token
            if not token:
                return

    def cancel(self, job_id: str, reason: str = "") -> common_pb2.Job:
        """Cancels a queued or running job.

        Raises:
            FailedPrecondition: the job already ended.
        """
        request = self.messages.cancel_request(job_id=job_id, reason=reason)
        return self._unary(self._jobs.cancel, request).job

    def watch(
        self, job_id: str, after_seq: int = 0, reconnect_for: float = 120.0
    ) -> Iterator[common_pb2.JobEvent]:
        """Yields the job's events with seq > `after_seq` until it ends.

        Survives restarts of the service: after UNAVAILABLE it reconnects (for up to
        `reconnect_for` seconds) asking for events after the last one it yielded.

        Raises:
            NotFound: no such job.
            Unavailable: the service stayed unreachable for `reconnect_for` seconds.
        """
        last = after_seq
        down_since: float | None = None
        while True:
            request = self.messages.watch_request(job_id=job_id, after_seq=last)
            try:
                for response in self._server_stream(self._jobs.watch, request):
                    down_since = None
                    last = response.event.seq
                    yield response.event
                return
            except exceptions.Unavailable:
                down_since = down_since or time.monotonic()
                if time.monotonic() - down_since > reconnect_for:
                    raise
                log.info("watch of %s interrupted; reconnecting after seq %d", job_id, last)
                time.sleep(0.5)

    def wait(self, job_id: str) -> common_pb2.Job:
        """Blocks until the job ends; returns its final state."""
        for _ in self.watch(job_id):
            pass
        return self.get(job_id)[0]


class TrainerClient(JobClient[trainer_pb2.TrainJobSpec]):
    """Client of the trainer service."""

    messages = TRAIN_JOBS

    def _job_methods(self) -> _JobMethods:
        self._stub = trainer_pb2_grpc.TrainerServiceStub(self._channel)
        return _JobMethods(
            submit=self._stub.SubmitTrainJob,
            get=self._stub.GetTrainJob,
            list=self._stub.ListTrainJobs,
            cancel=self._stub.CancelTrainJob,
            watch=self._stub.WatchTrainJob,
        )

    def plan(self, spec: trainer_pb2.TrainJobSpec) -> trainer_pb2.PlanTrainJobResponse:
        """Validates a spec and estimates its memory and steps without running it."""
        request = trainer_pb2.PlanTrainJobRequest(spec=spec)
        return self._unary(self._stub.PlanTrainJob, request)


class QuantizerClient(JobClient[quantizer_pb2.QuantizeJobSpec]):
    """Client of the quantizer service."""

    messages = QUANTIZE_JOBS

    def _job_methods(self) -> _JobMethods:
        self._stub = quantizer_pb2_grpc.QuantizerServiceStub(self._channel)
        return _JobMethods(
            submit=self._stub.SubmitQuantizeJob,
            get=self._stub.GetQuantizeJob,
            list=self._stub.ListQuantizeJobs,
            cancel=self._stub.CancelQuantizeJob,
            watch=self._stub.WatchQuantizeJob,
        )


class EvaluatorClient(JobClient[evaluator_pb2.EvalJobSpec]):
    """Client of the evaluator service."""

    messages = EVAL_JOBS

    def _job_methods(self) -> _JobMethods:
        self._stub = evaluator_pb2_grpc.EvaluatorServiceStub(self._channel)
        return _JobMethods(
            submit=self._stub.SubmitEvalJob,
            get=self._stub.GetEvalJob,
            list=self._stub.ListEvalJobs,
            cancel=self._stub.CancelEvalJob,
            watch=self._stub.WatchEvalJob,
        )

    def report(self, job_id: str) -> evaluator_pb2.EvalReport:
        """Returns the report of a succeeded evaluation job.

        Raises:
            FailedPrecondition: the job has not succeeded.
        """
        request = evaluator_pb2.GetEvalReportRequest(job_id=job_id)
        return self._unary(self._stub.GetEvalReport, request).report
