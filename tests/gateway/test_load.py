"""Load through the gateway over a real socket: 256 concurrent streaming chats finish without
an error; 256 concurrent streams whose clients leave after the first chunk all get their
engine requests aborted, and the in-flight gauge returns to 0.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from forgeline.gateway.app import create_app
from tests.gateway.conftest import aborted_requests, fake_inference, gateway_config, serve_app
from tests.gateway.conftest import in_flight as in_flight_of
from tests.helpers import wait_for
from tests.inference.fakes import BASE_WORDS, FakeEngineFactory

pytestmark = pytest.mark.integration

CONCURRENCY = 256


@pytest.fixture(scope="module")
def factory() -> FakeEngineFactory:
    return FakeEngineFactory()


@pytest.fixture(scope="module")
def base_url(tmp_path_factory, factory):
    root = tmp_path_factory.mktemp("inference")
    with (
        fake_inference(root, factory, "") as inference,
        serve_app(create_app(gateway_config(inference))) as url,
    ):
        yield url


@pytest.fixture
def engine(factory):
    engine = factory.engines["base"]
    yield engine
    engine.step = 0.0


def chat(max_tokens: int) -> dict:
    return {
        "model": "base",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": max_tokens,
        "stream": True,
    }


def client(base_url: str) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=CONCURRENCY + 8, max_keepalive_connections=CONCURRENCY)
    return httpx.AsyncClient(base_url=base_url, limits=limits, timeout=120)


def in_flight(base_url: str) -> float:
    return in_flight_of(httpx.get(f"{base_url}/metrics").text)


def test_concurrent_streaming_chats_all_succeed(base_url, engine):
    engine.step = 0.01
    tokens = 8

    async def one(http: httpx.AsyncClient) -> str:
        async with http.stream("POST", "/v1/chat/completions", json=chat(tokens)) as response:
            assert response.status_code == 200, await response.aread()
            events = [line async for line in response.aiter_lines() if line]
        assert events[-1] == "data: [DONE]"
        chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
        assert not [c for c in chunks if "error" in c], chunks
        assert chunks[-1]["choices"][0]["finish_reason"] == "length"
        return "".join(c["choices"][0]["delta"]["content"] or "" for c in chunks)

    async def burst() -> list:
        async with client(base_url) as http:
            return await asyncio.gather(
                *(one(http) for _ in range(CONCURRENCY)), return_exceptions=True
            )

    results = asyncio.run(burst())
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, f"{len(errors)} of {CONCURRENCY} failed: {errors[:3]!r}"
    expected = " ".join((BASE_WORDS * 2)[:tokens])
    assert set(results) == {expected}
    wait_for(lambda: in_flight(base_url) == 0, timeout=10)


def test_clients_that_leave_after_the_first_chunk_abort_their_engine_requests(base_url, engine):
    engine.step = 0.05  # 50 tokens take 2.5s: every stream is cut well before its end
    before = aborted_requests(engine)

    async def one(http: httpx.AsyncClient) -> str:
        async with http.stream("POST", "/v1/chat/completions", json=chat(50)) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if line:
                    return json.loads(line.removeprefix("data: "))["id"]
        raise AssertionError("the stream ended without an event")

    async def burst() -> list:
        # A connection is closed, not reused, when its response is left unread.
        async with client(base_url) as http:
            return await asyncio.gather(
                *(one(http) for _ in range(CONCURRENCY)), return_exceptions=True
            )

    ids = asyncio.run(burst())
    errors = [r for r in ids if isinstance(r, BaseException)]
    assert not errors, f"{len(errors)} of {CONCURRENCY} failed: {errors[:3]!r}"
    assert len(set(ids)) == CONCURRENCY
    wait_for(lambda: set(ids) <= aborted_requests(engine) - before, timeout=30)
    wait_for(lambda: engine.unfinished_requests() == 0, timeout=10)
    wait_for(lambda: in_flight(base_url) == 0, timeout=10)
