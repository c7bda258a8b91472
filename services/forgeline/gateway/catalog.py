"""The model catalog: `/v1/models` (the served models and adapters a key may use) and the
gateway's health, which follows the states of the served models.

Only READY models are listed; a model a key may not use is invisible to it (404), as
OpenAI answers for models a key cannot see. The gateway is unhealthy when the inference
service cannot be reached or any model it serves has FAILED (one still LOADING is named
but does not make the gateway unhealthy).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from forgeline.client import exceptions
from forgeline.client.aio import AsyncInferenceClient
from forgeline.gateway.api_errors import from_domain, model_not_found
from forgeline.gateway.capacity import retry_refused
from forgeline.gateway.keys import ApiKey
from forgeline.gateway.protocol import ModelCard, ModelList
from forgeline.v1 import inference_pb2

log = logging.getLogger(__name__)

# How long a listing may take, and how long a health check waits for one.
LIST_TIMEOUT_S = 10.0
HEALTH_TIMEOUT_S = 2.0


class ModelListing:
    """Lists the served models with at most one `ListServedModels` call in flight.

    Callers that ask while a call runs share it, so listing takes a single stream of the
    connection to the inference service however many clients ask (see `capacity`).

    Args:
        client: Returns the inference client (connected on first use).
    """

    def __init__(self, client: Callable[[], AsyncInferenceClient]):
        self._client = client
        self._call: asyncio.Future[list[inference_pb2.ServedModel]] | None = None

    async def fetch(self, timeout: float = LIST_TIMEOUT_S) -> list[inference_pb2.ServedModel]:
        """The served models and adapters, in load order.

        Raises:
            DeadlineExceeded: no answer within `timeout` seconds.
            ForgelineError: the call failed (Unavailable when unreachable, ...).
        """
        if self._call is None or self._call.done():
            client = self._client()
            call = asyncio.ensure_future(
                retry_refused(lambda: client.list_models(timeout=LIST_TIMEOUT_S))
            )
            # Retrieved here too, for a failure whose callers all stopped waiting.
            call.add_done_callback(lambda done: done.cancelled() or done.exception())
            self._call = call
        try:
            return await asyncio.wait_for(asyncio.shield(self._call), timeout)
        except TimeoutError:
            raise exceptions.DeadlineExceeded(
                f"the inference service did not list its models within {timeout:g}s"
            ) from None


async def served_models(listing: ModelListing, key: ApiKey) -> list[inference_pb2.ServedModel]:
    """The READY models and adapters that `key` may use, in load order.

    Raises:
        ApiError: the inference service could not list them (503 when unreachable).
    """
    try:
        models = await listing.fetch()
    except exceptions.ForgelineError as exc:
        raise from_domain(exc) from None
    return [
        m
        for m in models
        if m.state == inference_pb2.SERVED_MODEL_STATE_READY and key.allows(m.name)
    ]


def model_card(model: inference_pb2.ServedModel, created: int) -> ModelCard:
    """The OpenAI model object for a served model or adapter."""
    return ModelCard(
        id=model.name,
        created=created,
        root=f"{model.ref.name}:{model.version}" if model.ref.name else None,
        parent=model.parent or None,
        max_model_len=model.max_model_len or None,
    )


async def model_list(listing: ModelListing, key: ApiKey) -> ModelList:
    """Every model `key` may use, as OpenAI's model list.

    Raises:
        ApiError: the inference service could not list them.
    """
    now = int(time.time())
    return ModelList(data=[model_card(m, now) for m in await served_models(listing, key)])


async def find_model(listing: ModelListing, key: ApiKey, name: str) -> ModelCard:
    """The card of one model `key` may use.

    Raises:
        ApiError: 404 when no such model is served or open to `key`; as `served_models`.
    """
    for m in await served_models(listing, key):
        if m.name == name:
            return model_card(m, int(time.time()))
    raise model_not_found(name)


def _state(state: int) -> str:
    name = inference_pb2.ServedModelState.Name(state) if state else "UNSPECIFIED"
    return name.removeprefix("SERVED_MODEL_STATE_")


async def health(listing: ModelListing) -> tuple[int, dict[str, Any]]:
    """The gateway's health: an HTTP status and a JSON body.

    200 `{"status": "ok"}` while every served model is READY (models still loading are
    listed under `not_ready`); 503 `{"status": "unavailable", ...}` when the inference
    service cannot be reached, or when a served model has FAILED. Why a model failed goes
    to the log, not to this open endpoint.
    """
    try:
        models = await listing.fetch(timeout=HEALTH_TIMEOUT_S)
    except exceptions.ForgelineError as exc:
        log.warning("health: inference service unavailable: %s", exc)
        unreachable = isinstance(exc, exceptions.Unavailable | exceptions.DeadlineExceeded)
        reason = "cannot be reached" if unreachable else "refused the gateway's call"
        return 503, {"status": "unavailable", "reason": f"the inference service {reason}"}
    not_ready = [
        {"model": m.name, "state": _state(m.state)}
        for m in models
        if m.state != inference_pb2.SERVED_MODEL_STATE_READY
    ]
    failed = [m for m in models if m.state == inference_pb2.SERVED_MODEL_STATE_FAILED]
    for model in failed:
        log.warning("health: served model %s has FAILED: %s", model.name, model.error)
    body: dict[str, Any] = {"status": "unavailable" if failed else "ok"}
    if failed:
        body["reason"] = "served models have FAILED: " + ", ".join(m.name for m in failed)
    if not_ready:
        body["not_ready"] = not_ready
    return (503 if failed else 200), body
