"""Per-key rate limits: token buckets for requests per minute and tokens per minute.

A request takes one unit from its key's request bucket per generation it starts (a
completions request with 4 prompts and `n` 2 takes 8). Tokens are only known once the
request ends, so admission reserves an upper bound (the prompt's tokens plus the output
budget of every generation) and settles with what was used afterwards: the difference is
refunded, or charged when the request used more. Concurrent requests therefore cannot
overdraw a key: each one holds its reservation while it runs. A request whose output is
not bounded (no `max_tokens`) reserves at most a full bucket, and any excess is charged
as debt (the key then waits until the bucket refills). A refused request gets the seconds
until it would be admitted, for `Retry-After`; one that could never fit in a bucket is
refused without it.

`Limiter` is what admission talks to; `RateLimiter` keeps the buckets in this process, and
`shared_limits.RedisLimiter` keeps the same buckets in Redis, for gateway replicas that
enforce one limit together. Both decide alike; they share the checks and headers here.
"""

from __future__ import annotations

import abc
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from forgeline.gateway.keys import ApiKey

Clock = Callable[[], float]


class TokenBucket:
    """Holds up to `capacity` units, refilled continuously at `per_second`.

    Args:
        capacity: Burst size (and the starting level).
        per_second: Refill rate.
        clock: Monotonic seconds; injectable for tests.
    """

    def __init__(self, capacity: float, per_second: float, clock: Clock = time.monotonic):
        self.capacity = capacity
        self.per_second = per_second
        self._clock = clock
        self._level = capacity
        self._stamp = clock()

    @property
    def level(self) -> float:
        """Units available now (negative while in debt)."""
        now = self._clock()
        self._level = min(self.capacity, self._level + (now - self._stamp) * self.per_second)
        self._stamp = now
        return self._level

    def wait_time(self, amount: float = 1.0) -> float:
        """Seconds until `amount` units are available (0 if they are now)."""
        missing = amount - self.level
        return 0.0 if missing <= 0 else missing / self.per_second

    def take(self, amount: float = 1.0) -> bool:
        """Takes `amount` units if available."""
        if self.level < amount:
            return False
        self._level -= amount
        return True

    def charge(self, amount: float) -> None:
        """Takes `amount` units unconditionally (the level may go negative)."""
        self._level = self.level - amount


def _duration(seconds: float) -> str:
    return f"{seconds:.3f}s" if seconds < 60 else f"{int(seconds // 60)}m{seconds % 60:.0f}s"


@dataclass
class RateLimited(Exception):
    """A request over its key's limit."""

    limit: str  # "requests" or "tokens"
    retry_after: float
    headers: dict[str, str] = field(default_factory=dict)
    # Set when the request can never fit in the key's bucket, whatever the wait.
    too_large: str = ""

    def __str__(self) -> str:
        if self.too_large:
            return self.too_large
        return (
            f"Rate limit reached for {self.limit} per minute; try again in {self.retry_after:.1f}s"
        )


class LimitsUnavailable(Exception):
    """The store holding the rate limits did not answer, so no request can be admitted."""


@dataclass(frozen=True)
class Reservation:
    """What an admitted request holds until it is settled.

    Attributes:
        key: The key it was admitted for.
        tokens: Tokens reserved from the key's token bucket (0 without a token limit).
        headers: OpenAI's `x-ratelimit-*` headers after the admission.
    """

    key: ApiKey
    tokens: int = 0
    headers: dict[str, str] = field(default_factory=dict)


def reserved_tokens(key: ApiKey, tokens: int, bounded: bool) -> int:
    """Tokens a request reserves: its bound, at most a full bucket when it has none, and
    nothing for a key without a token limit."""
    capacity = key.tokens_per_minute
    if not capacity:
        return 0
    return tokens if bounded else min(tokens, capacity)


def capacities(key: ApiKey) -> dict[str, int]:
    """The capacity of each bucket the key has, by limit, tokens first."""
    return {
        limit: capacity
        for limit, capacity in (
            ("tokens", key.tokens_per_minute),
            ("requests", key.requests_per_minute),
        )
        if capacity
    }


def limit_headers(key: ApiKey, levels: Mapping[str, float]) -> dict[str, str]:
    """OpenAI's `x-ratelimit-*` headers for the key's bucket `levels` (units left, by
    limit); a bucket refills its capacity in a minute."""
    out = {}
    for limit, capacity in capacities(key).items():
        level = levels.get(limit, float(capacity))
        out[f"x-ratelimit-limit-{limit}"] = str(capacity)
        out[f"x-ratelimit-remaining-{limit}"] = str(max(0, math.floor(level)))
        out[f"x-ratelimit-reset-{limit}"] = _duration(max(0.0, (capacity - level) * 60 / capacity))
    return out


def refused(key: ApiKey, levels: Mapping[str, float], limit: str, wait: float) -> RateLimited:
    """The refusal of a request that fits its key's `limit` in `wait` seconds."""
    headers = {
        **limit_headers(key, levels),
        "Retry-After": str(max(1, math.ceil(wait))),
        "retry-after-ms": str(max(1, math.ceil(wait * 1000))),
    }
    return RateLimited(limit, wait, headers)


