"""Malformed and oversized input: every one is a 4xx in OpenAI's error shape naming the field,
never a 5xx; and a request's fan-out (prompts x n) is capped and counted per generation.
"""

from __future__ import annotations

import json

import httpx
import pytest

from forgeline.gateway.app import create_app
from forgeline.gateway.keys import ApiKey, KeyStore, digest
from tests.gateway.conftest import (
    assert_error_shape,
    fake_inference,
    field_of,
    gateway_config,
    serve_app,
)
from tests.inference.fakes import FakeEngineFactory

pytestmark = pytest.mark.integration

UINT32 = 2**32
INT64 = 2**63
KEYS = KeyStore(
    [
        ApiKey("main", digest("main-key")),
        ApiKey("counted", digest("counted-key"), requests_per_minute=10),
    ]
)
MAIN = {"Authorization": "Bearer main-key"}


@pytest.fixture(scope="module")
def inference(tmp_path_factory):
    with fake_inference(tmp_path_factory.mktemp("inference"), FakeEngineFactory(), "") as thread:
        yield thread


@pytest.fixture(scope="module")
def base_url(inference):
    config = gateway_config(inference, keys=KEYS, max_generations_per_request=256)
    with serve_app(create_app(config)) as url:
        yield url


def post(base_url: str, path: str, content: bytes, headers=MAIN) -> httpx.Response:
    return httpx.post(f"{base_url}{path}", content=content, headers=headers, timeout=30)


def completion(**fields) -> bytes:
    return json.dumps({"model": "base", "prompt": "hi", "max_tokens": 2, **fields}).encode()


def chat(**fields) -> bytes:
    body = {"model": "base", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    return json.dumps({**body, **fields}).encode()


# The three reported bodies, then every integer field of the contract's SamplingParams (and
# the other integer fields that reach protobuf) one past its range, each way where signed.
OUT_OF_RANGE = [
    ("/v1/completions", b'{"model":"x","prompt":"hi","max_tokens":4294967296}', "max_tokens"),
    ("/v1/completions", '{"model":"x","prompt":"hi","logit_bias":{"²":1}}'.encode(), "logit_bias"),
    ("/v1/completions", completion(max_tokens=UINT32), "max_tokens"),
    ("/v1/completions", completion(n=UINT32), "n"),
    ("/v1/completions", completion(seed=INT64), "seed"),
    ("/v1/completions", completion(seed=-INT64 - 1), "seed"),
    ("/v1/completions", completion(top_k=UINT32), "top_k"),
    ("/v1/completions", completion(top_k=-2), "top_k"),
    ("/v1/completions", completion(logprobs=UINT32), "logprobs"),
    ("/v1/completions", completion(best_of=UINT32), "best_of"),
    ("/v1/completions", completion(stop_token_ids=[UINT32]), "stop_token_ids"),
    ("/v1/completions", completion(logit_bias={str(UINT32): 1}), "logit_bias"),
    ("/v1/completions", completion(logit_bias={"-1": 1}), "logit_bias"),
    ("/v1/completions", completion(prompt=[1, UINT32]), "prompt"),
    ("/v1/completions", completion(prompt=[[1], [UINT32]]), "prompt"),
    ("/v1/completions", completion(temperature=10**400), "temperature"),
    ("/v1/chat/completions", chat(max_tokens=UINT32), "max_tokens"),
    ("/v1/chat/completions", chat(max_completion_tokens=UINT32), "max_completion_tokens"),
    ("/v1/chat/completions", chat(n=UINT32), "n"),
    ("/v1/chat/completions", chat(seed=INT64), "seed"),
    ("/v1/chat/completions", chat(top_k=UINT32), "top_k"),
    ("/v1/chat/completions", chat(logprobs=True, top_logprobs=UINT32), "top_logprobs"),
    ("/v1/chat/completions", chat(stop_token_ids=[-1]), "stop_token_ids"),
    ("/v1/chat/completions", chat(logit_bias={"1" * 30: 1}), "logit_bias"),
]


@pytest.mark.parametrize(("path", "body", "param"), OUT_OF_RANGE)
def test_values_out_of_a_protobuf_fields_range_are_400s_naming_it(base_url, path, body, param):
    response = post(base_url, path, body)
    assert response.status_code == 400, response.text
    assert field_of(assert_error_shape(response)["param"]) == param


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"[" * 100_000 + b"]" * 100_000, None),
        (b'{"model": "base", "prompt": "hi", "n": ' + b"1" * 5000 + b"}", None),
        (b'{"model": "base", "prompt": "hi", "temperature": NaN}', None),
        (b'{"model": "base", "prompt": "hi", "top_p": -Infinity}', None),
        (b'{"model": "base", "prompt": "\xff\xfe"}', None),
        (b'{"model": "base", "prompt": "\\ud800"}', "prompt"),
        (b'{"model": "\\udfff", "prompt": "hi"}', "model"),
        (b'{"model": "base", "prompt": ["ok", "\\ud800x"]}', "prompt[1]"),
        (b'{"model": "base", "prompt": "hi", "user": {"a": ' * 50 + b"1" + b"}" * 51, None),
        (b"", None),
        (b"null", None),
        (b'"just a string"', None),
    ],
)
def test_bodies_that_are_not_sane_json_are_400s(base_url, body, param):
    for path in ("/v1/completions", "/v1/chat/completions"):
        response = post(base_url, path, body)
        assert response.status_code == 400, (path, response.text)
        error = assert_error_shape(response)
        if param is not None:
            assert error["param"] == param


