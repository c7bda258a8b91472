"""Hypothesis strategies for gateway requests: near-valid bodies (the right keys with wrong
types and extreme values), random JSON, raw bytes, content types and model ids.

A near-valid body is a valid request with one field replaced, and is drawn together with
the name of that field, so that a test can check that a 400 names it.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

# Integers at and just past the edges of the contract's types, and beyond.
EDGE_INTEGERS = [
    -(2**63) - 1,
    -(2**63),
    -(2**31) - 1,
    -2,
    -1,
    0,
    1,
    2,
    5,
    6,
    20,
    21,
    128,
    129,
    256,
    257,
    2**31 - 1,
    2**31,
    2**32 - 1,
    2**32,
    2**63 - 1,
    2**63,
    2**64,
    10**30,
]
EDGE_FLOATS = [0.0, -0.0, 0.5, 1.0, 2.0, -2.5, 100.5, 1e-320, 1e308, -1e308]

# Any code point, lone surrogates included (json.dumps escapes them as \ud800).
any_text = st.text(alphabet=st.characters(exclude_categories=()), max_size=40)
texts = st.one_of(
    st.text(max_size=30),
    any_text,
    st.sampled_from(["", " ", "\x00", "\ud800", "é", "x" * 3000, "base", "lora", "²", "\u0661"]),
)
integers = st.one_of(st.integers(), st.sampled_from(EDGE_INTEGERS))
floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(EDGE_FLOATS))
scalars = st.one_of(st.none(), st.booleans(), integers, floats, texts)

json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(texts, children, max_size=5),
    ),
    max_leaves=20,
)

# Values with the right shape for some field, so that validation reaches deeper checks.
token_ids = st.lists(integers, max_size=6)
shaped = st.one_of(
    token_ids,
    st.lists(token_ids, max_size=4),
    st.lists(texts, max_size=4),
    st.dictionaries(texts, st.one_of(integers, floats), max_size=4),
    st.dictionaries(st.integers(-1, 2**33).map(str), floats, max_size=4),
    st.fixed_dictionaries({"include_usage": scalars}),
    st.fixed_dictionaries({"type": texts}),
)
wild = st.one_of(json_values, shaped, integers, floats)

ROLES = ["user", "system", "developer", "assistant", "tool"]
message = st.fixed_dictionaries(
    {
        "role": st.one_of(
            st.sampled_from(["user", "system", "developer", "assistant", "tool"]), texts
        )
    },
    optional={
        "content": st.one_of(
            texts,
            st.none(),
            st.lists(
                st.fixed_dictionaries(
                    {"type": st.one_of(st.just("text"), texts)},
                    optional={"text": st.one_of(texts, scalars)},
                ),
                max_size=3,
            ),
            json_values,
        ),
        "name": st.one_of(texts, scalars),
        "tool_calls": json_values,
    },
)
messages = st.one_of(st.lists(message, max_size=4), json_values)

SAMPLING_FIELDS = [
    "frequency_penalty",
    "logit_bias",
    "max_tokens",
    "n",
    "presence_penalty",
    "seed",
    "stop",
    "stream",
    "stream_options",
    "temperature",
    "top_p",
    "user",
    "top_k",
    "min_p",
    "repetition_penalty",
    "ignore_eos",
    "include_stop_str_in_output",
    "stop_token_ids",
]
COMPLETION_FIELDS = [
    "model",
    "prompt",
    "best_of",
    "echo",
    "logprobs",
    "suffix",
    *SAMPLING_FIELDS,
]
CHAT_FIELDS = [
    "model",
    "messages",
    "audio",
    "function_call",
    "functions",
    "logprobs",
    "max_completion_tokens",
    "metadata",
    "modalities",
    "parallel_tool_calls",
    "prediction",
    "reasoning_effort",
    "response_format",
    "service_tier",
    "store",
    "tool_choice",
    "tools",
    "top_logprobs",
    "add_generation_prompt",
    *SAMPLING_FIELDS,
]
# Fields the gateway does not declare (accepted and ignored) and vLLM ones it does not map.
UNKNOWN_FIELDS = ["min_tokens", "frobnicate", "guided_json", "prompt_logprobs", ""]

small_integers = st.one_of(st.integers(-3, 70), st.sampled_from(EDGE_INTEGERS))
unit_floats = st.one_of(st.floats(-3, 3), st.sampled_from(EDGE_FLOATS))
stops = st.one_of(texts, st.lists(texts, max_size=20), st.none())
prompts = st.one_of(
    texts,
    st.lists(texts, min_size=0, max_size=8),
    token_ids,
    st.lists(token_ids, max_size=4),
    st.lists(st.text(max_size=5), min_size=250, max_size=300),
)
# Values of the right type for each field, often valid, often at or past an edge.
TYPED = {
    "prompt": prompts,
    "model": st.one_of(st.sampled_from(["base", "lora", "nope", ""]), texts),
    "max_tokens": small_integers,
    "max_completion_tokens": small_integers,
    "n": small_integers,
    "best_of": small_integers,
    "logprobs": st.one_of(small_integers, st.booleans()),
    "top_logprobs": small_integers,
    "top_k": small_integers,
    "seed": integers,
    "stop_token_ids": token_ids,
    "temperature": unit_floats,
    "top_p": unit_floats,
    "min_p": unit_floats,
    "presence_penalty": unit_floats,
    "frequency_penalty": unit_floats,
    "repetition_penalty": unit_floats,
    "logit_bias": st.dictionaries(
        st.one_of(st.integers(-1, 2**33).map(str), texts), st.one_of(floats, integers), max_size=4
    ),
    "stop": stops,
    "stream": st.booleans(),
    "echo": st.booleans(),
    "ignore_eos": st.booleans(),
    "stream_options": st.fixed_dictionaries({}, optional={"include_usage": st.booleans()}),
    "response_format": st.fixed_dictionaries({"type": st.sampled_from(["text", "json_object"])}),
    "modalities": st.lists(st.sampled_from(["text", "audio"]), max_size=2),
    "tool_choice": st.sampled_from(["none", "auto", "required"]),
}

# Integer fields that reach the inference contract (uint32 or int64 there).
INTEGER_FIELDS = [
    "max_tokens",
    "max_completion_tokens",
    "n",
    "seed",
    "top_k",
    "logprobs",
    "top_logprobs",
    "best_of",
    "stop_token_ids",
]

COMPLETION_BASE = {"model": "base", "prompt": "a b", "max_tokens": 2}
CHAT_BASE = {"model": "base", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


@st.composite
def near_valid(draw, base: dict[str, Any], fields: list[str]) -> tuple[dict[str, Any], str]:
    """A valid body with one field (declared or not) set to a drawn value, or removed."""
    field = draw(st.sampled_from(fields + UNKNOWN_FIELDS))
    body = dict(base)
    if draw(st.integers(0, 9)) == 0:
        body.pop(field, None)
    elif field == "messages":
        body[field] = draw(messages)
    elif field in TYPED and draw(st.booleans()):
        body[field] = draw(TYPED[field])
    else:
        body[field] = draw(wild)
    if draw(st.booleans()):
        # Streamed and not, whatever field was drawn.
        body.setdefault("stream", True)
    return body, field


CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/json; charset=latin-1",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/octet-stream",
    "",
    "application/json; x=;;",
]


@st.composite
def raw_requests(draw, base: dict[str, Any], fields: list[str]) -> tuple[bytes, str, str | None]:
    """(body bytes, content type, field at fault or None) for a POST endpoint."""
    kind = draw(st.sampled_from(["near-valid", "near-valid", "edge", "json", "bytes", "text"]))
    field = None
    if kind == "near-valid":
        body, field = draw(near_valid(base, fields))
        content = json.dumps(body).encode()
    elif kind == "edge":
        field = draw(st.sampled_from([f for f in INTEGER_FIELDS if f in fields]))
        edge = draw(st.sampled_from(EDGE_INTEGERS))
        value = [edge] if field == "stop_token_ids" else edge
        content = json.dumps({**base, field: value, "stream": draw(st.booleans())}).encode()
    elif kind == "json":
        content = json.dumps(draw(json_values)).encode()
    elif kind == "bytes":
        content = draw(st.binary(max_size=200))
    else:
        content = draw(any_text).encode("utf-8", "surrogatepass")
    content_type = draw(st.sampled_from(CONTENT_TYPES))
    return content, content_type, field


model_ids = st.one_of(
    texts.filter(lambda t: "\x00" not in t),
    st.sampled_from(["base", "lora", "base/", "..", "%2e%2e", "a%00b", "%ff", "x" * 3000]),
)
