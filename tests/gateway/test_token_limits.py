"""Tokens per minute: reserved at admission, settled with what was used, so that concurrent
requests cannot overdraw a key and a client that leaves early still pays for its prompt;
and a client that leaves before the first token releases the in-flight gauge.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from forgeline.gateway.app import create_app
from forgeline.gateway.keys import ApiKey, KeyStore, digest
from forgeline.gateway.limits import RateLimiter
from tests.gateway.conftest import (
    aborted_requests,
    fake_inference,
    gateway_config,
    in_flight,
    serve_app,
)
from tests.helpers import wait_for
from tests.inference.fakes import FakeEngineFactory

pytestmark = pytest.mark.integration

CAPACITY = 1000
KEYS = KeyStore(
    [
        ApiKey("frozen", digest("frozen-key"), tokens_per_minute=CAPACITY),
        ApiKey("small", digest("small-key"), tokens_per_minute=60),
    ]
)
FROZEN = {"Authorization": "Bearer frozen-key"}
PROMPT = " ".join(f"w{i}" for i in range(40))  # 40 tokens for the fake engine


class FrozenClock:
    """A clock that never moves, so that buckets do not refill during a test."""

    def __call__(self) -> float:
        return 1000.0


@pytest.fixture(scope="module")
def factory() -> FakeEngineFactory:
    return FakeEngineFactory()


@pytest.fixture(scope="module")
def inference(tmp_path_factory, factory):
    with fake_inference(tmp_path_factory.mktemp("inference"), factory, "") as thread:
        yield thread


@pytest.fixture
def app(inference):
    return create_app(gateway_config(inference, keys=KEYS))


@pytest.fixture
def base_url(app):
    with serve_app(app) as url:
        yield url


@pytest.fixture
def engine(factory):
    engine = factory.engines["base"]
    yield engine
    engine.step = 0.0


def frozen_level(app) -> int:
    """Tokens left to the frozen key, with its limiter's clock stopped."""
    limiter: RateLimiter = app.state.gateway.access.limiter
    headers = asyncio.run(limiter.headers(KEYS.keys[0]))
    return int(headers["x-ratelimit-remaining-tokens"])


def freeze(app) -> None:
    app.state.gateway.access.limiter = RateLimiter(FrozenClock())


def completion(**fields) -> dict:
    return {"model": "base", "prompt": "a b c", "max_tokens": 5, **fields}


def test_concurrent_requests_cannot_overdraw_the_key(base_url, engine):
    engine.step = 0.05  # every request is still running when the last one is admitted

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(headers={"Authorization": "Bearer small-key"}) as client:
            url = f"{base_url}/v1/completions"
            return await asyncio.gather(*(client.post(url, json=completion()) for _ in range(10)))

    responses = asyncio.run(burst())
    statuses = sorted(r.status_code for r in responses)
    used = sum(r.json()["usage"]["total_tokens"] for r in responses if r.status_code == 200)
    # Each request is bounded by 3 prompt + 5 output tokens: 7 fit in 60, not 10.
    assert statuses.count(429) >= 3, statuses
    assert used <= 60 + 2  # plus what refills (1 token/s) while the burst runs


def test_a_finished_request_is_charged_what_it_used(app, base_url):
    freeze(app)
    response = httpx.post(
        f"{base_url}/v1/completions",
        headers=FROZEN,
        json=completion(prompt=PROMPT, max_tokens=20, stop=["fox"]),
    )
    assert response.status_code == 200, response.text
    usage = response.json()["usage"]
    assert usage["completion_tokens"] == 4  # stopped early: the unused budget is refunded
    assert CAPACITY - frozen_level(app) == usage["total_tokens"]
    assert int(response.headers["x-ratelimit-remaining-tokens"]) == CAPACITY - 60


def test_a_stream_dropped_early_is_charged_its_prompt(app, base_url, engine):
    freeze(app)
    engine.step = 0.05
    before = aborted_requests(engine)
    body = completion(prompt=PROMPT, max_tokens=20, stream=True)
    with httpx.stream("POST", f"{base_url}/v1/completions", headers=FROZEN, json=body) as r:
        lines = r.iter_lines()
        first = json.loads(next(lines).removeprefix("data: "))
    wait_for(lambda: first["id"] in aborted_requests(engine) - before, timeout=5)
    wait_for(lambda: in_flight(httpx.get(f"{base_url}/metrics").text) == 0, timeout=5)
    charged = CAPACITY - frozen_level(app)
    assert 40 < charged < 60  # the whole prompt, a few tokens, not the unused budget


class YieldingSend:
    """ASGI middleware whose `send` yields to the event loop, as compressing, tracing or
    proxying middleware does; a response task can then be cancelled before it starts."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        async def yielding_send(message):
            await asyncio.sleep(0)
            await send(message)

        await self.app(scope, receive, yielding_send if scope["type"] == "http" else send)


@pytest.mark.parametrize(
    ("wrap", "step"),
    [
        (lambda app: app, 2.0),  # the first token comes long after the client left
        (YieldingSend, 0.3),  # the event generator would never start
    ],
    ids=["slow-first-token", "yielding-send"],
)
def test_a_streaming_client_that_leaves_before_the_first_token(app, engine, wrap, step):
    freeze(app)
    engine.step = step
    before = aborted_requests(engine)
    body = completion(prompt=PROMPT, max_tokens=20, stream=True)
    with serve_app(wrap(app)) as base_url:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{base_url}/v1/completions", headers=FROZEN, json=body, timeout=0.1)
        # Not in flight any more, and the engine stopped working for nobody.
        wait_for(lambda: in_flight(httpx.get(f"{base_url}/metrics").text) == 0, timeout=1.5)
        wait_for(lambda: aborted_requests(engine) - before, timeout=1.5)
        metrics = httpx.get(f"{base_url}/metrics").text
    # Charged for the prompt it made the engine take, not the output it never waited for.
    assert 40 <= CAPACITY - frozen_level(app) < 60
    assert 'forgeline_gateway_requests_total{endpoint="completions"' in metrics


def test_a_budget_beyond_the_context_is_a_400_not_a_429(base_url):
    response = httpx.post(
        f"{base_url}/v1/completions",
        headers=FROZEN,
        json=completion(max_tokens=10_000),  # more than the key's tokens and the context
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "max_tokens"
