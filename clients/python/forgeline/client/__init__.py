"""Typed Python SDK for the Forgeline services.

Example:
    >>> from forgeline.client import connect_registry
    >>> registry = connect_registry("127.0.0.1:50051", token="...")
    >>> registry.get_version("smollm2-135m-instruct@production")
"""

from forgeline.client.channel import ChannelOptions, open_channel
from forgeline.client.errors import raise_for_rpc_error
from forgeline.client.refs import format_ref, parse_ref
from forgeline.client.services import (
    EvaluatorClient,
    InferenceClient,
    JobClient,
    QuantizerClient,
    RegistryClient,
    TrainerClient,
)

__all__ = [
    "ChannelOptions",
    "EvaluatorClient",
    "InferenceClient",
    "JobClient",
    "QuantizerClient",
    "RegistryClient",
    "TrainerClient",
    "format_ref",
    "open_channel",
    "parse_ref",
    "raise_for_rpc_error",
]
