"""Streams to the inference service: slots granted in arrival order, several at a time, and
calls the service refused over its stream cap retried."""

from __future__ import annotations

import asyncio

import pytest

from forgeline.client import exceptions
from forgeline.gateway import capacity
from forgeline.gateway.capacity import StreamSlots, refused, retry_refused

REFUSAL = "Stream removed (RST_STREAM (Received RST_STREAM with error code 7))"


def test_slots_are_granted_in_arrival_order_several_at_a_time():
    async def main() -> list[str]:
        slots = StreamSlots(4)
        order: list[str] = []
        await slots.acquire(3)

        async def take(name: str, count: int) -> None:
            await slots.acquire(count)
            order.append(name)

        big = asyncio.ensure_future(take("big", 4))
        await asyncio.sleep(0)
        small = asyncio.ensure_future(take("small", 1))
        await asyncio.sleep(0)
        # One slot is free, but the big request came first: the small one waits behind it.
        assert order == [] and slots.waiting == 2
        slots.release(3)
        await big
        assert order == ["big"] and slots.in_use == 4
        slots.release(4)
        await small
        assert order == ["big", "small"] and slots.in_use == 1
        with pytest.raises(ValueError):
            await slots.acquire(5)
        return order

    asyncio.run(main())


def test_a_caller_that_stops_waiting_leaves_the_line():
    async def main() -> None:
        slots = StreamSlots(2)
        await slots.acquire(2)
        leaving = asyncio.ensure_future(slots.acquire(2))
        staying = asyncio.ensure_future(slots.acquire(1))
        await asyncio.sleep(0)
        leaving.cancel()
        await asyncio.gather(leaving, return_exceptions=True)
        slots.release(1)
        await asyncio.wait_for(staying, 1)
        assert slots.in_use == 2 and slots.waiting == 0

    asyncio.run(main())


def test_only_refused_calls_are_retried(monkeypatch):
    monkeypatch.setattr(capacity, "REFUSED_FIRST_PAUSE_S", 0.0)
    assert refused(exceptions.Unavailable(REFUSAL))
    assert not refused(exceptions.Unavailable("base is not ready (LOADING)"))
    assert not refused(exceptions.Internal(REFUSAL))
    calls: list[int] = []

    async def refused_twice() -> str:
        calls.append(1)
        if len(calls) <= 2:
            raise exceptions.Unavailable(REFUSAL)
        return "ok"

    assert asyncio.run(retry_refused(refused_twice)) == "ok" and len(calls) == 3

    async def not_ready() -> str:
        calls.append(1)
        raise exceptions.Unavailable("base is not ready (LOADING)")

    calls.clear()
    with pytest.raises(exceptions.Unavailable):
        asyncio.run(retry_refused(not_ready))
    assert len(calls) == 1

    async def always_refused() -> str:
        calls.append(1)
        raise exceptions.Unavailable(REFUSAL)

    calls.clear()
    with pytest.raises(exceptions.Unavailable):
        asyncio.run(retry_refused(always_refused))
    assert len(calls) == capacity.REFUSED_TRIES
