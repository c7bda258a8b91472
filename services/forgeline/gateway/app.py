"""The OpenAI-compatible HTTP gateway: a FastAPI app over the inference service's gRPC API.

This module only builds the app and wires its routes; the work lives beside it:
`middleware` (request ids, body-size limit), `request_body` (JSON bodies to request
models), `access` and `limits` (keys, allow-lists, rate limits), `token_budget` (what a
request may cost), `generation` (completions and chat), `accounting` (metrics and
settling with the key), `streaming` (streams to HTTP), `capacity` (streams to the
inference service), `catalog` (the model list and health) and `api_errors` (OpenAI's
error shape).

Requests pass, in order: the body-size limit (413), the API key (401), the key's model
allow-list (404, as OpenAI answers for models a key cannot see), parameter validation
(400), then the key's rate limits (429 with `Retry-After`). `/health` and `/metrics` are
open. Every response carries `X-Request-Id` (the client's, or a new one), which is also
passed to the inference service, as is the trace context of the request's span; each
request ends with an access line naming the caller's key (`middleware`). No input answers
with a traceback: a failure nothing else handled is logged and answered as a 500 in
OpenAI's error shape.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from forgeline.client.aio import AsyncInferenceClient
from forgeline.gateway import catalog
from forgeline.gateway.api_errors import ApiError, error_response
from forgeline.gateway.config import GatewayConfig
from forgeline.gateway.generation import GenerationHandler
from forgeline.gateway.middleware import RequestContext, note_caller
from forgeline.gateway.state import Gateway

log = logging.getLogger(__name__)


def create_app(config: GatewayConfig, client: AsyncInferenceClient | None = None) -> FastAPI:
    """Builds the gateway app.

    Args:
        config: Inference address, keys and limits.
        client: An inference client to use instead of connecting to `config`'s address.
    """
    gateway = Gateway(config, client)
    generation = GenerationHandler(gateway)

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
        return error_response(exc)

    @app.exception_handler(404)
    async def not_found(_request: Request, _exc: Exception) -> JSONResponse:
        return error_response(ApiError(404, "no such endpoint", code="unknown_url"))

    @app.exception_handler(405)
    async def bad_method(_request: Request, _exc: Exception) -> JSONResponse:
        return error_response(ApiError(405, "method not allowed", code="method_not_allowed"))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The server logs the traceback itself once this answer is sent.
        log.error(
            "request %s failed unexpectedly: %r", getattr(request.state, "request_id", "?"), exc
        )
        return error_response(
            ApiError(500, "the gateway failed to answer this request", "server_error")
        )

    @app.get("/health")
    async def health() -> Response:
        """200 while the inference service answers and no served model has FAILED."""
        status, body = await catalog.health(gateway.models)
        return JSONResponse(body, status_code=status)

    @app.get("/metrics")
    async def metrics() -> Response:
        """Prometheus metrics."""
        return Response(gateway.metrics.render(), media_type=gateway.metrics.content_type)

    @app.get("/v1/models")
    async def list_models(request: Request) -> Response:
        """The served models and adapters this key may use."""
        key = gateway.access.authenticate(request)
        note_caller(request, key.name)
        body = await catalog.model_list(gateway.models, key)
        return Response(body.model_dump_json(), media_type="application/json")

    @app.get("/v1/models/{model:path}")
    async def get_model(model: str, request: Request) -> Response:
        """One served model."""
        key = gateway.access.authenticate(request)
        note_caller(request, key.name, model)
        card = await catalog.find_model(gateway.models, key, model)
        return Response(card.model_dump_json(), media_type="application/json")

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        """OpenAI Completions."""
        return await generation.completions(request)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        """OpenAI Chat Completions."""
        return await generation.chat(request)

    return app
