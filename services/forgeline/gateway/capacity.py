"""How many calls the gateway keeps open to the inference service, and the queue beyond.

The gateway reaches the inference service over one HTTP/2 connection, and the service
refuses streams past its per-connection cap (`FORGELINE_MAX_STREAMS_PER_CONNECTION`)
instead of queueing them: without a bound here, the 101st concurrent generation would
fail with a 503 however idle the engine is. So every call takes slots from a
`StreamSlots` first and gives them back once its streams are closed. A request takes one
slot per prompt, all at once, so a request never holds some while it waits for the rest;
requests wait their turn in arrival order, so a large one is not starved by small ones.
A client that leaves while waiting simply leaves the queue.

The service frees a stream some time after the gateway sees it end (its handler has to
finish first), so under churn it may still refuse a call the gateway counted as fitting.
A refused call (HTTP/2 `REFUSED_STREAM`) never reached the service's code, so
`retry_refused` retries it after a short pause instead of failing the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TypeVar

from forgeline.client import exceptions

log = logging.getLogger(__name__)

T = TypeVar("T")

# Pauses between tries of a refused call: 5 ms doubling to 0.25 s, about 2 s in all.
REFUSED_TRIES = 12
REFUSED_FIRST_PAUSE_S = 0.005
REFUSED_MAX_PAUSE_S = 0.25


class StreamSlots:
    """A counting semaphore taken several units at a time, granted in arrival order.

    Args:
        limit: Slots in all.
    """

    def __init__(self, limit: int):
        if limit < 1:
            raise ValueError(f"need at least one slot, got {limit}")
        self.limit = limit
        self.in_use = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    @property
    def waiting(self) -> int:
        """Callers waiting for slots now."""
        return sum(1 for _, future in self._waiters if not future.done())

    async def acquire(self, count: int) -> None:
        """Waits until `count` slots are free and takes them.

        Raises:
            ValueError: `count` is more than the limit (it would wait forever).
            CancelledError: the wait was cancelled; nothing is held then.
        """
        if count > self.limit:
            raise ValueError(f"{count} slots asked, only {self.limit} exist")
        if not self._waiters and self.in_use + count <= self.limit:
            self.in_use += count
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((count, future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                # Granted just as the wait was cancelled: hand the slots on.
                self.release(count)
            else:
                # Already dropped from the line if a grant skipped it meanwhile.
                with contextlib.suppress(ValueError):
                    self._waiters.remove((count, future))
                self._grant()
            raise

    def release(self, count: int) -> None:
        """Gives back `count` slots and grants them to the callers next in line."""
        self.in_use -= count
        self._grant()

    def _grant(self) -> None:
        while self._waiters:
            count, future = self._waiters[0]
            if future.done():
                self._waiters.popleft()
                continue
            if self.in_use + count > self.limit:
                return
            self._waiters.popleft()
            self.in_use += count
            future.set_result(None)


def refused(exc: exceptions.ForgelineError) -> bool:
    """Whether the service refused a call before any of its code saw it (HTTP/2
    `REFUSED_STREAM`, error code 7), which makes the call safe to send again.

    The SDK raises this as `Unavailable` with gRPC's transport message, the only place
    the reason shows.
    """
    message = exc.message
    return (
        isinstance(exc, exceptions.Unavailable)
        and "RST_STREAM" in message
        and "error code 7" in message
    )


async def retry_refused(call: Callable[[], Awaitable[T]]) -> T:
    """Runs `call`, running it again while the service refuses it as over its stream cap.

    Raises:
        ForgelineError: what the last try raised; a refusal after `REFUSED_TRIES` tries.
    """
    pause = REFUSED_FIRST_PAUSE_S
    for attempt in range(1, REFUSED_TRIES + 1):
        try:
            return await call()
        except exceptions.Unavailable as exc:
            if not refused(exc) or attempt == REFUSED_TRIES:
                raise
            log.debug("inference call refused (try %d); retrying in %.3fs", attempt, pause)
        await asyncio.sleep(pause)
        pause = min(pause * 2, REFUSED_MAX_PAUSE_S)
    raise AssertionError("unreachable")
