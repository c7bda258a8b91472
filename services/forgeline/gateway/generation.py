"""The generation endpoints, `/v1/completions` and `/v1/chat/completions`.

Every generation is one server-streaming `Generate` call per prompt. The handler waits for
each stream's first message before answering, so errors (unknown model, bad parameters, a
model that is not ready) get their proper HTTP status; after that it relays tokens as
server-sent events, or collects them into one JSON response. A failure after the first
message ends an event stream with an error event. A client that disconnects cancels the
streams, which aborts the requests in the engine.

Requests pass, in order: the API key (401), the key's model allow-list (404), the key's
rate limits (429), then parameter validation (400). Every request is counted in the
metrics and charged to its key, whatever its outcome.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from prometheus_client import Gauge
from pydantic import BaseModel, ValidationError

from forgeline.client import exceptions
from forgeline.client.aio import GenerateStream
from forgeline.gateway import convert
from forgeline.gateway.api_errors import ApiError, bad_request, from_domain
from forgeline.gateway.keys import ApiKey
from forgeline.gateway.middleware import REQUEST_ID_HEADER
from forgeline.gateway.protocol import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    CompletionUsage,
    OpenAIModel,
)
from forgeline.gateway.state import Gateway
from forgeline.gateway.streaming import (
    SSE_DONE,
    cancel_on_disconnect,
    merge,
    open_streams,
    sse_error,
    sse_event,
    then,
)
from forgeline.v1 import inference_pb2

log = logging.getLogger(__name__)

ToRequests = Callable[[Any, str], list[inference_pb2.GenerateRequest]]


async def parse_body(request: Request, model_class: type[OpenAIModel]) -> Any:
    """Reads and validates a JSON body; unknown fields are accepted and logged.

    Raises:
        ApiError: 400 naming the first invalid field, or saying the body is not JSON.
    """
    try:
        data = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise bad_request(f"the body is not valid JSON: {exc}") from None
    try:
        parsed = model_class.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        raise bad_request(f"{param}: {first['msg']}" if param else first["msg"], param) from None
    unknown = parsed.unknown_fields()
    if unknown:
        log.info("ignoring unknown fields %s in a %s", unknown, model_class.__name__)
    return parsed


@dataclass
class _Usage:
    """What one generation request used, for limits and metrics."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    # Tokens relayed so far; what a request cut short is charged when no usage arrived.
    seen_tokens: int = 0
    first_token_at: float | None = None

    def see(self, response: inference_pb2.GenerateResponse) -> None:
        """Records one stream message."""
        if self.first_token_at is None and response.chunks:
            self.first_token_at = time.perf_counter()
        for chunk in response.chunks:
            self.seen_tokens += len(chunk.token_ids)
        if response.HasField("usage"):
            self.prompt_tokens += response.usage.prompt_tokens
            self.completion_tokens += response.usage.completion_tokens

    @property
    def charged_tokens(self) -> int:
        """Prompt plus generated tokens, counting a cut-short stream's tokens as seen."""
        return self.prompt_tokens + max(self.completion_tokens, self.seen_tokens)


@dataclass
class _Record:
    """How one request is accounted: its metrics, and the tokens charged to its key."""

    gateway: Gateway
    endpoint: str
    started: float = field(default_factory=time.perf_counter)
    # A request that fails before its status is known was a server error.
    status: int = 500
    model: str = ""
    key: ApiKey | None = None
    usage: _Usage = field(default_factory=_Usage)
    in_flight: Gauge | None = None

    def begin(self, model: str) -> None:
        """Counts the request as in flight for `model`."""
        self.model = model
        self.in_flight = self.gateway.metrics.in_flight.labels(self.gateway.metrics.label(model))
        self.in_flight.inc()

    def finish(self) -> None:
        """Records the finished request in the metrics and charges its key."""
        metrics = self.gateway.metrics
        label = metrics.label(self.model)
        if self.in_flight is not None:
            self.in_flight.dec()
        metrics.requests.labels(label, self.endpoint, str(self.status)).inc()
        metrics.latency.labels(label, self.endpoint).observe(time.perf_counter() - self.started)
        if self.usage.first_token_at is not None:
            metrics.ttft.labels(label, self.endpoint).observe(
                self.usage.first_token_at - self.started
            )
        metrics.prompt_tokens.labels(label).inc(self.usage.prompt_tokens)
        metrics.completion_tokens.labels(label).inc(self.usage.completion_tokens)
        if self.key is not None:
            self.gateway.access.charge(self.key, self.usage.charged_tokens)


@dataclass
class _Generation:
    """One generation request whose streams are open."""

    body: Any
    id: str
    created: int
    usage: _Usage
    requests: list[inference_pb2.GenerateRequest]
    streams: list[GenerateStream]

    @property
    def include_usage(self) -> bool:
        options = self.body.stream_options
        return bool(options and options.include_usage)

    async def responses(self) -> AsyncIterator[tuple[int, inference_pb2.GenerateResponse]]:
        """(prompt index, message) in arrival order; every stream is cancelled at the end."""
        try:
            async for i, response in merge(self.streams):
                self.usage.see(response)
                yield i, response
        finally:
            for stream in self.streams:
                stream.cancel()

    def usage_event(self, event: BaseModel) -> bytes:
        """The closing event that carries the usage (`stream_options.include_usage`)."""
        event.usage = CompletionUsage(
            completion_tokens=self.usage.completion_tokens,
            prompt_tokens=self.usage.prompt_tokens,
            total_tokens=self.usage.prompt_tokens + self.usage.completion_tokens,
        )
        return sse_event(event)


