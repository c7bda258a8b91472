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
    "EvaluatorClient": "forgeline.client.services",
    "GenerateStream": "forgeline.client.aio",
    "InferenceClient": "forgeline.client.services",
    "JobClient": "forgeline.client.services",
    "QuantizerClient": "forgeline.client.services",
    "RegistryClient": "forgeline.client.services",
    "TrainerClient": "forgeline.client.services",
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
