"""The OpenAI-compatible HTTP gateway: a FastAPI app over the inference service's gRPC API.

This module only builds the app and wires its routes; the work lives beside it:
`middleware` (request ids, body-size limit), `access` (keys, allow-lists, rate limits),
`generation` (completions and chat), `streaming` (streams to HTTP), `catalog` (the model
list) and `api_errors` (OpenAI's error shape).

Requests pass, in order: the body-size limit (413), the API key (401), the key's model
allow-list (404, as OpenAI answers for models a key cannot see), the key's rate limits
(429 with `Retry-After`), then parameter validation (400). `/health` and `/metrics` are
open. Every response carries `X-Request-Id` (the client's, or a new one), which is also
passed to the inference service.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from forgeline.client import exceptions
from forgeline.client.aio import AsyncInferenceClient
from forgeline.gateway import catalog
from forgeline.gateway.api_errors import ApiError, error_response
from forgeline.gateway.config import GatewayConfig
from forgeline.gateway.generation import GenerationHandler
from forgeline.gateway.middleware import RequestContext
from forgeline.gateway.state import Gateway

log = logging.getLogger(__name__)

# How long /health waits for the inference service.
HEALTH_TIMEOUT_S = 2.0


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

    @app.get("/health")
    async def health() -> Response:
        """200 when the inference service answers, 503 otherwise."""
        try:
            await gateway.client.list_models(timeout=HEALTH_TIMEOUT_S)
        except exceptions.ForgelineError as exc:
            log.warning("health: inference service unavailable: %s", exc)
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/metrics")
    async def metrics() -> Response:
        """Prometheus metrics."""
        return Response(gateway.metrics.render(), media_type=gateway.metrics.content_type)

    @app.get("/v1/models")
    async def list_models(request: Request) -> Response:
        """The served models and adapters this key may use."""
        key = gateway.access.authenticate(request)
        body = await catalog.model_list(gateway.client, key)
        return Response(body.model_dump_json(), media_type="application/json")

    @app.get("/v1/models/{model:path}")
    async def get_model(model: str, request: Request) -> Response:
        """One served model."""
        key = gateway.access.authenticate(request)
        card = await catalog.find_model(gateway.client, key, model)
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
