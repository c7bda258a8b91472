"""The OpenAI-compatible HTTP gateway: a FastAPI app over the inference service's gRPC API.

Every generation is one server-streaming `Generate` call. The gateway waits for the
stream's first message before answering, so errors (unknown model, bad parameters, a
model that is not ready) get their proper HTTP status; after that it relays tokens as
server-sent events, or collects them into one JSON response. A client that disconnects
cancels the gRPC call, which aborts the request in the engine.

Requests pass, in order: the body-size limit (413), the API key (401), the key's model
allow-list (404, as OpenAI answers for models a key cannot see), the key's rate limits
(429 with `Retry-After`), then parameter validation (400). `/health` and `/metrics` are
open. Every response carries `X-Request-Id` (the client's, or a new one), which is also
passed to the inference service.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError

from forgeline.client import exceptions
from forgeline.client.aio import AsyncInferenceClient
from forgeline.client.channel import ChannelOptions
from forgeline.client.status import from_rpc_error
from forgeline.common.settings import ServiceName, Settings
from forgeline.gateway import convert
from forgeline.gateway.api_errors import ApiError, bad_request, from_domain, model_not_found
from forgeline.gateway.keys import ApiKey, KeyStore
from forgeline.gateway.limits import RateLimited, RateLimiter
from forgeline.gateway.metrics import GatewayMetrics
from forgeline.gateway.protocol import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    CompletionUsage,
    ModelCard,
    ModelList,
    OpenAIModel,
)
from forgeline.v1 import inference_pb2

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")
# Anonymous callers when no keys are configured: no allow-list, no limits.
OPEN_ACCESS = ApiKey(name="anonymous", sha256=b"")
SSE_DONE = b"data: [DONE]\n\n"


@dataclass(frozen=True)
class GatewayConfig:
    """What the gateway needs to run.

    Attributes:
        inference_address: ``host:port`` of the inference service.
        channel: Token and TLS for calls to it.
        keys: Accepted API keys; empty means open access.
        max_body_bytes: Largest request body (413 beyond).
    """

    inference_address: str
    # The OpenAI SDKs retry 503s themselves; retrying here too would multiply waits.
    channel: ChannelOptions = field(default_factory=lambda: ChannelOptions(retries=False))
    keys: KeyStore = field(default_factory=KeyStore)
    max_body_bytes: int = 2 * 1024 * 1024

    @classmethod
    def from_settings(cls, settings: Settings) -> GatewayConfig:
        """Builds the config from the `FORGELINE_*` settings.

        Raises:
            ValueError: the keys file is malformed (the message names the entry).
        """
        return cls(
            inference_address=settings.addresses[ServiceName.INFERENCE],
            channel=ChannelOptions(
                token=settings.token,
                tls=bool(settings.tls.ca_file),
                ca_file=settings.tls.ca_file,
                retries=False,
            ),
            keys=KeyStore.load(settings.gateway_keys_file, settings.gateway_api_keys),
            max_body_bytes=settings.gateway_max_body_bytes,
        )


def _error_response(error: ApiError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        error.body().model_dump(),
        status_code=error.status,
        headers={**error.headers, **(headers or {})},
    )


class RequestContext:
    """ASGI middleware: request ids and the body-size limit, for every HTTP request.

    A body announced larger than the limit is refused before it is read; a chunked body
    is counted as it arrives and refused once it passes the limit.
    """

    def __init__(self, app: Any, max_body_bytes: int):
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        """Handles one ASGI call."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ""
        length = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value.decode("latin-1")
            elif name == b"content-length":
                length = value
        if not _REQUEST_ID.fullmatch(request_id):
            request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        id_header = (REQUEST_ID_HEADER.encode(), request_id.encode())

        async def send_with_id(message: dict) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), id_header]
            await send(message)

        too_large = ApiError(
            413,
            f"the request body exceeds the gateway's limit of {self.max_body_bytes} bytes",
            code="request_too_large",
        )
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            await _error_response(too_large)(scope, receive, send_with_id)
            return
        received = 0

        async def counted_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise too_large
            return message

        await self.app(scope, counted_receive, send_with_id)


@dataclass
class _Outcome:
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


