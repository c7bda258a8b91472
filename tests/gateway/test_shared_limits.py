"""Rate limits shared through a real Redis: replicas enforce one limit together, through
the limiter and through the gateway app (429 with `Retry-After`); Redis down is a 503 in
OpenAI's error shape, never a 500; the Redis URL is checked when the config is built.
"""

from __future__ import annotations

import logging
import uuid

import httpx
import pytest
from redis.asyncio import Redis

from forgeline.common.settings import Settings
from forgeline.gateway.app import create_app
from forgeline.gateway.config import GatewayConfig
from forgeline.gateway.keys import ApiKey, KeyStore, digest
from forgeline.gateway.limits import LimitsUnavailable, RateLimited, RateLimiter
from forgeline.gateway.shared_limits import RedisLimiter
from forgeline.gateway.state import limiter
from tests.gateway.conftest import (
    assert_error_shape,
    fake_inference,
    gateway_config,
    redis_server,
    serve_app,
)
from tests.helpers import free_port
from tests.inference.fakes import FakeEngineFactory

pytestmark = pytest.mark.integration

COMPLETION = {"model": "base", "prompt": "a b c", "max_tokens": 2}


def unique_key(secret: str, **limits: int) -> ApiKey:
    """A key whose name no other test uses (the tests share one Redis)."""
    return ApiKey(f"{secret}-{uuid.uuid4().hex}", digest(secret), **limits)


@pytest.fixture(scope="module")
def inference(tmp_path_factory):
    with fake_inference(tmp_path_factory.mktemp("inference"), FakeEngineFactory(), "") as thread:
        yield thread


async def test_two_replicas_enforce_one_limit_together(redis_url):
    key = unique_key("k", requests_per_minute=3, tokens_per_minute=100)
    one, two = RedisLimiter(redis_url), RedisLimiter(redis_url)  # Redis's own clock
    try:
        first = await one.reserve(key, tokens=60)
        # The second replica sees what the first took, and cannot overdraw the key.
        assert 40 <= int((await two.headers(key))["x-ratelimit-remaining-tokens"]) <= 42
        with pytest.raises(RateLimited) as err:
            await two.reserve(key, tokens=50)
        assert err.value.limit == "tokens" and 4 < err.value.retry_after <= 6.0
        await two.reserve(key, tokens=10)
        await one.reserve(key, tokens=10)
        # Three requests a minute, taken across both replicas.
        for replica in (one, two):
            with pytest.raises(RateLimited) as err:
                await replica.reserve(key, tokens=1)
            assert err.value.limit == "requests"
            assert 15 <= int(err.value.headers["Retry-After"]) <= 20
        one.settle(first, 25)  # one replica refunds; the other sees it
        await one.drain()
        assert int((await two.headers(key))["x-ratelimit-remaining-tokens"]) >= 55
    finally:
        await one.close()
        await two.close()


async def test_a_keys_entry_expires_once_its_buckets_are_full_again(redis_url):
    prefix = f"test-{uuid.uuid4().hex}:"
    key = unique_key("k", requests_per_minute=1, tokens_per_minute=6000)
    limits = RedisLimiter(redis_url, prefix=prefix)
    redis = Redis.from_url(redis_url)
    try:
        reservation = await limits.reserve(key, tokens=10)
        # The request bucket is full again in 60 s, the token bucket in 0.1 s.
        assert 59_000 < await redis.pttl(prefix + key.name) <= 61_000
        limits.settle(reservation, 0)  # touches the token bucket only
        await limits.drain()
        assert 59_000 < await redis.pttl(prefix + key.name) <= 61_000
    finally:
        await limits.close()
        await redis.aclose()


async def test_redis_down_refuses_admission_and_logs_lost_settlements(tmp_path, caplog):
    key = unique_key("k", tokens_per_minute=100)
    with redis_server(tmp_path) as server:
        limits = RedisLimiter(server.url)
        reservation = await limits.reserve(key, tokens=50)
        server.stop()
        with pytest.raises(LimitsUnavailable, match="cannot be reached"):
            await limits.reserve(key, tokens=1)
        with pytest.raises(LimitsUnavailable):
            await limits.headers(key)
        with caplog.at_level(logging.WARNING, logger="forgeline.gateway.shared_limits"):
            limits.settle(reservation, 10)  # never raises; the failure is logged
            await limits.drain()
        assert f"key {key.name}: its tokens could not be settled (-40)" in caplog.text
        await limits.close()


