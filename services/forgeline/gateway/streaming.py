"""Moving generation streams to HTTP: opening them, merging them, and server-sent events.

A request with several prompts runs one Generate stream per prompt; they are opened
together (`open_streams`) and read in arrival order (`merge`). A client that disconnects
cancels the work (`cancel_on_disconnect` while the gateway waits, Starlette for a streaming
answer), which cancels the streams and so aborts the requests in the engine. An
`EventStream` runs its cleanup however it ends, also when its client left before a single
event was sent (Starlette then never starts the event generator, whose own cleanup would
not run).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel

from forgeline.client.aio import AsyncInferenceClient, GenerateStream
from forgeline.gateway.api_errors import ApiError
from forgeline.gateway.capacity import retry_refused
from forgeline.v1 import inference_pb2

T = TypeVar("T")

SSE_DONE = b"data: [DONE]\n\n"
# Answered when the client left before the answer was ready (nginx's "client closed").
CLIENT_CLOSED = 499


async def open_stream(
    client: AsyncInferenceClient,
    request: inference_pb2.GenerateRequest,
    metadata: Sequence[tuple[str, str]] = (),
) -> GenerateStream:
    """Starts a Generate stream and waits for its first message, starting it again while
    the service refuses it as over its stream cap (see `capacity`).

    Raises:
        ForgelineError: the inference service refused the request; the stream is
            cancelled then (as on any other failure, cancellation included).
    """

    async def attempt() -> GenerateStream:
        stream = client.generate(request, metadata=metadata)
        try:
            await stream.first()
        except BaseException:
            stream.cancel()
            raise
        return stream

    return await retry_refused(attempt)


async def open_streams(
    client: AsyncInferenceClient,
    requests: Sequence[inference_pb2.GenerateRequest],
    metadata: Sequence[tuple[str, str]] = (),
) -> list[GenerateStream]:
    """Starts one Generate stream per request and waits for each one's first message.

    Raises:
        ForgelineError: the inference service refused a request; every stream is
            cancelled then (as on any other failure, cancellation included).
    """
    opening = [asyncio.ensure_future(open_stream(client, r, metadata)) for r in requests]
    try:
        return list(await asyncio.gather(*opening))
    except BaseException:
        for task in opening:
            task.cancel()
        for outcome in await asyncio.gather(*opening, return_exceptions=True):
            if isinstance(outcome, GenerateStream):
                outcome.cancel()
        raise


def merge(streams: Sequence[AsyncIterator[T]]) -> AsyncIterator[tuple[int, T]]:
    """Interleaves several async iterators as (index, item) in arrival order.

    The first failure of any iterator is raised to the reader; the others are then
    abandoned.
    """
    if len(streams) == 1:

        async def single() -> AsyncIterator[tuple[int, T]]:
            async for item in streams[0]:
                yield 0, item

        return single()

    async def merged() -> AsyncIterator[tuple[int, T]]:
        queue: asyncio.Queue = asyncio.Queue()
        done = object()

        async def pump(i: int, stream: AsyncIterator[T]) -> None:
            try:
                async for item in stream:
                    await queue.put((i, item))
            except BaseException as exc:
                await queue.put((i, exc))
                return
            await queue.put((i, done))

        tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
        try:
            remaining = len(tasks)
            while remaining:
                i, item = await queue.get()
                if item is done:
                    remaining -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield i, item
        finally:
            for task in tasks:
                task.cancel()

    return merged()


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T | Response:
    """Runs `work`, cancelling it if the client disconnects first (aborting the engine).

    Returns:
        What `work` returned, or an empty 499 response when the client left first.
    """
    task = asyncio.ensure_future(work)

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return Response(status_code=CLIENT_CLOSED)
    return task.result()


class EventStream(StreamingResponse):
    """A server-sent event stream that calls `on_close` once it ends, however it ends.

    Args:
        events: The encoded events.
        on_close: Cancels the work behind the events and accounts for it.
        headers: Extra response headers.
    """

    def __init__(
        self,
        events: AsyncIterator[bytes],
        on_close: Callable[[], Any],
        headers: dict[str, str] | None = None,
    ):
        super().__init__(
            events,
            media_type="text/event-stream",
            headers={**(headers or {}), "Cache-Control": "no-cache"},
        )
        self._events = events
        self._on_close = on_close

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        """Sends the events until they end or the client leaves, then cleans up."""
        try:
            await super().__call__(scope, receive, send)
        finally:
            # First, so the accounting holds even if the close below is interrupted.
            self._on_close()
            aclose = getattr(self._events, "aclose", None)
            if aclose is not None:
                await aclose()


def sse_event(event: BaseModel) -> bytes:
    """One server-sent event carrying `event` as JSON."""
    return b"data: " + event.model_dump_json().encode() + b"\n\n"


def sse_error(error: ApiError) -> bytes:
    """The server-sent event reporting a failure mid-stream, in OpenAI's error shape."""
    return sse_event(error.body())
