"""The model catalog of `/v1/models`: the served models and adapters a key may use.

Only READY models are listed; a model a key may not use is invisible to it (404), as
OpenAI answers for models a key cannot see.
"""

from __future__ import annotations

import time

from forgeline.client import exceptions
from forgeline.client.aio import AsyncInferenceClient
from forgeline.gateway.api_errors import from_domain, model_not_found
from forgeline.gateway.keys import ApiKey
from forgeline.gateway.protocol import ModelCard, ModelList
from forgeline.v1 import inference_pb2


async def served_models(
    client: AsyncInferenceClient, key: ApiKey
) -> list[inference_pb2.ServedModel]:
    """The READY models and adapters that `key` may use, in load order.

    Raises:
        ApiError: the inference service could not list them (503 when unreachable).
    """
    try:
        models = await client.list_models()
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


async def model_list(client: AsyncInferenceClient, key: ApiKey) -> ModelList:
    """Every model `key` may use, as OpenAI's model list.

    Raises:
        ApiError: the inference service could not list them.
    """
    now = int(time.time())
    return ModelList(data=[model_card(m, now) for m in await served_models(client, key)])


async def find_model(client: AsyncInferenceClient, key: ApiKey, name: str) -> ModelCard:
    """The card of one model `key` may use.

    Raises:
        ApiError: 404 when no such model is served or open to `key`; as `served_models`.
    """
    for m in await served_models(client, key):
        if m.name == name:
            return model_card(m, int(time.time()))
    raise model_not_found(name)