def test_fields_beyond_the_contract_are_ignored_not_failed(base_url):
    response = post(base_url, "/v1/completions", completion(min_tokens=2**70))
    assert response.status_code == 200, response.text


def test_fan_out_is_capped_naming_prompt_or_n(base_url):
    huge = json.dumps({"model": "base", "prompt": ["x"] * 200_000, "n": 128}).encode()
    assert len(huge) < 2 * 1024 * 1024  # under the default body cap
    response = post(base_url, "/v1/completions", huge)
    assert response.status_code == 400, response.text
    error = assert_error_shape(response)
    assert error["param"] == "prompt" and "256" in error["message"]
    wide = post(base_url, "/v1/completions", completion(prompt=["a", "b"], n=129))
    assert wide.status_code == 400 and assert_error_shape(wide)["param"] == "n"
    tokens = post(base_url, "/v1/completions", completion(prompt=[[1]] * 257))
    assert tokens.status_code == 400 and assert_error_shape(tokens)["param"] == "prompt"
    chat_n = post(base_url, "/v1/chat/completions", chat(n=257))
    assert chat_n.status_code == 400 and assert_error_shape(chat_n)["param"] == "n"
    # One stream per prompt: no more prompts than streams to the inference service (256 - 1).
    many = post(base_url, "/v1/completions", completion(prompt=["a"] * 256))
    assert many.status_code == 400 and assert_error_shape(many)["param"] == "prompt"
    assert "at most 255" in assert_error_shape(many)["message"]
    fits = post(base_url, "/v1/completions", completion(prompt=["a"] * 64, n=4, max_tokens=1))
    assert fits.status_code == 200, fits.text
    assert len(fits.json()["choices"]) == 256


def test_every_generation_counts_against_the_request_limit(base_url):
    counted = {"Authorization": "Bearer counted-key"}
    eight = post(base_url, "/v1/completions", completion(prompt=["a"] * 4, n=2), counted)
    assert eight.status_code == 200, eight.text
    assert eight.headers["x-ratelimit-remaining-requests"] == "2"
    three = post(base_url, "/v1/completions", completion(prompt=["a"] * 3), counted)
    assert three.status_code == 429 and assert_error_shape(three)["code"] == "rate_limit_exceeded"
    too_large = post(base_url, "/v1/completions", completion(prompt=["a"] * 11), counted)
    assert too_large.status_code == 429
    assert "11" in assert_error_shape(too_large)["message"]
