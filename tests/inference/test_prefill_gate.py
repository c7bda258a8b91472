"""The exclusive-prefill gate: sharers, exclusive holders and cancelled waiters."""

from __future__ import annotations

import asyncio

from forgeline.inference.prefill_gate import ExclusivePrefill


async def test_exclusive_waits_for_sharers_and_keeps_newcomers_out():
    gate = ExclusivePrefill()
    order: list[str] = []
    await gate.acquire_shared()  # a request already running

    async def exclusive() -> None:
        await gate.acquire_exclusive()
        order.append("exclusive")
        await asyncio.sleep(0.02)
        order.append("prefilled")
        await gate.downgrade()
        await asyncio.sleep(0.02)
        await gate.release_shared()

    async def newcomer() -> None:
        await gate.acquire_shared()
        order.append("newcomer")
        await gate.release_shared()

    task = asyncio.create_task(exclusive())
    await asyncio.sleep(0.01)
    late = asyncio.create_task(newcomer())
    await asyncio.sleep(0.01)
    assert order == []  # both wait: the exclusive one for the sharer, the newcomer for it
    await gate.release_shared()
    await asyncio.gather(task, late)
    assert order == ["exclusive", "prefilled", "newcomer"]


async def test_a_cancelled_exclusive_waiter_does_not_block_others():
    gate = ExclusivePrefill()
    await gate.acquire_shared()
    waiter = asyncio.create_task(gate.acquire_exclusive())
    await asyncio.sleep(0.01)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    await asyncio.wait_for(gate.acquire_shared(), 1)  # not blocked by the cancelled waiter
    await gate.release_shared()
    await gate.release_shared()
    await asyncio.wait_for(gate.acquire_exclusive(), 1)
    await gate.release_exclusive()