class Gateway:
    """The gateway's state: the inference client, keys, limits and metrics."""

    def __init__(self, config: GatewayConfig, client: AsyncInferenceClient | None = None):
        self.config = config
        self._client = client
        self.limiter = RateLimiter()
        self.metrics = GatewayMetrics()
        # Served names seen, so that only real model names become metric labels.
        self._known_models: set[str] = set()

    @property
    def client(self) -> AsyncInferenceClient:
        """The inference client, connected on first use (inside the server's event loop)."""
        if self._client is None:
            self._client = AsyncInferenceClient(self.config.inference_address, self.config.channel)
        return self._client

    async def close(self) -> None:
        """Closes the inference channel."""
        if self._client is not None:
            await self._client.close()

    # ------------------------------------------------------------------ access

    def authenticate(self, request: Request) -> ApiKey:
        """Returns the caller's key.

        Raises:
            ApiError: 401 when keys are required and the bearer key is missing or wrong.
        """
        if not self.config.keys.enabled:
            return OPEN_ACCESS
        header = request.headers.get("authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise ApiError(
                401,
                "You didn't provide an API key. Send it as 'Authorization: Bearer KEY'.",
                code="invalid_api_key",
            )
        key = self.config.keys.authenticate(presented.strip())
        if key is None:
            raise ApiError(401, "Incorrect API key provided.", code="invalid_api_key")
        return key

    def label(self, model: str) -> str:
        """The metric label for a model name: itself if it was ever served, else ''."""
        return model if model in self._known_models else ""

    def admit(self, key: ApiKey, model: str) -> dict[str, str]:
        """Checks the key's allow-list and rate limits; returns rate-limit headers.

        Raises:
            ApiError: 404 for a model outside the allow-list, 429 over a limit.
        """
        if not key.allows(model):
            raise model_not_found(model)
        try:
            return self.limiter.admit(key)
        except RateLimited as limited:
            self.metrics.rate_limited.labels(self.label(model), limited.limit).inc()
            raise ApiError(
                429, str(limited), limited.limit, None, "rate_limit_exceeded", limited.headers
            ) from None

    # ------------------------------------------------------------------ generation

    async def open_streams(
        self, requests: Sequence[inference_pb2.GenerateRequest], request_id: str
    ) -> list[tuple[grpc.aio.UnaryStreamCall, inference_pb2.GenerateResponse | None]]:
        """Starts one Generate call per request and waits for each one's first message.

        Raises:
            ApiError: the inference service refused a request (mapped to HTTP); every
                call is cancelled then.
        """
        metadata = ((REQUEST_ID_HEADER, request_id),)
        calls = [self.client.generate_call(r, metadata=metadata) for r in requests]
        try:
            firsts = await asyncio.gather(*(call.read() for call in calls))
        except grpc.aio.AioRpcError as err:
            for call in calls:
                call.cancel()
            raise self.rpc_error(err, requests[0].model) from None
        except BaseException:
            for call in calls:
                call.cancel()
            raise
        self._known_models.add(requests[0].model)
        return [
            (call, None if first is grpc.aio.EOF else first)
            for call, first in zip(calls, firsts, strict=True)
        ]

    def rpc_error(self, err: grpc.RpcError, model: str) -> ApiError:
        """The HTTP error for a failed gRPC call."""
        exc = from_rpc_error(err)
        if isinstance(exc, exceptions.ForgelineError):
            if isinstance(exc, exceptions.Unauthenticated):
                log.error("the inference service refused the gateway's token: %s", exc)
                return ApiError(500, "the gateway is misconfigured", "server_error")
            return from_domain(exc, model)
        if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return ApiError(504, "the inference service did not answer in time", "server_error")
        log.error("Generate failed: %s %s", err.code(), err.details())
        return ApiError(500, f"the inference service failed: {err.details()}", "server_error")

    async def messages(
        self,
        call: grpc.aio.UnaryStreamCall,
        first: inference_pb2.GenerateResponse | None,
    ) -> AsyncIterator[inference_pb2.GenerateResponse]:
        """The stream's messages, the already-read first one included."""
        if first is not None:
            yield first
        while (message := await call.read()) is not grpc.aio.EOF:
            yield message


def _merge(streams: Sequence[AsyncIterator[Any]]) -> AsyncIterator[tuple[int, Any]]:
    """Interleaves several async iterators as (index, item) in arrival order."""
    if len(streams) == 1:

        async def single() -> AsyncIterator[tuple[int, Any]]:
            async for item in streams[0]:
                yield 0, item

        return single()

    async def merged() -> AsyncIterator[tuple[int, Any]]:
        queue: asyncio.Queue = asyncio.Queue()
        done = object()

        async def pump(i: int, stream: AsyncIterator[Any]) -> None:
            try:
                async for item in stream:
                    await queue.put((i, item))
            except BaseException as exc:
                await queue.put((i, exc))
                return
            await queue.put((i, done))

        tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
        try:
            remaining = len(tasks)
            while remaining:
                i, item = await queue.get()
                if item is done:
                    remaining -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield i, item
        finally:
            for task in tasks:
                task.cancel()

    return merged()


async def _cancel_on_disconnect(request: Request, work: Awaitable[Response]) -> Response:
    """Runs `work`, cancelling it if the client disconnects first (aborting the engine)."""
    task = asyncio.ensure_future(work)

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        with_suppressed = asyncio.gather(task, return_exceptions=True)
        await with_suppressed
        return Response(status_code=499)
    return task.result()


