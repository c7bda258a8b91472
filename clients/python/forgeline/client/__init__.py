"""Typed Python SDK for the Forgeline services.

Example:
    >>> from forgeline.client import RegistryClient, ChannelOptions
    >>> registry = RegistryClient("127.0.0.1:50051", ChannelOptions(token="..."))
    >>> registry.get_version("smollm2-135m-instruct@production")

The names below load on first use, so `forgeline.client.exceptions` and
`forgeline.client.refs` (which service cores import) never pull in grpc.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AsyncInferenceClient": "forgeline.client.aio",
    "ChannelOptions": "forgeline.client.channel",
    "EvaluatorClient": "forgeline.client.jobs",
    "GenerateStream": "forgeline.client.aio",
    "InferenceClient": "forgeline.client.inference",
    "JobClient": "forgeline.client.jobs",
    "QuantizerClient": "forgeline.client.jobs",
    "RegistryClient": "forgeline.client.registry",
    "TrainerClient": "forgeline.client.jobs",
    "VersionCache": "forgeline.client.cache",
    "format_ref": "forgeline.client.refs",
    "open_channel": "forgeline.client.channel",
    "parse_ref": "forgeline.client.refs",
    "raise_for_rpc_error": "forgeline.client.status",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'forgeline.client' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
