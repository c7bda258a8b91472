"""Serving: the models and adapters the inference service serves, deploying and removing
them, and the playground's chat, streamed through the gateway.

The playground speaks to the gateway's OpenAI API (`/v1/chat/completions`, `stream:
true`) like any application would, with the console's own gateway key added here, and
relays the gateway's Server-Sent Events to the browser unchanged. Closing the page closes
the gateway request, which aborts the generation.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from typing import Literal

import httpx
from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from forgeline.client.labels import label
from forgeline.console.auth import require_session
from forgeline.console.clients import Clients
from forgeline.console.config import ConsoleConfig
from forgeline.console.errors import ConsoleError
from forgeline.v1 import inference_pb2, registry_pb2

router = APIRouter(prefix="/api", dependencies=[Depends(require_session)])
LOAD_SECONDS = 1800.0


def _clients(request: Request) -> Clients:
    return request.app.state.clients


@router.get("/served")
def served(request: Request) -> dict:
    """Every served model and adapter with its state."""
    out = []
    for m in _clients(request).inference.list_models():
        out.append(
            {
                "name": m.name,
                "kind": label(inference_pb2.ServedModelKind, m.kind).lower(),
                "parent": m.parent,
                "ref": f"{m.ref.name}:{m.version}" if m.ref.name else "",
                "state": label(inference_pb2.ServedModelState, m.state).lower(),
                "error": m.error,
                "running_requests": m.running_requests,
                "max_model_len": m.max_model_len,
                "follows": m.follows,
                "rollout_error": m.rollout_error,
            }
        )
    return {"models": out}


class Deployment(BaseModel):
    """A registry version to serve: a model, or an adapter onto its served base."""

    ref: str = Field(min_length=1, max_length=300)
    served_name: str = Field("", max_length=200)


@router.post("/served")
def deploy(request: Request, body: Deployment) -> dict:
    """Serves a version (an ADAPTER is hot-loaded onto its base); returns once it is ready."""
    inference = _clients(request).inference
    version = _clients(request).registry.get_version(body.ref)
    if version.kind == registry_pb2.VERSION_KIND_ADAPTER:
        model = inference.load_adapter(body.ref, body.served_name)
    else:
        model = inference.load_model(body.ref, body.served_name, timeout=LOAD_SECONDS)
    state = label(inference_pb2.ServedModelState, model.state).lower()
    return {"name": model.name, "state": state, "error": model.error}


@router.delete("/served/{name:path}")
def undeploy(request: Request, name: str) -> dict:
    """Stops serving a model (with its adapters) or removes an adapter."""
    inference = _clients(request).inference
    found = [m for m in inference.list_models() if m.name == name]
    if not found:
        raise ConsoleError(404, f"nothing is served as {name!r}", code="not_found")
    if found[0].kind == inference_pb2.SERVED_MODEL_KIND_ADAPTER:
        inference.unload_adapter(name)
    else:
        inference.unload_model(name)
    return {"name": name}


class ChatMessage(BaseModel):
    """One message of the conversation."""

    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=100_000)


class Chat(BaseModel):
    """What the playground sends: the OpenAI request's fields it offers."""

    model: str = Field(min_length=1, max_length=200)
    messages: list[ChatMessage] = Field(min_length=1, max_length=200)
    max_tokens: int = Field(128, ge=1, le=8192)
    temperature: float = Field(0.7, ge=0, le=2)


@router.post("/chat")
async def chat(request: Request, body: Chat) -> StreamingResponse:
    """Streams a chat completion from the gateway as its Server-Sent Events."""
    config: ConsoleConfig = request.app.state.config
    headers = {"Authorization": f"Bearer {config.gateway_key}"} if config.gateway_key else {}
    payload = {**body.model_dump(), "stream": True}
    client = httpx.AsyncClient(
        base_url=config.gateway_url,
        timeout=httpx.Timeout(30, read=None),
        verify=ssl.create_default_context(cafile=config.gateway_ca) if config.gateway_ca else True,
    )
    try:
        upstream = await client.send(
            client.build_request("POST", "/v1/chat/completions", json=payload, headers=headers),
            stream=True,
        )
    except httpx.HTTPError as err:
        await client.aclose()
        raise ConsoleError(502, f"the gateway did not answer: {err}", code="gateway") from None
    if upstream.status_code != 200:
        text = (await upstream.aread()).decode(errors="replace")
        await upstream.aclose()
        await client.aclose()
        # A key the gateway refuses is the console's configuration, not the browser's session.
        status = 502 if upstream.status_code in (401, 403) else upstream.status_code
        raise ConsoleError(status, _gateway_message(text), code="gateway")

    async def relay() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        finally:
            await upstream.aclose()
            await client.aclose()

    return StreamingResponse(
        relay(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
    )


def _gateway_message(text: str) -> str:
    """The message of a gateway error body (OpenAI's shape), else the text itself."""
    import json

    try:
        return json.loads(text)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return text[:500]
