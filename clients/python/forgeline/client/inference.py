"""Typed client of the inference service: one method per RPC, plus text streaming helpers."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import grpc

from forgeline.client.base import BaseClient, RefLike, as_ref
from forgeline.client.channel import ChannelOptions
from forgeline.v1 import inference_pb2, inference_pb2_grpc


class InferenceClient(BaseClient):
    """Client of the inference service."""

    def __init__(self, target: str | grpc.Channel, options: ChannelOptions | None = None):
        super().__init__(target, options)
        self._stub = inference_pb2_grpc.InferenceServiceStub(self._channel)

    def generate(
        self, request: inference_pb2.GenerateRequest, timeout: float | None = None
    ) -> Iterator[inference_pb2.GenerateResponse]:
        """Streams the response chunks of one generation.

        Raises:
            NotFound: no model or adapter is served under `request.model`.
            InvalidArgument: bad input or sampling parameters, each named.
            Unavailable: the model is not ready or its engine stopped.
        """
        return self._server_stream(self._stub.Generate, request, timeout)

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
        return self._unary(self._stub.Tokenize, request)

    def list_models(self) -> list[inference_pb2.ServedModel]:
        """Models and adapters currently served."""
        request = inference_pb2.ListServedModelsRequest()
        return list(self._unary(self._stub.ListServedModels, request).models)

    def load_model(
        self,
        ref: RefLike,
        served_name: str = "",
        engine: inference_pb2.EngineOptions | None = None,
        timeout: float | None = 1800.0,
        follow: bool = False,
    ) -> inference_pb2.ServedModel:
        """Serves a registry version; returns once its engine is READY or FAILED.

        With `follow` (`ref` must be `name@alias`), the service then moves the served name
        to each version the alias points at, without failing requests; the model's
        `follows` and `rollout_error` report it.

        Raises:
            NotFound: the reference names no version.
            AlreadyExists: the served name is taken.
            InvalidArgument: bad options, the version is an adapter, or `follow` without
                an alias.
        """
        request = inference_pb2.LoadModelRequest(
            ref=as_ref(ref), served_name=served_name, engine=engine, follow=follow
        )
        return self._unary(self._stub.LoadModel, request, timeout).model

    def unload_model(self, served_name: str) -> None:
        """Stops a served model's engine (its adapters go too)."""
        request = inference_pb2.UnloadModelRequest(served_name=served_name)
        self._unary(self._stub.UnloadModel, request)

    def load_adapter(
        self,
        ref: RefLike,
        served_name: str = "",
        base_served_name: str | None = None,
        timeout: float | None = 600.0,
    ) -> inference_pb2.ServedModel:
        """Hot-loads a registry ADAPTER version onto its base model's engine.

        Raises:
            FailedPrecondition: its base is not served, or was loaded without LoRA.
        """
        request = inference_pb2.LoadAdapterRequest(ref=as_ref(ref), served_name=served_name)
        if base_served_name is not None:
            request.base_served_name = base_served_name
        return self._unary(self._stub.LoadAdapter, request, timeout).adapter

    def unload_adapter(self, served_name: str) -> None:
        """Removes an adapter once the requests running on it finish."""
        request = inference_pb2.UnloadAdapterRequest(served_name=served_name)
        self._unary(self._stub.UnloadAdapter, request, None)


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