def _dump(event: BaseModel) -> bytes:
    return b"data: " + event.model_dump_json().encode() + b"\n\n"


def _error_event(error: ApiError) -> bytes:
    return b"data: " + error.body().model_dump_json().encode() + b"\n\n"


async def _parse(request: Request, model_class: type[OpenAIModel]) -> Any:
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


def create_app(config: GatewayConfig, client: AsyncInferenceClient | None = None) -> FastAPI:
    """Builds the gateway app.

    Args:
        config: Inference address, keys and limits.
        client: An inference client to use instead of connecting to `config`'s address.
    """
    gateway = Gateway(config, client)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        await gateway.close()

    app = FastAPI(
        title="Forgeline gateway",
        summary="OpenAI-compatible API over the Forgeline inference service.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.gateway = gateway
    app.add_middleware(RequestContext, max_body_bytes=config.max_body_bytes)

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return _error_response(exc)

    @app.exception_handler(404)
    async def not_found(_request: Request, _exc: Exception) -> JSONResponse:
        return _error_response(ApiError(404, "no such endpoint", code="unknown_url"))

    @app.exception_handler(405)
    async def bad_method(_request: Request, _exc: Exception) -> JSONResponse:
        return _error_response(ApiError(405, "method not allowed", code="method_not_allowed"))

    @app.get("/health")
    async def health() -> Response:
        """200 when the inference service answers, 503 otherwise."""
        try:
            await gateway.client.list_models(timeout=2.0)
        except (exceptions.ForgelineError, grpc.RpcError) as exc:
            log.warning("health: inference service unavailable: %s", exc)
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/metrics")
    async def metrics() -> Response:
        """Prometheus metrics."""
        return Response(gateway.metrics.render(), media_type=gateway.metrics.content_type)

    async def served(key: ApiKey) -> list[inference_pb2.ServedModel]:
        try:
            models = await gateway.client.list_models()
        except exceptions.Unavailable as exc:
            raise ApiError(503, str(exc), "server_error", None, "engine_unavailable") from None
        except grpc.RpcError as err:
            raise gateway.rpc_error(err, "") from None
        return [
            m
            for m in models
            if m.state == inference_pb2.SERVED_MODEL_STATE_READY and key.allows(m.name)
        ]

    def card(m: inference_pb2.ServedModel, created: int) -> ModelCard:
        return ModelCard(
            id=m.name,
            created=created,
            root=f"{m.ref.name}:{m.version}" if m.ref.name else None,
            parent=m.parent or None,
            max_model_len=m.max_model_len or None,
        )

    @app.get("/v1/models")
    async def list_models(request: Request) -> Response:
        """The served models and adapters this key may use."""
        key = gateway.authenticate(request)
        now = int(time.time())
        body = ModelList(data=[card(m, now) for m in await served(key)])
        return Response(body.model_dump_json(), media_type="application/json")

    @app.get("/v1/models/{model:path}")
    async def get_model(model: str, request: Request) -> Response:
        """One served model."""
        key = gateway.authenticate(request)
        for m in await served(key):
            if m.name == model:
                return Response(
                    card(m, int(time.time())).model_dump_json(), media_type="application/json"
                )
        raise model_not_found(model)

    async def generate(
        request: Request,
        endpoint: str,
        model_class: type[OpenAIModel],
        to_grpc: Callable[[Any, str], list[inference_pb2.GenerateRequest]],
        respond: Callable[..., Any],
    ) -> Response:
        started = time.perf_counter()
        request_id = request.state.request_id
        status = 500
        model = ""
        key: ApiKey | None = None
        outcome = _Outcome()
        in_flight = None
        streamed = False

        def finish() -> None:
            label = gateway.label(model)
            if in_flight is not None:
                in_flight.dec()
            gateway.metrics.requests.labels(label, endpoint, str(status)).inc()
            gateway.metrics.latency.labels(label, endpoint).observe(time.perf_counter() - started)
            if outcome.first_token_at is not None:
                gateway.metrics.ttft.labels(label, endpoint).observe(
                    outcome.first_token_at - started
                )
            gateway.metrics.prompt_tokens.labels(label).inc(outcome.prompt_tokens)
            gateway.metrics.completion_tokens.labels(label).inc(outcome.completion_tokens)
            if key is not None:
                gateway.limiter.charge(key, outcome.charged_tokens)

        try:
            key = gateway.authenticate(request)
            body = await _parse(request, model_class)
            model = body.model
            in_flight = gateway.metrics.in_flight.labels(gateway.label(model))
            in_flight.inc()
            limit_headers = gateway.admit(key, model)
            engine_id = f"{'chatcmpl' if endpoint == 'chat' else 'cmpl'}-{uuid.uuid4().hex}"
            grpc_requests = to_grpc(body, engine_id)
            opened = await gateway.open_streams(grpc_requests, request_id)
            status = 200
            context = _Context(
                gateway,
                body,
                engine_id,
                int(time.time()),
                outcome,
                grpc_requests,
                [call for call, _ in opened],
            )
            streams = [gateway.messages(call, first) for call, first in opened]
            if body.stream:
                streamed = True
                return StreamingResponse(
                    _finally(respond(context, streams, stream=True), finish),
                    media_type="text/event-stream",
                    headers={**limit_headers, "Cache-Control": "no-cache"},
                )
            result = await _cancel_on_disconnect(request, respond(context, streams, stream=False))
            if isinstance(result, Response):
                status = result.status_code
                return result
            return Response(result, media_type="application/json", headers=limit_headers)
        except ApiError as exc:
            status = exc.status
            raise
        finally:
            if not streamed:
                finish()

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        """OpenAI Completions."""
        return await generate(
            request, "completions", CompletionRequest, convert.completion_requests, _completions
        )

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        """OpenAI Chat Completions."""
        return await generate(
            request,
            "chat",
            ChatCompletionRequest,
            lambda body, rid: [convert.chat_request(body, rid)],
            _chat,
        )

    return app


@dataclass
class _Context:
    """One generation request in flight."""

    gateway: Gateway
    body: Any
    id: str
    created: int
    outcome: _Outcome
    requests: list[inference_pb2.GenerateRequest]
    calls: list[grpc.aio.UnaryStreamCall]

    @property
    def include_usage(self) -> bool:
        options = self.body.stream_options
        return bool(options and options.include_usage)

    def cancel(self) -> None:
        for call in self.calls:
            call.cancel()


async def _finally(stream: AsyncIterator[bytes], callback: Callable[[], None]):
    try:
        async for item in stream:
            yield item
    finally:
        callback()


def _responses(
    context: _Context, streams: Sequence[AsyncIterator[inference_pb2.GenerateResponse]]
) -> AsyncIterator[tuple[int, inference_pb2.GenerateResponse]]:
    async def watched() -> AsyncIterator[tuple[int, inference_pb2.GenerateResponse]]:
        try:
            async for i, response in _merge(streams):
                context.outcome.see(response)
                yield i, response
        finally:
            context.cancel()

    return watched()


def _usage_event(context: _Context, event: BaseModel) -> bytes:
    outcome = context.outcome
    event.usage = CompletionUsage(
        completion_tokens=outcome.completion_tokens,
        prompt_tokens=outcome.prompt_tokens,
        total_tokens=outcome.prompt_tokens + outcome.completion_tokens,
    )
    return _dump(event)


def _completions(context: _Context, streams, stream: bool):
    body: CompletionRequest = context.body
    n = body.n or 1
    echo = [r.prompt for r in context.requests] if body.echo else []
    model = body.model

    if not stream:

        async def collect() -> bytes:
            acc = convert.Accumulator(n=n, prompts=len(streams))
            async for i, response in _responses(context, streams):
                acc.add(i, response, legacy=True)
            return acc.completion(context.id, context.created, model, echo).model_dump_json()

        return collect()

    async def events() -> AsyncIterator[bytes]:
        offsets: dict[int, int] = {}
        try:
            async for i, response in _responses(context, streams):
                for event in convert.completion_chunks(
                    response,
                    i,
                    n,
                    offsets,
                    context.id,
                    context.created,
                    model,
                    echo[i] if echo else "",
                ):
                    yield _dump(event)
            if context.include_usage:
                yield _usage_event(
                    context,
                    Completion(id=context.id, choices=[], created=context.created, model=model),
                )
        except grpc.aio.AioRpcError as err:
            yield _error_event(context.gateway.rpc_error(err, model))
        yield SSE_DONE

    return events()


def _chat(context: _Context, streams, stream: bool):
    body: ChatCompletionRequest = context.body
    with_logprobs = bool(body.logprobs)
    model = body.model

    if not stream:

        async def collect() -> bytes:
            acc = convert.Accumulator(n=body.n or 1)
            async for i, response in _responses(context, streams):
                acc.add(i, response, legacy=False)
            result = acc.chat_completion(context.id, context.created, model, with_logprobs)
            return result.model_dump_json()

        return collect()

    async def events() -> AsyncIterator[bytes]:
        started: set[int] = set()
        try:
            async for _, response in _responses(context, streams):
                for event in convert.chat_chunks(
                    response, started, context.id, context.created, model, with_logprobs
                ):
                    yield _dump(event)
            if context.include_usage:
                yield _usage_event(
                    context,
                    ChatCompletionChunk(
                        id=context.id, choices=[], created=context.created, model=model
                    ),
                )
        except grpc.aio.AioRpcError as err:
            yield _error_event(context.gateway.rpc_error(err, model))
        yield SSE_DONE

    return events()
