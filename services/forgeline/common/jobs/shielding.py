"""Cleanup that no cancellation cuts short.

A runner that is cancelled must still stop its workers, or let an upload end and retire
what it produced. `asyncio.shield` keeps that work running, but the task awaiting it is
woken by the next cancellation (a second cancel request, the service stopping), which
would move on while the work still runs. `finish_despite_cancel` waits for the work to end
whatever arrives meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def finish_despite_cancel(work: Awaitable[T]) -> T:
    """Awaits `work` to its end, however often the calling task is cancelled meanwhile.

    Meant for the cleanup in an `except asyncio.CancelledError:` block that re-raises
    afterwards: later cancellations are absorbed, the one being handled is re-raised by
    the caller.

    Returns:
        What `work` returned.

    Raises:
        Exception: whatever `work` raised.
    """
    future = asyncio.ensure_future(work)
    while True:
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            if future.done():
                raise  # the work itself was cancelled
