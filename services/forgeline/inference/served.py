"""Served names: what ListServedModels reports about each, and the core's record behind it.

Every model or adapter the service hosts is served under a name that OpenAI-style clients
put in their `model` field. `ServedModel` is the reported description; `ServedEntry` is the
core's mutable record of one name (its engine or adapter handle, its running requests).
"""

from __future__ import annotations

import asyncio
import enum
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from forgeline.client.exceptions import InvalidArgument
from forgeline.client.refs import RefError, parse_ref
from forgeline.inference.options import EngineOptions
from forgeline.v1 import inference_pb2, registry_pb2

if TYPE_CHECKING:
    from forgeline.inference.engine import AdapterHandle, Engine

# Served names appear in OpenAI `model` fields; keep them printable and short.
SERVED_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,127}")


class ServedKind(enum.Enum):
    """A model with its own engine, or an adapter on a base model's engine."""

    BASE = inference_pb2.SERVED_MODEL_KIND_BASE
    ADAPTER = inference_pb2.SERVED_MODEL_KIND_ADAPTER


class ServedState(enum.Enum):
    """Lifecycle of a served model."""

    LOADING = inference_pb2.SERVED_MODEL_STATE_LOADING
    READY = inference_pb2.SERVED_MODEL_STATE_READY
    FAILED = inference_pb2.SERVED_MODEL_STATE_FAILED


def check_served_name(name: str, field_name: str) -> None:
    """Checks that `name` can be served (printable, short, usable as an OpenAI model name).

    Raises:
        InvalidArgument: on `field_name`, the name is not valid.
    """
    if not SERVED_NAME.fullmatch(name):
        raise InvalidArgument(
            field_name,
            f"{name!r} is not a valid served name: use 1-128 letters, digits, '.', '_', "
            "'-' or '/', starting with a letter or digit",
        )


@dataclass(frozen=True)
class ServedModel:
    """A model or adapter as ListServedModels reports it."""

    name: str
    kind: ServedKind
    ref: str
    version: int = 0
    parent: str = ""
    max_model_len: int = 0
    state: ServedState = ServedState.LOADING
    error: str = ""
    running_requests: int = 0
    lora_enabled: bool = False
    follows: str = ""
    rollout_error: str = ""

    def to_pb(self) -> inference_pb2.ServedModel:
        """Returns the protobuf form."""
        try:
            ref = parse_ref(self.ref)
        except RefError:
            ref = None
        return inference_pb2.ServedModel(
            name=self.name,
            kind=self.kind.value,
            parent=self.parent,
            ref=ref,
            version=self.version,
            max_model_len=self.max_model_len,
            state=self.state.value,
            error=self.error,
            running_requests=self.running_requests,
            lora_enabled=self.lora_enabled,
            follows=self.follows,
            rollout_error=self.rollout_error,
        )


@dataclass
class ServedEntry:
    """The core's record of one served name."""

    name: str
    kind: ServedKind
    ref: str
    version: registry_pb2.Version | None = None
    state: ServedState = ServedState.LOADING
    error: str = ""
    # Request ids running on this name.
    running: set[str] = field(default_factory=set)
    # Bases: the engine, its options and the names of its adapters.
    engine: Engine | None = None
    options: EngineOptions = field(default_factory=EngineOptions)
    adapters: list[str] = field(default_factory=list)
    # Adapters: the base's served name and the engine's handle.
    base: str = ""
    handle: AdapterHandle | None = None
    drained: asyncio.Event = field(default_factory=asyncio.Event)
    # Bases loaded with `follow`: the `name@alias` followed (see `forgeline.inference.rollout`)
    # and why the last move to the alias's version failed.
    follows: str = ""
    rollout_error: str = ""

    def describe(self, max_model_len: int, running: int) -> ServedModel:
        """The entry as ListServedModels reports it.

        Args:
            max_model_len: The context length of the engine it runs on (0 when none runs).
            running: The requests to report as running on it.
        """
        return ServedModel(
            name=self.name,
            kind=self.kind,
            ref=self.ref,
            version=self.version.number if self.version else 0,
            parent=self.base,
            max_model_len=max_model_len,
            state=self.state,
            error=self.error,
            running_requests=running,
            lora_enabled=self.kind is ServedKind.BASE and self.options.enable_lora,
            follows=self.follows,
            rollout_error=self.rollout_error,
        )
