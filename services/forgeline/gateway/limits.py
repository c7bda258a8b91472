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
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

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

    def reset_after(self) -> float:
        """Seconds until the bucket is full again."""
        return max(0.0, (self.capacity - self.level) / self.per_second)


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


@dataclass
class _KeyBuckets:
    requests: TokenBucket | None
    tokens: TokenBucket | None


class RateLimiter:
    """Token buckets per API key."""

    def __init__(self, clock: Clock = time.monotonic):
        self._clock = clock
        self._buckets: dict[str, _KeyBuckets] = {}

    def _for(self, key: ApiKey) -> _KeyBuckets:
        buckets = self._buckets.get(key.name)
        if buckets is None:
            rpm, tpm = key.requests_per_minute, key.tokens_per_minute
            buckets = _KeyBuckets(
                TokenBucket(rpm, rpm / 60.0, self._clock) if rpm else None,
                TokenBucket(tpm, tpm / 60.0, self._clock) if tpm else None,
            )
            self._buckets[key.name] = buckets
        return buckets

    def headers(self, key: ApiKey) -> dict[str, str]:
        """OpenAI's `x-ratelimit-*` headers for the key's current state."""
        out = {}
        buckets = self._for(key)
        for limit, bucket in (("requests", buckets.requests), ("tokens", buckets.tokens)):
            if bucket is None:
                continue
            out[f"x-ratelimit-limit-{limit}"] = str(int(bucket.capacity))
            out[f"x-ratelimit-remaining-{limit}"] = str(max(0, math.floor(bucket.level)))
            out[f"x-ratelimit-reset-{limit}"] = _duration(bucket.reset_after())
        return out

    def admit(self, key: ApiKey) -> dict[str, str]:
        """Admits one generation of `key` with nothing reserved; returns the headers to send.

        Raises:
            RateLimited: the key is over a limit; says which and for how long.
        """
        return self.reserve(key).headers

    def reserve(
        self, key: ApiKey, generations: int = 1, tokens: int = 0, bounded: bool = True
    ) -> Reservation:
        """Admits a request of `generations` generations and reserves `tokens` for it.

        Both buckets are checked before either is taken from, so a refused request takes
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
        """
        buckets = self._for(key)
        reserved = 0
        if buckets.tokens is not None:
            reserved = tokens if bounded else min(tokens, int(buckets.tokens.capacity))
        for limit, bucket, amount in (
            ("tokens", buckets.tokens, reserved),
            ("requests", buckets.requests, generations),
        ):
            if bucket is not None and amount > bucket.capacity:
                raise RateLimited(
                    limit,
                    0.0,
                    self.headers(key),
                    too_large=f"Request too large: it needs {amount} {limit} but this key's "
                    f"limit is {int(bucket.capacity)} {limit} per minute; send fewer prompts, "
                    "a smaller n or a smaller max_tokens",
                )
        for limit, bucket, amount in (
            ("tokens", buckets.tokens, max(reserved, 1)),
            ("requests", buckets.requests, generations),
        ):
            if bucket is not None and bucket.level < amount:
                wait = bucket.wait_time(amount)
                raise RateLimited(limit, wait, self._refusal_headers(key, wait))
        if buckets.tokens is not None:
            buckets.tokens.charge(reserved)
        if buckets.requests is not None:
            buckets.requests.charge(generations)
        return Reservation(key, reserved, self.headers(key))

    def settle(self, reservation: Reservation, used: int) -> None:
        """Settles a finished request: refunds what it reserved but did not use, or charges
        what it used beyond that."""
        bucket = self._for(reservation.key).tokens
        if bucket is not None:
            bucket.charge(used - reservation.tokens)

    def _refusal_headers(self, key: ApiKey, wait: float) -> dict[str, str]:
        return {
            **self.headers(key),
            "Retry-After": str(max(1, math.ceil(wait))),
            "retry-after-ms": str(max(1, math.ceil(wait * 1000))),
        }

    def charge(self, key: ApiKey, tokens: int) -> None:
        """Charges the tokens a finished request used to its key."""
        buckets = self._for(key)
        if buckets.tokens is not None and tokens:
            buckets.tokens.charge(tokens)
