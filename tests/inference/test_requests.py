"""Generate and Tokenize requests: protobuf form and validation."""

from __future__ import annotations

import pytest

from forgeline.client.exceptions import InvalidArgument
from forgeline.inference.requests import ChatMessage, GenerateRequest, TokenizeRequest
from forgeline.inference.sampling import SamplingParams
from forgeline.v1 import inference_pb2


def fields(exc: InvalidArgument) -> set[str]:
    return {v.field for v in exc.violations}


def test_generate_request_from_protobuf_and_validation():
    pb = inference_pb2.GenerateRequest(model="m", request_id="r1")
    pb.messages.messages.add(role="user", content="hi", name="bob")
    request = GenerateRequest.from_pb(pb)
    assert request.messages == (ChatMessage("user", "hi", "bob"),)
    assert request.add_generation_prompt is True and request.input_field == "messages"
    assert GenerateRequest.from_pb(request.to_pb()) == request
    pb.add_generation_prompt = False
    assert GenerateRequest.from_pb(pb).add_generation_prompt is False

    with pytest.raises(InvalidArgument) as err:
        GenerateRequest(model="", sampling=SamplingParams(top_p=5)).validate()
    assert fields(err.value) == {"model", "input", "sampling.top_p"}
    with pytest.raises(InvalidArgument) as err:
        GenerateRequest(model="m", messages=(ChatMessage("", "x"),)).validate()
    assert fields(err.value) == {"messages.messages[0].role"}
    GenerateRequest(model="m", prompt="").validate()  # an empty prompt is a prompt


def test_tokenize_request_maps_to_the_same_rendering_as_generate():
    pb = inference_pb2.TokenizeRequest(model="m", text="hello")
    request = TokenizeRequest.from_pb(pb)
    assert request.as_generate() == GenerateRequest(model="m", prompt="hello")
    with pytest.raises(InvalidArgument):
        TokenizeRequest(model="m").validate()
