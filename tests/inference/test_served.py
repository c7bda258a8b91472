"""Served-model descriptions and their protobuf form."""

from __future__ import annotations

from forgeline.inference.served import ServedKind, ServedModel, ServedState
from forgeline.v1 import inference_pb2


def test_served_models_convert_to_protobuf():
    served = ServedModel(
        "ad", ServedKind.ADAPTER, "smol-lora@prod", 2, "smol", 2048, ServedState.READY
    ).to_pb()
    assert served.ref.alias == "prod" and served.parent == "smol"
    assert served.kind == inference_pb2.SERVED_MODEL_KIND_ADAPTER
