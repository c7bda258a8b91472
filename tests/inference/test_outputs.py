"""Generation results: events and their protobuf form."""

from __future__ import annotations

from forgeline.inference.outputs import CompletionDelta, FinishReason, GenerateEvent, Usage
from forgeline.v1 import inference_pb2


def test_events_convert_to_protobuf():
    event = GenerateEvent(
        "r",
        (CompletionDelta(0, "hi", (5,), finish_reason=FinishReason.STOP, stop_reason="\n"),),
        usage=Usage(3, 1),
    )
    pb = event.to_pb()
    assert pb.chunks[0].finish_reason == inference_pb2.FINISH_REASON_STOP
    assert pb.usage.total_tokens == 4
    assert not GenerateEvent("r").to_pb().HasField("usage")
