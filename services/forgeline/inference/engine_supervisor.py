"""Engines outside of requests: started so that a cancelled load leaves none behind,
watched while they serve, and stopped with their errors logged.

Starting: vLLM builds an engine in a worker thread that cannot be interrupted, so a load
whose caller gives up (Ctrl-C, a deadline) cannot simply drop it. Each start runs in its
own task; when the caller is cancelled the task goes on, and the engine is stopped as soon
as it is up instead of being served to nobody.

Watching: an engine whose process dies while no request runs would otherwise go unnoticed
until the next request fails, the model listed READY and the service answering health
checks SERVING. One background task per engine asks it `failure()` every few seconds and
reports the first failure, once. Polling rather than waiting on a process: the `Engine`
protocol hides processes (fake engines have none), and vLLM already turns a dead engine
process into its own "errored" state, which is cheap to read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from forgeline.inference.engine import Engine
from forgeline.inference.options import EngineOptions

log = logging.getLogger(__name__)

# How often each engine is asked whether it still runs.
WATCH_SECONDS = 2.0

EngineFactory = Callable[[Path, str, EngineOptions], Awaitable[Engine]]
# Called with the served name, the engine and why it can no longer serve.
FailureHandler = Callable[[str, Engine, str], Awaitable[None]]


class EngineSupervisor:
    """Starts, watches and stops the engines of one inference core.

    Args:
        on_failure: Awaited once per watched engine, when it is first seen failed.
    """

    def __init__(self, on_failure: FailureHandler):
        self._on_failure = on_failure
        # Served name -> the engine watched and the task watching it.
        self._watches: dict[str, tuple[Engine, asyncio.Task]] = {}
        # Stops of engines whose load was cancelled while they started.
        self._abandoned: set[asyncio.Task] = set()

    async def start(
        self, factory: EngineFactory, path: Path, name: str, options: EngineOptions
    ) -> Engine:
        """Starts an engine with `factory`; if this call is cancelled, stops it once it is up.

        Raises:
            asyncio.CancelledError: the call was cancelled (the engine stops by itself).
            Exception: whatever the factory raises.
        """
        starting = asyncio.ensure_future(factory(path, name, options))
        try:
            return await asyncio.shield(starting)
        except asyncio.CancelledError:
            log.info("loading %s was cancelled; its engine stops once started", name)
            task = asyncio.create_task(self._stop_when_started(starting, name))
            self._abandoned.add(task)
            task.add_done_callback(self._abandoned.discard)
            raise

    async def _stop_when_started(self, starting: asyncio.Future, name: str) -> None:
        try:
            engine = await starting
        except BaseException:
            return  # it never started
        await self.stop(name, engine)

    async def stop(self, name: str, engine: Engine | None) -> None:
        """Stops watching `engine` and shuts it down (errors are logged, not raised)."""
        if engine is None:
            return
        self.unwatch(name, engine)
        log.info("stopping the engine of %s", name)
        try:
            await engine.shutdown()
        except Exception:
            log.exception("stopping the engine of %s failed", name)

    def watch(self, name: str, engine: Engine, interval: float = WATCH_SECONDS) -> None:
        """Starts watching the engine serving `name` (replacing any earlier watch of it)."""
        self.unwatch(name)
        task = asyncio.create_task(self._watch(name, engine, interval), name=f"watch-{name}")
        self._watches[name] = (engine, task)

    def unwatch(self, name: str, engine: Engine | None = None) -> None:
        """Stops watching `name` (only if its watched engine is `engine`, when given).

        An engine being stopped on purpose is no failure. Naming the engine keeps a late
        stop of an old engine from ending the watch of a newer one serving the same name.
        """
        watched = self._watches.get(name)
        if watched is None or (engine is not None and watched[0] is not engine):
            return
        del self._watches[name]
        watched[1].cancel()

    async def close(self) -> None:
        """Stops every watch and waits until the engines of cancelled loads are stopped."""
        watches = [task for _, task in self._watches.values()]
        self._watches.clear()
        for task in watches:
            task.cancel()
        await asyncio.gather(*watches, *self._abandoned, return_exceptions=True)

    async def _watch(self, name: str, engine: Engine, interval: float) -> None:
        reason: str | None = None
        while reason is None:
            await asyncio.sleep(interval)
            try:
                reason = engine.failure()
            except Exception as exc:
                # A check that cannot tell is a failed check, as for any health probe.
                log.exception("checking the engine of %s failed", name)
                reason = f"its liveness check failed: {type(exc).__name__}: {exc}"
        # Done watching: the report below must not be cancelled by `unwatch(name)`, which
        # the failure handling calls.
        watched = self._watches.get(name)
        if watched is not None and watched[1] is asyncio.current_task():
            del self._watches[name]
        await self._on_failure(name, engine, reason)
