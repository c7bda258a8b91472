"""OpenAI requests to Generate requests and Generate streams to OpenAI responses."""

from __future__ import annotations

import pytest

from forgeline.client import exceptions
from forgeline.gateway import convert
from forgeline.gateway.api_errors import ApiError, from_domain
from forgeline.gateway.protocol import ChatCompletionRequest, CompletionRequest
from forgeline.v1 import inference_pb2


def completion(**fields) -> CompletionRequest:
    return CompletionRequest.model_validate({"model": "m", "prompt": "hi", **fields})


def chat(**fields) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}
    )


def test_completion_parameters_map_to_sampling():
    [req] = convert.completion_requests(
        completion(
            max_tokens=5,
            temperature=0,
            stop="\n",
            seed=7,
            logprobs=2,
            top_k=-1,
            repetition_penalty=1.0,
            ignore_eos=True,
            logit_bias={"42": -100},
        ),
        "cmpl-1",
    )
    s = req.sampling
    assert req.prompt == "hi" and req.request_id == "cmpl-1"
    assert (s.max_tokens, s.temperature, list(s.stop), s.seed, s.logprobs) == (5, 0, ["\n"], 7, 2)
    assert s.top_k == 0 and s.repetition_penalty == 1.0 and s.ignore_eos
    assert dict(s.logit_bias) == {42: -100}
    assert not s.HasField("top_p")  # unset stays unset: the model's default applies


def test_completion_defaults_and_batches():
    [req] = convert.completion_requests(completion(), "c")
    assert req.sampling.max_tokens == 16 and req.sampling.n == 1  # OpenAI's defaults
    reqs = convert.completion_requests(completion(prompt=["a", "b"]), "c")
    assert [(r.prompt, r.request_id) for r in reqs] == [("a", "c-0"), ("b", "c-1")]
    [tokens] = convert.completion_requests(completion(prompt=[1, 2, 3]), "c")
    assert list(tokens.prompt_token_ids.ids) == [1, 2, 3]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"suffix": "x"}, "suffix"),
        ({"best_of": 3}, "best_of"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"stop": [""]}, "stop"),
        ({"logit_bias": {"a": 1}}, "logit_bias"),
        ({"echo": True, "prompt": [1, 2]}, "echo"),
    ],
)
def test_unsupported_completion_fields_are_400s_naming_the_field(fields, param):
    with pytest.raises(ApiError) as err:
        convert.completion_requests(completion(**fields), "c")
    assert (err.value.status, err.value.param) == (400, param)


def test_chat_request_maps_messages_and_token_limits():
    req = convert.chat_request(
        chat(
            messages=[
                {"role": "developer", "content": "be brief"},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                    "name": "u",
                },
                {"role": "assistant", "content": None},
            ],
            max_tokens=9,
            max_completion_tokens=4,
            logprobs=True,
            top_logprobs=3,
        ),
        "chatcmpl-1",
    )
    roles = [(m.role, m.content) for m in req.messages.messages]
    assert roles == [("system", "be brief"), ("user", "a\nb"), ("assistant", "")]
    assert req.messages.messages[1].name == "u"
    assert req.sampling.max_tokens == 4  # max_completion_tokens wins
    assert req.sampling.logprobs == 3
    assert convert.chat_request(chat(logprobs=True), "x").sampling.logprobs == 0
    assert not convert.chat_request(chat(), "x").sampling.HasField("logprobs")


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [{"type": "function"}]}, "tools"),
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages[0].content",
        ),
    ],
)
def test_unsupported_chat_fields_are_400s_naming_the_field(fields, param):
    with pytest.raises(ApiError) as err:
        convert.chat_request(chat(**fields), "c")
    assert (err.value.status, err.value.param) == (400, param)


def test_unknown_fields_are_kept_for_logging():
    assert completion(frobnicate=1).unknown_fields() == ["frobnicate"]


def response(index: int, text: str, finish=None, usage=None, logprob=None):
    chunk = inference_pb2.CompletionChunk(index=index, text=text, token_ids=[1])
    if finish is not None:
        chunk.finish_reason = finish
    if logprob is not None:
        chunk.logprobs.add(
            token_id=1,
            token=text,
            logprob=logprob,
            top_logprobs=[inference_pb2.TopLogprob(token_id=1, token=text, logprob=logprob)],
        )
    out = inference_pb2.GenerateResponse(request_id="r", chunks=[chunk])
    if usage:
        out.usage.CopyFrom(inference_pb2.Usage(prompt_tokens=usage[0], completion_tokens=usage[1]))
    return out


def test_accumulated_completion_has_openai_shape():
    acc = convert.Accumulator(n=1, prompts=2)
    acc.add(0, response(0, "Hel", logprob=-0.5), legacy=True)
    acc.add(0, response(0, "lo", inference_pb2.FINISH_REASON_STOP, (3, 2), -0.25), legacy=True)
    acc.add(1, response(0, "x", inference_pb2.FINISH_REASON_LENGTH, (4, 1)), legacy=True)
    body = acc.completion("cmpl-1", 1, "m").model_dump()
    assert body["object"] == "text_completion"
    assert [(c["index"], c["text"], c["finish_reason"]) for c in body["choices"]] == [
        (0, "Hello", "stop"),
        (1, "x", "length"),
    ]
    assert body["choices"][0]["logprobs"] == {
        "text_offset": [0, 3],
        "token_logprobs": [-0.5, -0.25],
        "tokens": ["Hel", "lo"],
        "top_logprobs": [{"Hel": -0.5}, {"lo": -0.25}],
    }
    assert body["usage"] == {"completion_tokens": 3, "prompt_tokens": 7, "total_tokens": 10}


def test_chat_stream_events_carry_the_role_first():
    started: set[int] = set()
    first = convert.chat_chunks(response(0, "Hi"), started, "id", 1, "m", False)
    last = convert.chat_chunks(
        response(0, "!", inference_pb2.FINISH_REASON_STOP), started, "id", 1, "m", False
    )
    assert first[0].choices[0].delta.role == "assistant"
    assert last[0].choices[0].delta.role is None
    assert last[0].choices[0].finish_reason == "stop"
    assert last[0].object == "chat.completion.chunk"


def test_domain_errors_map_to_http():
    assert from_domain(exceptions.NotFound("served model", "x"), "x").status == 404
    bad = from_domain(exceptions.InvalidArgument("sampling.max_tokens", "too many"), "m")
    assert (bad.status, bad.param) == (400, "max_tokens")
    assert from_domain(exceptions.Unavailable("starting"), "m").status == 503
    limited = from_domain(exceptions.ResourceExhausted("busy", retry_after=2.2), "m")
    assert (limited.status, limited.headers["Retry-After"]) == (429, "2")
    assert from_domain(exceptions.DeadlineExceeded("slow"), "m").status == 504
    refused = from_domain(exceptions.Unauthenticated("bad token"), "m")
    assert (refused.status, refused.message) == (500, "the gateway is misconfigured")
    broken = from_domain(exceptions.Internal("boom", "UNKNOWN"), "m")
    assert (broken.status, broken.type) == (500, "server_error")
    assert broken.message == "the inference service failed: boom"
