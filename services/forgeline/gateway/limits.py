"""Per-key rate limits: token buckets for requests per minute and tokens per minute.

A request takes one unit from its key's request bucket when it is admitted. Tokens are
only known once the request ends, so the token bucket admits a request while it is not in
debt and is charged the actual prompt + completion tokens afterwards (it may go below
zero; the key then waits until it refills). A refused request gets the seconds until it
would be admitted, for `Retry-After`.
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

    def __str__(self) -> str:
        return (
            f"Rate limit reached for {self.limit} per minute; try again in {self.retry_after:.1f}s"
        )


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
        """Admits one request of `key`; returns the rate-limit headers to send.

        Raises:
            RateLimited: the key is over a limit; says which and for how long.
        """
        buckets = self._for(key)
        if buckets.tokens is not None and buckets.tokens.level < 1:
            wait = buckets.tokens.wait_time(1)
            raise RateLimited("tokens", wait, self._refusal_headers(key, wait))
        if buckets.requests is not None and not buckets.requests.take(1):
            wait = buckets.requests.wait_time(1)
            raise RateLimited("requests", wait, self._refusal_headers(key, wait))
        return self.headers(key)

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
