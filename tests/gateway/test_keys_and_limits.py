"""API keys (hashed, constant-time, allow-lists) and token-bucket rate limits.

The limiter tests run on both backends, in this process and in a real Redis, which must
decide alike.
"""

from __future__ import annotations

import json
import uuid

import pytest

from forgeline.gateway.keys import ApiKey, KeyStore, digest, new_key, parse_entry
from forgeline.gateway.limits import Limiter, RateLimited, RateLimiter, TokenBucket
from forgeline.gateway.shared_limits import RedisLimiter


class Clock:
    """A test clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_keys_are_stored_as_digests_and_matched(tmp_path):
    secret = new_key()
    assert secret.startswith("fl-") and len(secret) > 40
    path = tmp_path / "keys.json"
    path.write_text(
        json.dumps(
            {
                "keys": [
                    {
                        "name": "alice",
                        "sha256": digest(secret).hex(),
                        "models": ["smol"],
                        "requests_per_minute": 10,
                    },
                    {"name": "ci", "key": "plain-key"},
                ]
            }
        )
    )
    store = KeyStore.load(path, env_keys="env-one, env-two,")
    assert store.enabled and len(store.keys) == 4
    alice = store.authenticate(secret)
    assert alice is not None and alice.name == "alice" and alice.requests_per_minute == 10
    assert alice.allows("smol") and not alice.allows("other")
    assert store.authenticate("plain-key").name == "ci"
    assert store.authenticate("env-two").name == "env-1"
    assert store.authenticate("wrong") is None
    assert store.authenticate(secret[:-1]) is None
    assert all(isinstance(k.sha256, bytes) and len(k.sha256) == 32 for k in store.keys)
    assert "plain-key" not in repr(store.keys)
    assert not KeyStore.load().enabled


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"sha256": "00" * 32}, "name"),
        ({"name": "a"}, "exactly one of sha256"),
        ({"name": "a", "sha256": "zz"}, "64 hex digits"),
        ({"name": "a", "key": "k", "models": "smol"}, "models"),
        ({"name": "a", "key": "k", "requests_per_minute": 0}, "requests_per_minute"),
        ({"name": "a", "key": "k", "tokens": 5}, "unknown fields"),
    ],
)
def test_malformed_entries_name_the_entry_and_field(entry, message):
    with pytest.raises(ValueError, match=message) as err:
        parse_entry(entry, "keys.json: keys[3]")
    assert "keys[3]" in str(err.value)


def test_malformed_files_name_the_file(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match=r"keys\.json"):
        KeyStore.load(path)
    path.write_text(json.dumps({"keys": [{"name": "a", "key": "x"}, {"name": "a", "key": "y"}]}))
    with pytest.raises(ValueError, match="unique"):
        KeyStore.load(path)


def test_entry_round_trip():
    key = ApiKey("bob", digest("k"), frozenset({"b", "a"}), 5, 100)
    assert parse_entry(key.entry(), "x") == key


def test_token_bucket_refills_continuously():
    clock = Clock()
    bucket = TokenBucket(capacity=2, per_second=1, clock=clock)
    assert bucket.take() and bucket.take() and not bucket.take()
    assert bucket.wait_time() == pytest.approx(1.0)
    clock.now += 0.5
    assert not bucket.take() and bucket.wait_time() == pytest.approx(0.5)
    clock.now += 10
    assert bucket.level == 2  # capped at capacity
    bucket.charge(5)
    assert bucket.level == -3 and bucket.wait_time() == pytest.approx(4.0)


@pytest.fixture(params=["process", "redis"])
async def limiter(request):
    """Makes limiters on a test clock (it starts at 1000 s): in this process, or in the
    tests' Redis under a prefix of the test's own."""
    made: list[Limiter] = []
    prefix = f"test-{uuid.uuid4().hex}:"
    url = request.getfixturevalue("redis_url") if request.param == "redis" else ""

    def make(clock: Clock) -> Limiter:
        made.append(RedisLimiter(url, clock, prefix) if url else RateLimiter(clock))
        return made[-1]

    yield make
    for one in made:
        await one.close()


async def remaining(limiter: Limiter, key: ApiKey, limit: str) -> int:
    """What the key's `limit` bucket holds now, as its header says."""
    return int((await limiter.headers(key))[f"x-ratelimit-remaining-{limit}"])


