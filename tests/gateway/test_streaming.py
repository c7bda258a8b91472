"""`EventStream`: its cleanup runs once however the stream ends, also when the client left
before the event generator ever started."""

from __future__ import annotations

import asyncio

from forgeline.gateway.streaming import EventStream

SCOPE = {"type": "http", "asgi": {"spec_version": "2.3"}, "headers": []}


def run(events, receive, send) -> list[str]:
    closed: list[str] = []

    async def main() -> None:
        response = EventStream(events, lambda: closed.append("closed"))
        await response(SCOPE, receive, send)

    asyncio.run(main())
    return closed


def test_cleanup_runs_when_the_client_left_before_the_generator_started():
    started = []

    async def events():
        started.append(True)
        yield b"data: x\n\n"

    async def gone() -> dict:
        return {"type": "http.disconnect"}

    async def yielding_send(_message: dict) -> None:
        await asyncio.sleep(0)

    assert run(events(), gone, yielding_send) == ["closed"]
    assert not started  # the generator's own `finally` could not have helped


def test_cleanup_runs_once_after_a_complete_stream():
    sent: list[dict] = []
    finished = []

    async def events():
        try:
            yield b"data: a\n\n"
            yield b"data: [DONE]\n\n"
        finally:
            finished.append(True)

    async def waiting() -> dict:
        await asyncio.sleep(10)
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    assert run(events(), waiting, send) == ["closed"]
    assert finished == [True]
    assert [m.get("body") for m in sent[1:]] == [b"data: a\n\n", b"data: [DONE]\n\n", b""]
    assert (b"cache-control", b"no-cache") in sent[0]["headers"]
