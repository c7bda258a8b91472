"""The inference core: served names, engines, adapters and the requests running on them.

`InferenceCore` owns every served model. A base model (BASE, MERGED or QUANTIZED version)
gets its own engine; an adapter (ADAPTER version) runs on its base's engine and is chosen
by its served name exactly like a model. Requests are tracked by id, so a client that goes
away can be aborted in the engine, and unloading a model aborts what still runs on it
while unloading an adapter lets its running requests finish first. The record kept for each
served name is `forgeline.inference.served.ServedEntry`.

A model loaded with `follow` moves to each version its alias points at, without failing a
request (`forgeline.inference.rollout`); each request remembers the engine it runs on, so
one started before such a move finishes, or is aborted, on the old engine.

Faults: engines are started, watched and stopped by `forgeline.inference.engine_supervisor`.
One that dies, idle or mid-request, leaves its model FAILED with the reason, and the core
reports itself unhealthy (`on_health`) while any model is FAILED, until that model is
unloaded or loaded again. A LoadModel whose caller gives up (Ctrl-C during `forgeline
deploy`, a deadline) leaves nothing behind: the name is free at once and an engine that was
starting is stopped once it is up, rather than served to nobody.

No grpc here: the servicer (`forgeline.inference.service`) converts protobuf and calls
these methods; errors are `forgeline.client.exceptions` exceptions.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from pathlib import Path

from forgeline.client.exceptions import AlreadyExists, InvalidArgument, NotFound, Unavailable
from forgeline.common.tracing import traced_events
from forgeline.inference.adapter_placement import place_adapter
from forgeline.inference.engine import Engine, EngineDead
from forgeline.inference.engine_supervisor import WATCH_SECONDS, EngineFactory, EngineSupervisor
from forgeline.inference.options import EngineOptions
from forgeline.inference.outputs import GenerateEvent, TokenizeResult
from forgeline.inference.requests import GenerateRequest, TokenizeRequest
from forgeline.inference.resolver import ModelResolver, check_loadable, check_ref, pin
from forgeline.inference.rollout import DRAIN_SECONDS, FOLLOW_SECONDS, Rollouts, check_follow
from forgeline.inference.running import RunningRequests
from forgeline.inference.served import (
    ServedEntry,
    ServedKind,
    ServedModel,
    ServedState,
    check_served_name,
)

log = logging.getLogger(__name__)

# How long UnloadAdapter waits for requests running on the adapter before aborting them.
ADAPTER_DRAIN_SECONDS = 300.0

# Told whether the core is healthy (no served model FAILED) after every change that may matter.
HealthReporter = Callable[[bool], Awaitable[None]]


async def start_vllm_engine(path: Path, served_name: str, options: EngineOptions) -> Engine:
    """The default engine factory: a `VllmEngine` for the folder."""
    from forgeline.inference.engine import VllmEngine

    return await VllmEngine.start(path, served_name, options)


class InferenceCore:
    """Every served model and adapter of one inference service.

    Args:
        resolver: Turns references into local folders (the registry, normally).
        engine_factory: Starts an engine for a folder; vLLM unless a test passes a fake.
        default_kv_cache_bytes: KV-cache size for models loaded without any memory setting
            (0 leaves it to the engine).
        watch_seconds: How often each engine's liveness is checked (engines loaded later
            use the value `watch_seconds` has then).
        on_health: Told whether the core is healthy after each load, unload and failure.
        follow_seconds: How often followed aliases are looked up (see `rollout`).
        drain_seconds: How long requests on a replaced engine may run before being aborted.
    """

    def __init__(
        self,
        resolver: ModelResolver,
        engine_factory: EngineFactory = start_vllm_engine,
        default_kv_cache_bytes: int = 0,
        watch_seconds: float = WATCH_SECONDS,
        on_health: HealthReporter | None = None,
        follow_seconds: float = FOLLOW_SECONDS,
        drain_seconds: float = DRAIN_SECONDS,
    ):
        self.resolver = resolver
        self.engine_factory = engine_factory
        self.default_kv_cache_bytes = default_kv_cache_bytes
        self.watch_seconds = watch_seconds
        self.on_health = on_health
        self.follow_seconds = follow_seconds
        self.drain_seconds = drain_seconds
        self._served: dict[str, ServedEntry] = {}
        self._running = RunningRequests()
        self._engines = EngineSupervisor(self._engine_failed)
        self._rollouts = Rollouts(self)

    # ------------------------------------------------------------------ lookup

    def _get(self, name: str) -> ServedEntry:
        served = self._served.get(name)
        if served is None:
            raise NotFound("served model", name, f"no model or adapter is served as {name!r}")
        return served

    def _ready(self, name: str) -> tuple[ServedEntry, ServedEntry]:
        """The served entry for a request and the base whose engine runs it."""
        served = self._get(name)
        base = self._served.get(served.base) if served.kind is ServedKind.ADAPTER else served
        for entry in (served, base):
            if entry is None or entry.state is not ServedState.READY:
                state = entry.state.name if entry else "UNLOADED"
                detail = f": {entry.error}" if entry and entry.error else ""
                raise Unavailable(f"{name} is not ready ({state}{detail})")
        assert base is not None and base.engine is not None
        return served, base

    def engine_of(self, name: str) -> Engine:
        """The engine serving a model or adapter (for tools and tests).

        Raises:
            NotFound: nothing is served under that name.
            Unavailable: it is not READY.
        """
        return self._ready(name)[1].engine  # type: ignore[return-value]

    def list_models(self) -> list[ServedModel]:
        """Every served model and adapter, in load order."""
        out = []
        for served in self._served.values():
            base = served if served.kind is ServedKind.BASE else self._served.get(served.base)
            engine = base.engine if base else None
            max_len = engine.max_model_len if engine else 0
            ready = served.state is ServedState.READY
            if served.kind is ServedKind.BASE and ready and engine is not None:
                draining = self._rollouts.draining(served.name)
                running = sum(e.unfinished_requests() for e in [engine, *draining])
            else:
                running = len(served.running)
            out.append(served.describe(max_len, running))
        return out

    # ------------------------------------------------------------------ models

    def _claim(self, name: str, field: str) -> None:
        check_served_name(name, field)
        existing = self._served.get(name)
        if existing is not None and existing.state is not ServedState.FAILED:
            raise AlreadyExists("served model", name)

    async def load_model(
        self,
        ref: str,
        served_name: str = "",
        options: EngineOptions | None = None,
        follow: bool = False,
    ) -> ServedModel:
        """Fetches a registry version and starts an engine serving it as `served_name`.

        With `follow` (`ref` must be `name@alias`), the model then moves to each version
        the alias points at (see `forgeline.inference.rollout`).

        Returns once the model is READY, or FAILED with the reason (the entry stays listed
        until it is unloaded or loaded again). Loading over a FAILED entry replaces it: its
        adapters go and its engine is stopped first.

        A cancelled call (the client went away or its deadline passed) leaves nothing
        behind: the name is free again at once, and an engine that was starting is stopped
        as soon as it is up. A caller that gave up, e.g. with Ctrl-C, expects no model to
        appear later holding memory. (A registry pull already under way still completes
        into the version cache, where the next load finds it.)

        Raises:
            InvalidArgument: bad reference, name or options; the version is an adapter;
                `follow` without an alias.
            AlreadyExists: the served name is taken.
            NotFound: the reference names no version.
            asyncio.CancelledError: the call was cancelled.
        """
        ref = check_ref(ref)
        if follow:
            check_follow(ref)
        options = (options or EngineOptions()).with_defaults(self.default_kv_cache_bytes)
        options.validate()
        name = served_name or ref.split(":")[0].split("@")[0]
        self._claim(name, "served_name")
        follows = ref if follow else ""
        served = ServedEntry(name, ServedKind.BASE, ref, options=options, follows=follows)
        failed = self._served.pop(name, None)
        self._served[name] = served
        try:
            if failed is not None:
                await self._release(failed)
            described = await self._start(served)
            self._rollouts.follow(served)
            return described
        except BaseException:
            if self._served.get(name) is served:
                del self._served[name]
            raise
        finally:
            await self._report_health()

    async def _start(self, served: ServedEntry) -> ServedModel:
        name = served.name
        path, version = await asyncio.to_thread(self.resolver.resolve_model_dir, served.ref)
        check_loadable(version)
        served.version = version
        log.info("starting an engine for %s (%s) from %s", name, pin(version), path)
        try:
            engine = await self._engines.start(self.engine_factory, path, name, served.options)
        except Exception as exc:
            log.exception("the engine for %s did not start", name)
            served.state = ServedState.FAILED
            served.error = f"the engine did not start: {type(exc).__name__}: {exc}"
            return served.describe(0, 0)
        if self._served.get(name) is not served:
            # Unloaded while starting.
            await self._engines.stop(name, engine)
            raise Unavailable(f"{name} was unloaded while its engine started")
        served.engine = engine
        served.state = ServedState.READY
        self._engines.watch(name, engine, self.watch_seconds)
        log.info("%s is ready (max_model_len %d)", name, engine.max_model_len)
        return served.describe(engine.max_model_len, 0)

    async def _release(self, served: ServedEntry) -> None:
        """Forgets a base's adapters, stops following its alias and stops its engines."""
        for adapter in served.adapters:
            self._served.pop(adapter, None)
        await self._rollouts.stop(served)
        await self._engines.stop(served.name, served.engine)

    async def unload_model(self, name: str) -> None:
        """Stops a model's engine and removes its adapters; running requests are aborted.

        Raises:
            NotFound: nothing is served under that name.
            InvalidArgument: the name is an adapter.
        """
        served = self._get(name)
        if served.kind is ServedKind.ADAPTER:
            raise InvalidArgument("served_name", f"{name} is an adapter; use UnloadAdapter")
        del self._served[name]
        for adapter in served.adapters:
            self._served.pop(adapter, None)
        try:
            for request_id, running in self._running.of_base(served):
                await running.engine.abort(request_id)
            await self._release(served)
        finally:
            await self._report_health()

    # ------------------------------------------------------------------ health

    async def _engine_failed(self, name: str, engine: Engine, reason: str) -> None:
        served = self._served.get(name)
        if served is not None and served.engine is engine:
            await self._fail(served, reason)

    async def _fail(self, base: ServedEntry, reason: str) -> None:
        """Marks a READY base FAILED because its engine stopped, and reports it."""
        if base.state is not ServedState.READY or self._served.get(base.name) is not base:
            return
        base.state = ServedState.FAILED
        base.error = f"the engine stopped: {reason}"
        log.error("the engine of %s stopped: %s", base.name, reason)
        self._engines.unwatch(base.name, base.engine)
        await self._report_health()

    def healthy(self) -> bool:
        """Whether every served model works (none is FAILED)."""
        return all(s.state is not ServedState.FAILED for s in self._served.values())

    async def _report_health(self) -> None:
        if self.on_health is None:
            return
        try:
            await self.on_health(self.healthy())
        except Exception:
            log.exception("reporting the health of the inference core failed")

    # ------------------------------------------------------------------ adapters

    async def load_adapter(
        self, ref: str, served_name: str = "", base_served_name: str | None = None
    ) -> ServedModel:
        """Adds a registry ADAPTER version to a served base model's engine.

        Without `base_served_name` the base is the served model loaded from the adapter's
        parent version.

        Raises:
            InvalidArgument: bad reference or name, or the version is not an adapter.
            AlreadyExists: the served name is taken.
            NotFound: the reference or the named base does not exist.
            FailedPrecondition: no base to run on, LoRA not enabled there, rank too high,
                or the engine refused the adapter.
        """
        ref = check_ref(ref)
        name = served_name or ref.split(":")[0].split("@")[0]
        self._claim(name, "served_name")
        if base_served_name is not None:
            self._get(base_served_name)
        served = ServedEntry(name=name, kind=ServedKind.ADAPTER, ref=ref)
        self._served.pop(name, None)
        self._served[name] = served
        try:
            path, version = await asyncio.to_thread(self.resolver.resolve_model_dir, ref)
            served.version = version
            base = place_adapter(self._served, version, path, base_served_name)
            served.base = base.name
            assert base.engine is not None
            served.handle = await base.engine.add_adapter(name, path)
            if self._served.get(base.name) is not base:
                raise Unavailable(f"{base.name} was unloaded while {name} was being added")
        except BaseException:
            if self._served.get(name) is served:
                del self._served[name]
            raise
        base.adapters.append(name)
        served.state = ServedState.READY
        log.info("adapter %s (%s) added to %s", name, pin(version), base.name)
        return served.describe(base.engine.max_model_len, 0)

    async def unload_adapter(self, name: str) -> None:
        """Removes an adapter; requests running on it finish first.

        New requests for it are refused at once. Requests still running after
        `ADAPTER_DRAIN_SECONDS` are aborted.

        Raises:
            NotFound: nothing is served under that name.
            InvalidArgument: the name is a base model.
        """
        served = self._get(name)
        if served.kind is not ServedKind.ADAPTER:
            raise InvalidArgument("served_name", f"{name} is a base model; use UnloadModel")
        del self._served[name]
        base = self._served.get(served.base)
        if base is not None and name in base.adapters:
            base.adapters.remove(name)
        if base is None or base.engine is None or served.handle is None:
            return
        if served.running:
            log.info("waiting for %d requests on %s", len(served.running), name)
            served.drained.clear()
            try:
                await asyncio.wait_for(served.drained.wait(), ADAPTER_DRAIN_SECONDS)
            except TimeoutError:
                for request_id in list(served.running):
                    await base.engine.abort(request_id)
        await base.engine.remove_adapter(served.handle)
        log.info("adapter %s removed from %s", name, base.name)

    # ------------------------------------------------------------------ requests

    async def tokenize(self, request: TokenizeRequest) -> TokenizeResult:
        """Tokenizes text or a conversation exactly as Generate would for that model.

        Raises:
            InvalidArgument: bad input.
            NotFound: unknown model.
        """
        request.validate()
        _, base = self._ready(request.model)
        assert base.engine is not None
        return await base.engine.tokenize(request)

    async def generate(
        self, request: GenerateRequest, owner: object | None = None
    ) -> AsyncIterator[GenerateEvent]:
        """Streams a generation on the model or adapter the request names.

        Closing the iterator early aborts the request in the engine.

        Args:
            request: What to generate.
            owner: Any object standing for the caller; `is_running` and `abort` given the
                same object act only on the request this call started, never on another
                call's request that holds the same id.

        Raises:
            InvalidArgument: the request is malformed (every problem listed).
            NotFound: no model or adapter is served under that name.
            AlreadyExists: the request id is in use by a running request.
            Unavailable: the model is not ready, or its engine died.
        """
        request.validate()
        served, base = self._ready(request.model)
        engine = base.engine
        assert engine is not None and served.version is not None
        request_id = self._running.start(request.request_id, served, engine, owner)
        version = pin(served.version)  # the version answering, on the first event
        try:
            events = traced_events(
                engine.generate(request, request_id, served.handle),
                "engine generate",
                {"forgeline.model": served.name, "forgeline.engine_request_id": request_id},
            )
            async with aclosing(events):
                async for event in events:
                    yield dataclasses.replace(event, model_version=version) if version else event
                    version = ""
        except EngineDead as exc:
            if base.engine is engine:  # not an old engine a rollout replaced
                await self._fail(base, str(exc))
            raise Unavailable(f"the engine of {base.name} stopped; load the model again") from exc
        finally:
            self._running.finish(request_id)

    def is_running(self, request_id: str, owner: object | None = None) -> bool:
        """Whether a request with this id is running (started by `owner`, when given)."""
        return self._running.get(request_id, owner) is not None

    async def abort(self, request_id: str, owner: object | None = None) -> bool:
        """Aborts a running request in its engine; returns whether it was running.

        With `owner`, only the request that owner started (see `generate`) is aborted.
        """
        running = self._running.get(request_id, owner)
        if running is None:
            return False
        log.info("aborting request %s on %s", request_id, running.served.name)
        await running.engine.abort(request_id)
        return True

    async def close(self) -> None:
        """Stops every engine, including those of cancelled loads still starting."""
        for name in [n for n, s in self._served.items() if s.kind is ServedKind.BASE]:
            try:
                await self.unload_model(name)
            except Exception:
                log.exception("stopping %s failed", name)
        await self._rollouts.close()
        await self._engines.close()
        self.resolver.close()