async def test_requests_per_minute_limit_and_retry_after(limiter):
    clock = Clock()
    limits = limiter(clock)
    key = ApiKey("k", digest("k"), requests_per_minute=2)
    headers = (await limits.reserve(key)).headers
    assert headers["x-ratelimit-limit-requests"] == "2"
    assert headers["x-ratelimit-remaining-requests"] == "1"
    await limits.reserve(key)
    with pytest.raises(RateLimited) as err:
        await limits.reserve(key)
    assert err.value.limit == "requests"
    assert err.value.retry_after == pytest.approx(30.0)
    assert err.value.headers["Retry-After"] == "30"
    assert err.value.headers["x-ratelimit-remaining-requests"] == "0"
    clock.now += 30
    await limits.reserve(key)


async def test_tokens_used_beyond_the_reservation_are_debt(limiter):
    clock = Clock()
    limits = limiter(clock)
    key = ApiKey("k", digest("k"), tokens_per_minute=60)
    limits.settle(await limits.reserve(key), 90)  # one large request goes into debt
    await limits.drain()
    with pytest.raises(RateLimited) as err:
        await limits.reserve(key)
    assert err.value.limit == "tokens"
    assert err.value.retry_after == pytest.approx(31.0)
    clock.now += 31
    await limits.reserve(key)
    unlimited = ApiKey("u", digest("u"))
    for _ in range(100):
        assert (await limits.reserve(unlimited)).headers == {}


async def test_reservations_are_settled_with_what_was_used(limiter):
    clock = Clock()
    limits = limiter(clock)
    key = ApiKey("k", digest("k"), tokens_per_minute=100)
    first = await limits.reserve(key, tokens=60)
    assert first.headers["x-ratelimit-remaining-tokens"] == "40"
    # A concurrent request that would overdraw the key waits for the refill.
    with pytest.raises(RateLimited) as err:
        await limits.reserve(key, tokens=50)
    assert err.value.limit == "tokens" and err.value.retry_after == pytest.approx(6.0)
    limits.settle(first, 25)  # refunds the 35 it did not use
    await limits.drain()
    second = await limits.reserve(key, tokens=50)
    limits.settle(second, 70)  # used more than it reserved: charged the difference
    await limits.drain()
    assert await remaining(limits, key, "tokens") == 5


async def test_an_unbounded_request_reserves_at_most_a_full_bucket(limiter):
    clock = Clock()
    limits = limiter(clock)
    key = ApiKey("k", digest("k"), tokens_per_minute=100)
    reservation = await limits.reserve(key, tokens=10_000, bounded=False)
    assert reservation.tokens == 100
    limits.settle(reservation, 160)
    await limits.drain()
    with pytest.raises(RateLimited) as err:
        await limits.reserve(key, tokens=1)
    assert err.value.retry_after == pytest.approx(61 / (100 / 60))  # a debt of 60, then 1


async def test_a_request_too_large_for_the_key_is_refused_without_a_wait(limiter):
    limits = limiter(Clock())
    key = ApiKey("k", digest("k"), requests_per_minute=5, tokens_per_minute=100)
    await limits.reserve(key, tokens=30)
    with pytest.raises(RateLimited) as err:
        await limits.reserve(key, generations=6)
    assert err.value.limit == "requests" and "Request too large" in str(err.value)
    assert "Retry-After" not in err.value.headers
    assert err.value.headers["x-ratelimit-remaining-tokens"] == "70"  # the key's state
    with pytest.raises(RateLimited) as err:
        await limits.reserve(key, tokens=101)
    assert err.value.limit == "tokens" and err.value.too_large


async def test_a_refused_reservation_takes_nothing(limiter):
    limits = limiter(Clock())
    key = ApiKey("k", digest("k"), requests_per_minute=3, tokens_per_minute=100)
    await limits.reserve(key, generations=2, tokens=10)
    with pytest.raises(RateLimited) as err:
        await limits.reserve(key, generations=2, tokens=10)  # the tokens fit, the requests do not
    assert err.value.limit == "requests"
    headers = await limits.headers(key)
    assert headers["x-ratelimit-remaining-tokens"] == "90"
    assert headers["x-ratelimit-remaining-requests"] == "1"
