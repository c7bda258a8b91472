"""Typed clients, one per service, over `open_channel`.

Every method converts gRPC errors into Forgeline's domain exceptions
(`forgeline.client.exceptions`). Job clients share one implementation (`JobClient`): submit,
get, list, cancel, and a `watch` iterator that reconnects after UNAVAILABLE from the last
sequence number it saw, so a restart of the service loses and repeats nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import ModuleType
from typing import Any

import grpc

from forgeline.client.channel import ChannelOptions, open_channel
from forgeline.client.refs import parse_ref
from forgeline.client.status import raise_for_rpc_error
from forgeline.v1 import (
    common_pb2,
    evaluator_pb2,
    evaluator_pb2_grpc,
    inference_pb2,
    inference_pb2_grpc,
    quantizer_pb2,
    quantizer_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
    trainer_pb2,
    trainer_pb2_grpc,
)

log = logging.getLogger(__name__)

TERMINAL = {
    common_pb2.JOB_STATE_SUCCEEDED,
    common_pb2.JOB_STATE_FAILED,
    common_pb2.JOB_STATE_CANCELLED,
}


def _ref(ref: str | common_pb2.ModelRef) -> common_pb2.ModelRef:
    return parse_ref(ref) if isinstance(ref, str) else ref


class _Client:
    """Owns a channel (or borrows one) and calls a stub with error conversion."""

    stub_class: Callable[[grpc.Channel], Any]

    def __init__(self, target: str | grpc.Channel, options: ChannelOptions | None = None):
        self._owns_channel = isinstance(target, str)
        self.channel = open_channel(target, options) if isinstance(target, str) else target
        self.stub = self.stub_class(self.channel)

    def close(self) -> None:
        """Closes the channel if this client opened it."""
        if self._owns_channel:
            self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _call(self, method: str, request: Any, timeout: float | None = 60.0) -> Any:
        try:
            return getattr(self.stub, method)(request, timeout=timeout)
        except grpc.RpcError as err:
            raise_for_rpc_error(err)

    def _stream(self, method: str, request: Any, timeout: float | None = None) -> Iterator[Any]:
        try:
            yield from getattr(self.stub, method)(request, timeout=timeout)
        except grpc.RpcError as err:
            raise_for_rpc_error(err)


class RegistryClient(_Client):
    """Client of the registry service."""

    stub_class = registry_pb2_grpc.RegistryServiceStub

    def get_version(self, ref: str | common_pb2.ModelRef) -> registry_pb2.Version:
        """Resolves a reference to a version.

        Raises:
            NotFound: unknown model, version or alias.
        """
        return self._call("GetVersion", registry_pb2.GetVersionRequest(ref=_ref(ref))).version

    def get_model(self, name: str) -> registry_pb2.Model:
        """Returns a model by name."""
        return self._call("GetModel", registry_pb2.GetModelRequest(name=name)).model

    def list_versions(self, **filters: Any) -> Iterator[registry_pb2.Version]:
        """Iterates over versions matching `filters` (fields of ListVersionsRequest), all pages."""
        token = ""
        while True:
            page = self._call(
                "ListVersions",
                registry_pb2.ListVersionsRequest(
                    page=common_pb2.PageRequest(page_token=token), **filters
                ),
            )
            yield from page.versions
            token = page.next_page_token
            if not token:
                return

    def call(self, method: str, request: Any, timeout: float | None = 60.0) -> Any:
        """Calls any registry RPC by name, with error conversion."""
        return self._call(method, request, timeout)


class JobClient(_Client):
    """Shared client of the job services. Subclasses name their RPC noun and modules."""

    noun: str = ""
    pb: ModuleType

    def _msg(self, pattern: str, **fields: Any) -> Any:
        return getattr(self.pb, pattern.format(self.noun))(**fields)

    def submit(self, spec: Any) -> common_pb2.Job:
        """Submits a job; returns it QUEUED.

        Raises:
            InvalidArgument: the spec is invalid; every problem is listed with its field.
        """
        return self._call(f"Submit{self.noun}Job", self._msg("Submit{}JobRequest", spec=spec)).job

    def get(self, job_id: str) -> tuple[common_pb2.Job, Any]:
        """Returns a job and its spec."""
        resp = self._call(f"Get{self.noun}Job", self._msg("Get{}JobRequest", job_id=job_id))
        return resp.job, resp.spec

    def list(
        self, states: list[int] | None = None, labels: dict[str, str] | None = None
    ) -> Iterator[common_pb2.Job]:
        """Iterates over jobs, newest first, across pages."""
        token = ""
        while True:
            resp = self._call(
                f"List{self.noun}Jobs",
                self._msg(
                    "List{}JobsRequest",
                    page=common_pb2.PageRequest(page_token=token),
                    filter=common_pb2.JobFilter(states=states or [], labels=labels or {}),
                ),
            )
            yield from resp.jobs
            token = resp.next_page_token
            if not token:
                return

    def cancel(self, job_id: str, reason: str = "") -> common_pb2.Job:
        """Cancels a queued or running job."""
        return self._call(
            f"Cancel{self.noun}Job", self._msg("Cancel{}JobRequest", job_id=job_id, reason=reason)
        ).job

    def watch(
        self, job_id: str, after_seq: int = 0, reconnect_for: float = 120.0
    ) -> Iterator[common_pb2.JobEvent]:
        """Yields the job's events with seq > `after_seq` until it ends.

        Survives restarts of the service: after UNAVAILABLE it reconnects (for up to
        `reconnect_for` seconds) asking for events after the last one it yielded.
        """
        last = after_seq
        down_since: float | None = None
        while True:
            request = self._msg("Watch{}JobRequest", job_id=job_id, after_seq=last)
            try:
                for resp in getattr(self.stub, f"Watch{self.noun}Job")(request):
                    down_since = None
                    last = resp.event.seq
                    yield resp.event
                return
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.UNAVAILABLE:
                    raise_for_rpc_error(err)
                down_since = down_since or time.monotonic()
                if time.monotonic() - down_since > reconnect_for:
                    raise_for_rpc_error(err)
                log.info("watch of %s interrupted; reconnecting after seq %d", job_id, last)
                time.sleep(0.5)

    def wait(self, job_id: str) -> common_pb2.Job:
        """Blocks until the job ends; returns its final state."""
        for _ in self.watch(job_id):
            pass
        return self.get(job_id)[0]


class TrainerClient(JobClient):
    """Client of the trainer service."""

    stub_class = trainer_pb2_grpc.TrainerServiceStub
    noun = "Train"
    pb = trainer_pb2

    def plan(self, spec: trainer_pb2.TrainJobSpec) -> trainer_pb2.PlanTrainJobResponse:
        """Validates a spec and estimates its memory and steps without running it."""
        return self._call("PlanTrainJob", trainer_pb2.PlanTrainJobRequest(spec=spec))


class QuantizerClient(JobClient):
    """Client of the quantizer service."""

    stub_class = quantizer_pb2_grpc.QuantizerServiceStub
    noun = "Quantize"
    pb = quantizer_pb2


class EvaluatorClient(JobClient):
    """Client of the evaluator service."""

    stub_class = evaluator_pb2_grpc.EvaluatorServiceStub
    noun = "Eval"
    pb = evaluator_pb2

    def report(self, job_id: str) -> evaluator_pb2.EvalReport:
        """Returns the report of a succeeded evaluation job."""
        return self._call("GetEvalReport", evaluator_pb2.GetEvalReportRequest(job_id=job_id)).report


class InferenceClient(_Client):
    """Client of the inference service."""

    stub_class = inference_pb2_grpc.InferenceServiceStub

    def generate(
        self, request: inference_pb2.GenerateRequest, timeout: float | None = None
    ) -> Iterator[inference_pb2.GenerateResponse]:
        """Streams the response chunks of one generation.

        Raises:
            NotFound: no model or adapter is served under `request.model`.
            InvalidArgument: bad input or sampling parameters, each named.
            Unavailable: the model is not ready or its engine stopped.
        """
        return self._stream("Generate", request, timeout)

    def stream_text(
        self,
        model: str,
        prompt: str | None = None,
        *,
        messages: Sequence[ChatMessageLike] | None = None,
        sampling: inference_pb2.SamplingParams | None = None,
        timeout: float | None = None,
    ) -> Iterator[str]:
        """Yields the text of a single completion as it is generated.

        Give either a raw `prompt` or chat `messages` (rendered with the model's template).
        """
        request = inference_pb2.GenerateRequest(model=model, sampling=sampling)
        if messages is not None:
            request.messages.CopyFrom(chat_messages(messages))
        else:
            request.prompt = prompt or ""
        for response in self.generate(request, timeout):
            for chunk in response.chunks:
                if chunk.text:
                    yield chunk.text

    def tokenize(
        self,
        model: str,
        text: str | None = None,
        *,
        messages: Sequence[ChatMessageLike] | None = None,
        add_generation_prompt: bool | None = None,
    ) -> inference_pb2.TokenizeResponse:
        """Tokenizes text, or a conversation rendered with the model's template."""
        request = inference_pb2.TokenizeRequest(model=model)
        if messages is not None:
            request.messages.CopyFrom(chat_messages(messages))
        else:
            request.text = text or ""
        if add_generation_prompt is not None:
            request.add_generation_prompt = add_generation_prompt
        return self._call("Tokenize", request)

    def list_models(self) -> list[inference_pb2.ServedModel]:
        """Models and adapters currently served."""
        return list(self._call("ListServedModels", inference_pb2.ListServedModelsRequest()).models)

    def load_model(
        self,
        ref: str | common_pb2.ModelRef,
        served_name: str = "",
        engine: inference_pb2.EngineOptions | None = None,
        timeout: float | None = 1800.0,
    ) -> inference_pb2.ServedModel:
        """Serves a registry version; returns once its engine is READY or FAILED.

        Raises:
            NotFound: the reference names no version.
            AlreadyExists: the served name is taken.
            InvalidArgument: bad options, or the version is an adapter.
        """
        request = inference_pb2.LoadModelRequest(
            ref=_ref(ref), served_name=served_name, engine=engine
        )
        return self._call("LoadModel", request, timeout).model

    def unload_model(self, served_name: str) -> None:
        """Stops a served model's engine (its adapters go too)."""
        self._call("UnloadModel", inference_pb2.UnloadModelRequest(served_name=served_name))

    def load_adapter(
        self,
        ref: str | common_pb2.ModelRef,
        served_name: str = "",
        base_served_name: str | None = None,
        timeout: float | None = 600.0,
    ) -> inference_pb2.ServedModel:
        """Hot-loads a registry ADAPTER version onto its base model's engine.

        Raises:
            FailedPrecondition: its base is not served, or was loaded without LoRA.
        """
        request = inference_pb2.LoadAdapterRequest(ref=_ref(ref), served_name=served_name)
        if base_served_name is not None:
            request.base_served_name = base_served_name
        return self._call("LoadAdapter", request, timeout).adapter

    def unload_adapter(self, served_name: str) -> None:
        """Removes an adapter once the requests running on it finish."""
        self._call(
            "UnloadAdapter", inference_pb2.UnloadAdapterRequest(served_name=served_name), None
        )


# A chat message as callers write it: a (role, content) pair or a {"role", "content"} dict.
ChatMessageLike = tuple[str, str] | Mapping[str, str]


def chat_messages(messages: Sequence[ChatMessageLike]) -> inference_pb2.ChatMessages:
    """Builds the protobuf conversation from (role, content) pairs or message dicts."""
    out = inference_pb2.ChatMessages()
    for message in messages:
        if isinstance(message, Mapping):
            added = out.messages.add(role=message["role"], content=message.get("content", ""))
            if message.get("name"):
                added.name = message["name"]
        else:
            role, content = message
            out.messages.add(role=role, content=content)
    return out