async def test_messages_name_the_server_without_its_password():
    limits = RedisLimiter(f"redis://:s3cret@127.0.0.1:{free_port()}/0")
    with pytest.raises(LimitsUnavailable) as err:
        await limits.reserve(unique_key("k", requests_per_minute=1))
    assert "redis://127.0.0.1:" in str(err.value) and "s3cret" not in str(err.value)
    await limits.close()


def test_replicas_answer_429_with_retry_after_for_the_shared_limit(inference, redis_url):
    key = unique_key("shared-key", requests_per_minute=2)
    config = gateway_config(inference, keys=KeyStore([key]), redis_url=redis_url)
    auth = {"Authorization": "Bearer shared-key"}
    with serve_app(create_app(config)) as one, serve_app(create_app(config)) as two:
        first = httpx.post(f"{one}/v1/completions", headers=auth, json=COMPLETION)
        assert first.status_code == 200, first.text
        assert first.headers["x-ratelimit-remaining-requests"] == "1"
        second = httpx.post(f"{two}/v1/completions", headers=auth, json=COMPLETION)
        assert second.status_code == 200, second.text
        assert second.headers["x-ratelimit-remaining-requests"] == "0"
        for url in (two, one):
            refused = httpx.post(f"{url}/v1/completions", headers=auth, json=COMPLETION)
            assert refused.status_code == 429, refused.text
            assert assert_error_shape(refused)["code"] == "rate_limit_exceeded"
            # A request refills in 30 s; a few of them have passed since the first one.
            assert 25 <= int(refused.headers["Retry-After"]) <= 30
            assert 25_000 <= int(refused.headers["retry-after-ms"]) <= 30_000


def test_redis_down_is_a_503_in_the_error_shape(inference, tmp_path, caplog):
    limited = unique_key("limited-key", requests_per_minute=100)
    free = ApiKey("free", digest("free-key"))
    with redis_server(tmp_path) as server:
        config = gateway_config(inference, keys=KeyStore([limited, free]), redis_url=server.url)
        with serve_app(create_app(config)) as url:

            def post(secret: str) -> httpx.Response:
                headers = {"Authorization": f"Bearer {secret}"}
                return httpx.post(f"{url}/v1/completions", headers=headers, json=COMPLETION)

            assert post("limited-key").status_code == 200
            server.stop()
            with caplog.at_level(logging.ERROR, logger="forgeline.gateway.access"):
                refused = post("limited-key")
            assert refused.status_code == 503, refused.text
            error = assert_error_shape(refused)
            assert error["code"] == "rate_limits_unavailable"
            assert error["type"] == "server_error"
            assert f"key {limited.name} refused: its rate limits cannot be checked" in caplog.text
            # A key without limits needs no Redis.
            assert post("free-key").status_code == 200


def test_the_redis_url_setting_picks_the_limiter(monkeypatch, tmp_path):
    monkeypatch.setenv("FORGELINE_GATEWAY_REDIS_URL", "redis://:s3cret@redis:6379/0")
    settings = Settings.load("gateway", home=tmp_path)
    config = GatewayConfig.from_settings(settings)
    assert config.redis_url == "redis://:s3cret@redis:6379/0"
    assert "s3cret" not in repr(settings) + repr(config)
    assert isinstance(limiter(config), RedisLimiter)
    assert isinstance(limiter(GatewayConfig("127.0.0.1:1")), RateLimiter)
    monkeypatch.setenv("FORGELINE_GATEWAY_REDIS_URL", "http://redis:6379")
    with pytest.raises(ValueError, match="FORGELINE_GATEWAY_REDIS_URL must be a redis://"):
        GatewayConfig.from_settings(Settings.load("gateway", home=tmp_path))
