"""Rate limits shared by gateway replicas: the token buckets of `limits`, kept in Redis.

Each key's buckets live in one Redis hash (`forgeline:gateway:limits:<key name>`: each
bucket's level and when it was last updated), changed only by one Lua script, so checking
every bucket and taking from all of them is one atomic step however many replicas admit
requests for the key at once. Time is Redis's own clock, so the replicas' clocks need not
agree. A hash expires once its buckets would be full again (an absent hash is a full
bucket), so idle keys cost nothing.

Why not the `limits` package, which has Redis storage: admission needs what its
strategies do not offer. A request is checked against two limits at once (requests and
tokens) and takes from neither when either refuses; it reserves an upper bound that is
settled later, refunding what it did not use or charging beyond the limit as debt; and a
refusal says how long until the request fits (`Retry-After`), not when a window resets.
Its moving window also stores one Redis list entry per unit, a million entries for a
million tokens per minute. The script here is the in-process token bucket, line for line.

Settling a finished request (a refund or an extra charge) runs in the background, so
that it completes even when the request's task is cancelled; a settlement Redis refuses is
logged and dropped. Redis failing at admission raises `LimitsUnavailable`, which the
gateway answers with a 503.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from forgeline.gateway.config import check_redis_url
from forgeline.gateway.keys import ApiKey
from forgeline.gateway.limits import (
    Clock,
    Limiter,
    LimitsUnavailable,
    Need,
    Reservation,
    capacities,
    limit_headers,
    refused,
)

log = logging.getLogger(__name__)

KEY_PREFIX = "forgeline:gateway:limits:"
# Seconds to connect and to wait for an answer: a request waits at most about this long
# (twice, with the one retry) before it is answered 503. The URL's own
# `socket_connect_timeout` / `socket_timeout` parameters override them.
TIMEOUT_SECONDS = 1.0

# ARGV: now (empty: Redis's clock), mode, then per bucket: limit, capacity, have, take.
# mode "take": take from every bucket if each holds `have`; "charge": take regardless;
# "peek": change nothing. Returns the refused limit (or ""), the wait, and each bucket's
# level after the call, as strings (Redis would truncate Lua numbers to integers).
_SCRIPT = """
local key = KEYS[1]
local now = tonumber(ARGV[1])
if not now then
  local time = redis.call('TIME')
  now = tonumber(time[1]) + tonumber(time[2]) / 1000000
end
local mode = ARGV[2]
local buckets = {}
for i = 3, #ARGV, 4 do
  local limit = ARGV[i]
  local capacity = tonumber(ARGV[i + 1])
  local rate = capacity / 60
  local level = tonumber(redis.call('HGET', key, limit))
  local stamp = tonumber(redis.call('HGET', key, limit .. ':at'))
  if level == nil or stamp == nil then
    level = capacity
  else
    level = math.min(capacity, level + math.max(0, now - stamp) * rate)
  end
  buckets[#buckets + 1] = {limit = limit, capacity = capacity, rate = rate,
    have = tonumber(ARGV[i + 2]), take = tonumber(ARGV[i + 3]), level = level}
end
local refused, wait = '', 0
if mode == 'take' then
  for _, b in ipairs(buckets) do
    if b.level < b.have then
      refused, wait = b.limit, (b.have - b.level) / b.rate
      break
    end
  end
end
if mode ~= 'peek' and refused == '' then
  local full_in = 0
  for _, b in ipairs(buckets) do
    b.level = b.level - b.take
    redis.call('HSET', key, b.limit, string.format('%.17g', b.level),
      b.limit .. ':at', string.format('%.17g', now))
    full_in = math.max(full_in, (b.capacity - b.level) / b.rate)
  end
  -- Never shortens the expiry: another bucket of the hash may refill more slowly.
  local ttl = math.ceil(full_in * 1000) + 1000
  if redis.call('PTTL', key) < ttl then
    redis.call('PEXPIRE', key, ttl)
  end