class Need(NamedTuple):
    """What a request wants from one of its key's buckets."""

    limit: str  # "requests" or "tokens"
    have: int  # units the bucket must hold to admit it
    take: int  # units taken when it is admitted


def needs(key: ApiKey, generations: int, reserved: int) -> list[Need]:
    """What a request wants from each of the key's buckets, tokens first.

    A request that reserves no tokens still needs one, so a key in debt admits nothing
    until it is out of it.

    Raises:
        RateLimited: the request can never fit in one of the buckets (`too_large`; its
            headers are left for the caller to fill in).
    """
    amounts = {"tokens": reserved, "requests": generations}
    out = []
    for limit, capacity in capacities(key).items():
        amount = amounts[limit]
        if amount > capacity:
            raise RateLimited(
                limit,
                0.0,
                too_large=f"Request too large: it needs {amount} {limit} but this key's "
                f"limit is {capacity} {limit} per minute; send fewer prompts, "
                "a smaller n or a smaller max_tokens",
            )
        out.append(Need(limit, max(amount, 1) if limit == "tokens" else amount, amount))
    return out


class Limiter(abc.ABC):
    """Per-key rate limits as admission uses them, wherever the buckets are kept.

    A backend implements `take` (check every bucket, then take from all or none),
    `settle` and `headers`.
    """

    async def reserve(
        self, key: ApiKey, generations: int = 1, tokens: int = 0, bounded: bool = True
    ) -> Reservation:
        """Admits a request of `generations` generations and reserves `tokens` for it.

        Every bucket is checked before any is taken from, so a refused request takes
        nothing. A key in debt admits nothing until it is out of it.

        Args:
            key: The caller's key.
            generations: Generations the request starts (prompts x `n`).
            tokens: Upper bound of the tokens it can use.
            bounded: Whether `tokens` is a real bound; an unbounded request reserves at
                most the bucket's capacity.

        Raises:
            RateLimited: the key is over a limit (with the wait), or the request can never
                fit in one of its buckets.
            LimitsUnavailable: the limits could not be checked.
        """
        reserved = reserved_tokens(key, tokens, bounded)
        try:
            wanted = needs(key, generations, reserved)
        except RateLimited as too_large:
            too_large.headers = await self.headers(key)
            raise
        return await self.take(key, reserved, wanted)

    @abc.abstractmethod
    async def take(self, key: ApiKey, reserved: int, wanted: list[Need]) -> Reservation:
        """Takes what `needs` listed from the key's buckets if every one has what it must.

        Raises:
            RateLimited: a bucket has too little; with the wait until it has enough.
            LimitsUnavailable: the limits could not be checked.
        """

    @abc.abstractmethod
    def settle(self, reservation: Reservation, used: int) -> None:
        """Settles a finished request: refunds what it reserved but did not use, or charges
        what it used beyond that. Never raises; a shared store is updated in the background
        (see `drain`)."""

    @abc.abstractmethod
    async def headers(self, key: ApiKey) -> dict[str, str]:
        """OpenAI's `x-ratelimit-*` headers for the key's current state.

        Raises:
            LimitsUnavailable: the limits could not be read.
        """

    @abc.abstractmethod
    async def drain(self) -> None:
        """Waits until every settlement has reached the store."""

    async def close(self) -> None:
        """Drains the settlements and lets go of the store."""
        await self.drain()


class RateLimiter(Limiter):
    """Token buckets per API key, in this process.

    Args:
        clock: Monotonic seconds; injectable for tests.
    """

    def __init__(self, clock: Clock = time.monotonic):
        self._clock = clock
        self._buckets: dict[str, dict[str, TokenBucket]] = {}

    def _for(self, key: ApiKey) -> dict[str, TokenBucket]:
        buckets = self._buckets.get(key.name)
        if buckets is None:
            buckets = {
                limit: TokenBucket(capacity, capacity / 60.0, self._clock)
                for limit, capacity in capacities(key).items()
            }
            self._buckets[key.name] = buckets
        return buckets

    def _levels(self, key: ApiKey) -> dict[str, float]:
        return {limit: bucket.level for limit, bucket in self._for(key).items()}

    async def headers(self, key: ApiKey) -> dict[str, str]:
        """OpenAI's `x-ratelimit-*` headers for the key's current state."""
        return limit_headers(key, self._levels(key))

    async def take(self, key: ApiKey, reserved: int, wanted: list[Need]) -> Reservation:
        """See `Limiter.take`; nothing here awaits, so no other request interleaves."""
        buckets = self._for(key)
        for need in wanted:
            bucket = buckets[need.limit]
            if bucket.level < need.have:
                raise refused(key, self._levels(key), need.limit, bucket.wait_time(need.have))
        for need in wanted:
            buckets[need.limit].charge(need.take)
        return Reservation(key, reserved, limit_headers(key, self._levels(key)))

    async def drain(self) -> None:
        """Nothing to wait for: settling here is immediate."""

    def settle(self, reservation: Reservation, used: int) -> None:
        """See `Limiter.settle`."""
        bucket = self._for(reservation.key).get("tokens")
        if bucket is not None:
            bucket.charge(used - reservation.tokens)
