"""The generation endpoints, `/v1/completions` and `/v1/chat/completions`.

Every generation is one server-streaming `Generate` call per prompt. The handler waits for
each stream's first message before answering, so errors (unknown model, bad parameters, a
model that is not ready) get their proper HTTP status; after that it relays tokens as
server-sent events, or collects them into one JSON response. A failure after the first
message ends an event stream with an error event. A client that disconnects, at any
point, cancels the streams, which aborts the requests in the engine.

Requests pass, in order: the API key (401), the body (400), the key's model allow-list
(404), the request's fan-out (400 beyond `max_generations_per_request`), parameter
validation (400), then the key's rate limits (429), which reserve every generation and,
for a key with a token limit, the request's token bound (`token_budget`). Every request
is counted in the metrics and settled with its key, whatever its outcome (`accounting`).

Every response and stream event carries the registry version that answered as OpenAI's
`system_fingerprint`, in the registry's own `name:N` form (e.g. `law:2`), taken from the
first message of the Generate stream. It changes when a model deployed with `--follow`
moves to a new version; a multi-prompt completion answered across such a move lists each
version once, in prompt order, joined by commas.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel

from forgeline.client import exceptions
from forgeline.client.aio import GenerateStream
from forgeline.gateway import convert, token_budget
from forgeline.gateway.accounting import RequestRecord, Usage
from forgeline.gateway.api_errors import ApiError, from_domain
from forgeline.gateway.limits import Reservation
from forgeline.gateway.middleware import REQUEST_ID_HEADER, note_caller
from forgeline.gateway.protocol import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    CompletionUsage,
    OpenAIModel,
)
from forgeline.gateway.request_body import parse_body
from forgeline.gateway.state import Gateway
from forgeline.gateway.streaming import (
    SSE_DONE,
    EventStream,
    cancel_on_disconnect,
    merge,
    open_streams,
    sse_error,
    sse_event,
)
from forgeline.v1 import inference_pb2

log = logging.getLogger(__name__)

ToRequests = Callable[[Any, str], list[inference_pb2.GenerateRequest]]


@dataclass
class _Generation:
    """One generation request whose streams are open."""

    body: Any
    id: str
    created: int
    usage: Usage
    requests: list[inference_pb2.GenerateRequest]
    streams: list[GenerateStream]
    # The versions that answered (`system_fingerprint`); None if the service named none.
    fingerprint: str | None = None

    @property
    def include_usage(self) -> bool:
        options = self.body.stream_options
        return bool(options and options.include_usage)

    async def responses(self) -> AsyncIterator[tuple[int, inference_pb2.GenerateResponse]]:
        """(prompt index, message) in arrival order; every stream is cancelled at the end."""
        try:
            async for i, response in merge(self.streams):
                self.usage.see(i, response)
                yield i, response
        finally:
            self.cancel()

    def cancel(self) -> None:
        """Cancels every stream still running (the engine aborts their requests)."""
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

    async def _admit(
        self, record: RequestRecord, body: Any, requests: list[inference_pb2.GenerateRequest]
    ) -> Reservation:
        """Reserves the request's generations, and its token bound for a key with a token
        limit (measured first, which asks the inference service to tokenize its prompts).

        Raises:
            ApiError: 429 over a limit, 503 when the limits cannot be checked; the
                inference service's refusal to tokenize.
        """
        assert record.key is not None
        generations = sum(r.sampling.n or 1 for r in requests)
        if not record.key.tokens_per_minute:
            return await self.gateway.access.admit(record.key, body.model, generations)
        await self.gateway.streams.acquire(len(requests))
        try:
            bound = await token_budget.estimate(self.gateway.client, requests)
        except exceptions.ForgelineError as exc:
            raise from_domain(exc, body.model) from None
        finally:
            self.gateway.streams.release(len(requests))
        record.prompt_estimates = bound.prompt_tokens
        return await self.gateway.access.admit(
            record.key, body.model, generations, bound.total, bound.bounded
        )

    async def _start(
        self,
        record: RequestRecord,
        body: Any,
        requests: list[inference_pb2.GenerateRequest],
        metadata: tuple[tuple[str, str], ...],
    ) -> list[GenerateStream]:
        """Admits the request, waits for free streams to the inference service and opens
        one per prompt, returning once each has its first message.

        Raises:
            ApiError: 429 over a limit; the inference service refused the request.
        """
        record.reservation = await self._admit(record, body, requests)
        await self.gateway.streams.acquire(len(requests))
        record.slots = self.gateway.streams, len(requests)
        # From here the engine is asked to work: a client that leaves is charged.
        record.started_generating = True
        try:
            return await open_streams(self.gateway.client, requests, metadata)
        except exceptions.ForgelineError as exc:
            record.started_generating = False
            raise from_domain(exc, body.model) from None

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
        config = gateway.config
        record = RequestRecord(gateway, endpoint)
        streamed = False
        try:
            record.key = gateway.access.authenticate(request)
            note_caller(request, record.key.name)
            body = await parse_body(request, model_class)
            note_caller(request, record.key.name, body.model)
            record.begin(body.model)
            gateway.access.allow(record.key, body.model)
            token_budget.check_fan_out(
                body, config.max_generations_per_request, gateway.streams.limit
            )
            engine_id = f"{id_prefix}-{uuid.uuid4().hex}"
            engine_requests = to_requests(body, engine_id)
            metadata = ((REQUEST_ID_HEADER, request.state.request_id),)
            # A client that leaves while it waits (for streams, or for the first tokens)
            # leaves the queue and aborts what it started.
            streams = await cancel_on_disconnect(
                request, self._start(record, body, engine_requests, metadata)
            )
            if isinstance(streams, Response):
                record.status = streams.status_code
                return streams
            gateway.metrics.saw_served(body.model)
            record.status = 200
            generation = _Generation(
                body,
                engine_id,
                int(time.time()),
                record.usage,
                engine_requests,
                streams,
                await answered_by(streams),
            )
            limit_headers = record.reservation.headers if record.reservation else {}
            if body.stream:

                def close() -> None:
                    generation.cancel()
                    record.finish()

                streamed = True
                return EventStream(answer(generation, True), close, limit_headers)
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


async def answered_by(streams: list[GenerateStream]) -> str | None:
    """The versions named by the streams' first messages (already read), comma-joined."""
    firsts = [await stream.first() for stream in streams]
    versions = dict.fromkeys(f.model_version for f in firsts if f and f.model_version)
    return ",".join(versions) or None


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
            completion.system_fingerprint = generation.fingerprint
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
                        event.system_fingerprint = generation.fingerprint
                        yield sse_event(event)
            if generation.include_usage:
                yield generation.usage_event(
                    Completion(
                        id=generation.id,
                        choices=[],
                        created=generation.created,
                        model=model,
                        system_fingerprint=generation.fingerprint,
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
            result.system_fingerprint = generation.fingerprint
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
                        event.system_fingerprint = generation.fingerprint
                        yield sse_event(event)
            if generation.include_usage:
                yield generation.usage_event(
                    ChatCompletionChunk(
                        id=generation.id,
                        choices=[],
                        created=generation.created,
                        model=model,
                        system_fingerprint=generation.fingerprint,
                    )
                )
        except exceptions.ForgelineError as exc:
            yield sse_error(from_domain(exc, model))
        yield SSE_DONE

    return events()