end
local out = {refused, string.format('%.17g', wait)}
for _, b in ipairs(buckets) do
  out[#out + 1] = b.limit
  out[#out + 1] = string.format('%.17g', b.level)
end
return out
"""


def redacted(url: str) -> str:
    """`url` without its user name and password, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


class RedisLimiter(Limiter):
    """Token buckets per API key in Redis, shared by every limiter using the same server.

    Args:
        url: The Redis server (`redis://host:6379/0`, `rediss://...`, `unix:///path`).
        clock: Seconds to use instead of Redis's clock (tests); every limiter sharing
            the server must then use the same clock.
        prefix: Prefix of the Redis keys.
    """

    def __init__(self, url: str, clock: Clock | None = None, prefix: str = KEY_PREFIX):
        check_redis_url(url)
        self.where = redacted(url)
        self._url = url
        self._clock = clock
        self._prefix = prefix
        self._redis: Redis | None = None
        self._lua: AsyncScript | None = None
        self._pending: set[asyncio.Task] = set()

    def _script(self) -> AsyncScript:
        # Made on first use, inside the server's event loop, which its connections belong to.
        if self._lua is None:
            self._redis = Redis.from_url(
                self._url,
                decode_responses=True,
                socket_connect_timeout=TIMEOUT_SECONDS,
                socket_timeout=TIMEOUT_SECONDS,
                # One retry on a fresh connection (Redis restarted); then the request fails.
                retry=Retry(NoBackoff(), 1),
            )
            self._lua = self._redis.register_script(_SCRIPT)
        return self._lua

    async def _run(
        self, key: ApiKey, mode: str, buckets: list[Need]
    ) -> tuple[str, float, dict[str, float]]:
        """Runs the script on the key's hash: (refused limit or "", wait, levels).

        Raises:
            LimitsUnavailable: Redis did not answer, or refused the script.
        """
        capacity = capacities(key)
        args: list[str | int] = ["" if self._clock is None else repr(self._clock()), mode]
        for need in buckets:
            args += [need.limit, capacity[need.limit], need.have, need.take]
        try:
            reply = await self._script()(keys=[self._prefix + key.name], args=args)
        except (RedisError, OSError) as exc:
            raise LimitsUnavailable(
                f"the rate limits in Redis at {self.where} cannot be reached: {exc}"
            ) from exc
        levels = {reply[i]: float(reply[i + 1]) for i in range(2, len(reply), 2)}
        return reply[0], float(reply[1]), levels

    async def headers(self, key: ApiKey) -> dict[str, str]:
        """See `Limiter.headers`."""
        peek = [Need(limit, 0, 0) for limit in capacities(key)]
        if not peek:
            return {}
        _, _, levels = await self._run(key, "peek", peek)
        return limit_headers(key, levels)

    async def take(self, key: ApiKey, reserved: int, wanted: list[Need]) -> Reservation:
        """See `Limiter.take`."""
        if not wanted:  # a key without limits
            return Reservation(key, reserved)
        limit, wait, levels = await self._run(key, "take", wanted)
        if limit:
            raise refused(key, levels, limit, wait)
        return Reservation(key, reserved, limit_headers(key, levels))

    def settle(self, reservation: Reservation, used: int) -> None:
        """See `Limiter.settle`: the difference is sent to Redis in the background."""
        key = reservation.key
        amount = used - reservation.tokens
        if not key.tokens_per_minute or amount == 0:
            return
        task = asyncio.get_running_loop().create_task(self._charge(key, amount))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _charge(self, key: ApiKey, amount: int) -> None:
        charge = [Need("tokens", 0, amount)]
        try:
            await self._run(key, "charge", charge)
        except LimitsUnavailable as exc:
            log.warning("key %s: its tokens could not be settled (%+d): %s", key.name, amount, exc)

    async def drain(self) -> None:
        """See `Limiter.drain`."""
        while self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    async def close(self) -> None:
        """Drains the settlements and closes the connections to Redis."""
        await self.drain()
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = self._lua = None