class GenerationHandler:
    """Answers the generation endpoints (completions and chat) of one gateway.

    Args:
        gateway: The inference client, access control and metrics.
    """

    def __init__(self, gateway: Gateway):
        self.gateway = gateway

    async def completions(self, request: Request) -> Response:
        """OpenAI Completions.

        Raises:
            ApiError: the request was refused (by the gateway or the inference service).
        """
        return await self._generate(
            request,
            "completions",
            "cmpl",
            CompletionRequest,
            convert.completion_requests,
            _completion_answer,
        )

    async def chat(self, request: Request) -> Response:
        """OpenAI Chat Completions.

        Raises:
            ApiError: the request was refused (by the gateway or the inference service).
        """
        return await self._generate(
            request,
            "chat",
            "chatcmpl",
            ChatCompletionRequest,
            lambda body, rid: [convert.chat_request(body, rid)],
            _chat_answer,
        )

    async def _generate(
        self,
        request: Request,
        endpoint: str,
        id_prefix: str,
        model_class: type[OpenAIModel],
        to_requests: ToRequests,
        answer: Callable[[_Generation, bool], Any],
    ) -> Response:
        gateway = self.gateway
        record = _Record(gateway, endpoint)
        streamed = False
        try:
            record.key = gateway.access.authenticate(request)
            body = await parse_body(request, model_class)
            record.begin(body.model)
            limit_headers = gateway.access.admit(record.key, body.model)
            engine_id = f"{id_prefix}-{uuid.uuid4().hex}"
            engine_requests = to_requests(body, engine_id)
            metadata = ((REQUEST_ID_HEADER, request.state.request_id),)
            try:
                streams = await open_streams(gateway.client, engine_requests, metadata)
            except exceptions.ForgelineError as exc:
                raise from_domain(exc, body.model) from None
            gateway.metrics.saw_served(body.model)
            record.status = 200
            generation = _Generation(
                body, engine_id, int(time.time()), record.usage, engine_requests, streams
            )
            if body.stream:
                streamed = True
                return StreamingResponse(
                    then(answer(generation, True), record.finish),
                    media_type="text/event-stream",
                    headers={**limit_headers, "Cache-Control": "no-cache"},
                )
            try:
                result = await cancel_on_disconnect(request, answer(generation, False))
            except exceptions.ForgelineError as exc:
                raise from_domain(exc, body.model) from None
            if isinstance(result, Response):
                record.status = result.status_code
                return result
            return Response(result, media_type="application/json", headers=limit_headers)
        except ApiError as exc:
            record.status = exc.status
            raise
        finally:
            if not streamed:
                record.finish()


def _completion_answer(generation: _Generation, stream: bool) -> Any:
    """The /v1/completions answer: a coroutine of the JSON body, or the event stream."""
    body: CompletionRequest = generation.body
    n = body.n or 1
    echo = [r.prompt for r in generation.requests] if body.echo else []
    model = body.model

    if not stream:

        async def collect() -> bytes:
            acc = convert.Accumulator(n=n, prompts=len(generation.streams))
            async with aclosing(generation.responses()) as responses:
                async for i, response in responses:
                    acc.add(i, response, legacy=True)
            completion = acc.completion(generation.id, generation.created, model, echo)
            return completion.model_dump_json()

        return collect()

    async def events() -> AsyncIterator[bytes]:
        offsets: dict[int, int] = {}
        try:
            async with aclosing(generation.responses()) as responses:
                async for i, response in responses:
                    for event in convert.completion_chunks(
                        response,
                        i,
                        n,
                        offsets,
                        generation.id,
                        generation.created,
                        model,
                        echo[i] if echo else "",
                    ):
                        yield sse_event(event)
            if generation.include_usage:
                yield generation.usage_event(
                    Completion(
                        id=generation.id, choices=[], created=generation.created, model=model
                    )
                )
        except exceptions.ForgelineError as exc:
            yield sse_error(from_domain(exc, model))
        yield SSE_DONE

    return events()


def _chat_answer(generation: _Generation, stream: bool) -> Any:
    """The /v1/chat/completions answer: a coroutine of the JSON body, or the event stream."""
    body: ChatCompletionRequest = generation.body
    with_logprobs = bool(body.logprobs)
    model = body.model

    if not stream:

        async def collect() -> bytes:
            acc = convert.Accumulator(n=body.n or 1)
            async with aclosing(generation.responses()) as responses:
                async for i, response in responses:
                    acc.add(i, response, legacy=False)
            result = acc.chat_completion(generation.id, generation.created, model, with_logprobs)
            return result.model_dump_json()

        return collect()

    async def events() -> AsyncIterator[bytes]:
        started: set[int] = set()
        try:
            async with aclosing(generation.responses()) as responses:
                async for _, response in responses:
                    for event in convert.chat_chunks(
                        response, started, generation.id, generation.created, model, with_logprobs
                    ):
                        yield sse_event(event)
            if generation.include_usage:
                yield generation.usage_event(
                    ChatCompletionChunk(
                        id=generation.id, choices=[], created=generation.created, model=model
                    )
                )
        except exceptions.ForgelineError as exc:
            yield sse_error(from_domain(exc, model))
        yield SSE_DONE

    return events()
