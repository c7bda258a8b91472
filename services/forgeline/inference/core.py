"""The inference core: served names, engines, adapters and the requests running on them.

`InferenceCore` owns every served model. A base model (BASE, MERGED or QUANTIZED version)
gets its own engine; an adapter (ADAPTER version) runs on its base's engine and is chosen
by its served name exactly like a model. Requests are tracked by id, so a client that goes
away can be aborted in the engine, and unloading a model aborts what still runs on it
while unloading an adapter lets its running requests finish first. The record kept for each
served name is `forgeline.inference.served.ServedEntry`.

No grpc here: the servicer (`forgeline.inference.service`) converts protobuf and calls
these methods; errors are `forgeline.client.exceptions` exceptions.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from pathlib import Path

from forgeline.client.exceptions import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from forgeline.inference.engine import Engine, EngineDead
from forgeline.inference.options import EngineOptions
from forgeline.inference.outputs import GenerateEvent, TokenizeResult
from forgeline.inference.requests import GenerateRequest, TokenizeRequest
from forgeline.inference.resolver import ModelResolver, check_ref, pin
from forgeline.inference.served import (
    ServedEntry,
    ServedKind,
    ServedModel,
    ServedState,
    check_served_name,
)
from forgeline.v1 import registry_pb2

log = logging.getLogger(__name__)

# Request ids are chosen by clients and reused in engine calls and logs: printable, no spaces.
REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")
LOADABLE_KINDS = {
    registry_pb2.VERSION_KIND_BASE,
    registry_pb2.VERSION_KIND_MERGED,
    registry_pb2.VERSION_KIND_QUANTIZED,
}
# How long UnloadAdapter waits for requests running on the adapter before aborting them.
ADAPTER_DRAIN_SECONDS = 300.0

EngineFactory = Callable[[Path, str, EngineOptions], Awaitable[Engine]]


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
    """

    def __init__(
        self,
        resolver: ModelResolver,
        engine_factory: EngineFactory = start_vllm_engine,
        default_kv_cache_bytes: int = 0,
    ):
        self.resolver = resolver
        self.engine_factory = engine_factory
        self.default_kv_cache_bytes = default_kv_cache_bytes
        self._served: dict[str, ServedEntry] = {}
        self._requests: dict[str, ServedEntry] = {}

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
            if served.kind is ServedKind.BASE and engine is not None:
                running = engine.unfinished_requests()
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
        self, ref: str, served_name: str = "", options: EngineOptions | None = None
    ) -> ServedModel:
        """Fetches a registry version and starts an engine serving it as `served_name`.

        Returns once the model is READY, or FAILED with the reason (the entry stays listed
        until it is unloaded or loaded again).

        Raises:
            InvalidArgument: bad reference, name or options; or the version is an adapter.
            AlreadyExists: the served name is taken.
            NotFound: the reference names no version.
        """
        ref = check_ref(ref)
        options = (options or EngineOptions()).with_defaults(self.default_kv_cache_bytes)
        options.validate()
        name = served_name or ref.split(":")[0].split("@")[0]
        self._claim(name, "served_name")
        served = ServedEntry(name=name, kind=ServedKind.BASE, ref=ref, options=options)
        self._served.pop(name, None)  # a FAILED entry is replaced
        self._served[name] = served
        try:
            path, version = await asyncio.to_thread(self.resolver.resolve_model_dir, ref)
            if version.kind not in LOADABLE_KINDS:
                kind = registry_pb2.VersionKind.Name(version.kind)
                hint = "; load it with LoadAdapter" if kind.endswith("ADAPTER") else ""
                raise InvalidArgument("ref", f"{pin(version)} is a {kind} version{hint}")
        except BaseException:
            self._served.pop(name, None)
            raise
        served.version = version
        log.info("starting an engine for %s (%s) from %s", name, pin(version), path)
        try:
            engine = await self.engine_factory(path, name, options)
        except Exception as exc:
            log.exception("the engine for %s did not start", name)
            served.state = ServedState.FAILED
            served.error = f"the engine did not start: {type(exc).__name__}: {exc}"
            return served.describe(0, 0)
        if self._served.get(name) is not served:
            # Unloaded while starting.
            await engine.shutdown()
            raise Unavailable(f"{name} was unloaded while its engine started")
        served.engine = engine
        served.state = ServedState.READY
        log.info("%s is ready (max_model_len %d)", name, engine.max_model_len)
        return served.describe(engine.max_model_len, 0)

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
        engine = served.engine
        if engine is None:
            return
        for request_id, owner in list(self._requests.items()):
            if owner is served or owner.base == name:
                await engine.abort(request_id)
        log.info("stopping the engine of %s", name)
        await engine.shutdown()

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
            if version.kind != registry_pb2.VERSION_KIND_ADAPTER:
                kind = registry_pb2.VersionKind.Name(version.kind)
                raise InvalidArgument(
                    "ref", f"{pin(version)} is a {kind} version, not an adapter; use LoadModel"
                )
            base = self._base_for(version, base_served_name)
            self._check_rank(path, base)
            served.base = base.name
            assert base.engine is not None
            served.handle = await base.engine.add_adapter(name, path)
        except BaseException:
            self._served.pop(name, None)
            raise
        if self._served.get(base.name) is not base:
            raise Unavailable(f"{base.name} was unloaded while {name} was being added")
        base.adapters.append(name)
        served.state = ServedState.READY
        log.info("adapter %s (%s) added to %s", name, pin(version), base.name)
        return served.describe(base.engine.max_model_len, 0)

    def _base_for(self, version: registry_pb2.Version, base_served_name: str | None) -> ServedEntry:
        if base_served_name is not None:
            base = self._get(base_served_name)
            if base.kind is not ServedKind.BASE:
                raise InvalidArgument(
                    "base_served_name", f"{base_served_name} is an adapter, not a base model"
                )
        else:
            if not version.parents:
                raise FailedPrecondition(
                    f"{pin(version)} names no parent version; pass base_served_name",
                    subject=pin(version),
                    type="ADAPTER_BASE",
                )
            parent = version.parents[0]
            exact = parent.WhichOneof("selector") == "version"
            candidates = [
                s
                for s in self._served.values()
                if s.kind is ServedKind.BASE
                and s.version is not None
                and s.version.model == parent.name
                and (not exact or s.version.number == parent.version)
            ]
            ready = [s for s in candidates if s.state is ServedState.READY]
            if not ready:
                wanted = f"{parent.name}:{parent.version}" if parent.version else parent.name
                raise FailedPrecondition(
                    f"the base of {pin(version)}, {wanted}, is not served; deploy it with "
                    "engine.enable_lora first, or pass base_served_name",
                    subject=wanted,
                    type="ADAPTER_BASE",
                )
            base = next((s for s in ready if s.options.enable_lora), ready[0])
        if base.state is not ServedState.READY:
            raise Unavailable(f"{base.name} is not ready ({base.state.name})")
        if not base.options.enable_lora:
            raise FailedPrecondition(
                f"{base.name} was loaded without engine.enable_lora; load it again with "
                "enable_lora to add adapters",
                subject=base.name,
                type="LORA_DISABLED",
            )
        return base

    @staticmethod
    def _check_rank(path: Path, base: ServedEntry) -> None:
        config_file = path / "adapter_config.json"
        if not config_file.is_file():
            raise FailedPrecondition(
                f"{path.name} has no adapter_config.json; is it a PEFT LoRA adapter?",
                subject=str(path),
                type="ADAPTER_FORMAT",
            )
        config = json.loads(config_file.read_text())
        ranks = [int(config.get("r", 0)), *map(int, (config.get("rank_pattern") or {}).values())]
        limit = base.options.lora_rank_limit
        if max(ranks) > limit:
            raise FailedPrecondition(
                f"the adapter's rank {max(ranks)} exceeds {base.name}'s max_lora_rank {limit}; "
                "load the base again with a larger engine.max_lora_rank",
                subject=base.name,
                type="LORA_RANK",
            )

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

    async def generate(self, request: GenerateRequest) -> AsyncIterator[GenerateEvent]:
        """Streams a generation on the model or adapter the request names.

        Closing the iterator early aborts the request in the engine.

        Raises:
            InvalidArgument: the request is malformed (every problem listed).
            NotFound: no model or adapter is served under that name.
            AlreadyExists: the request id is in use by a running request.
            Unavailable: the model is not ready, or its engine died.
        """
        request.validate()
        served, base = self._ready(request.model)
        request_id = request.request_id or uuid.uuid4().hex
        if not REQUEST_ID.fullmatch(request_id):
            raise InvalidArgument("request_id", "use 1-128 printable ASCII characters")
        if request_id in self._requests:
            raise AlreadyExists("request", request_id)
        self._requests[request_id] = served
        served.running.add(request_id)
        engine = base.engine
        assert engine is not None
        try:
            events = engine.generate(request, request_id, served.handle)
            async with aclosing(events):
                async for event in events:
                    yield event
        except EngineDead as exc:
            if base.state is ServedState.READY:
                base.state = ServedState.FAILED
                base.error = f"the engine stopped: {exc}"
                log.error("the engine of %s stopped: %s", base.name, exc)
            raise Unavailable(f"the engine of {base.name} stopped; load the model again") from exc
        finally:
            self._requests.pop(request_id, None)
            served.running.discard(request_id)
            if not served.running:
                served.drained.set()

    def is_running(self, request_id: str) -> bool:
        """Whether a request with this id is running."""
        return request_id in self._requests

    async def abort(self, request_id: str) -> bool:
        """Aborts a running request in its engine; returns whether it was running."""
        served = self._requests.get(request_id)
        if served is None:
            return False
        base = self._served.get(served.base) if served.kind is ServedKind.ADAPTER else served
        if base is not None and base.engine is not None:
            log.info("aborting request %s on %s", request_id, served.name)
            await base.engine.abort(request_id)
        return True

    async def close(self) -> None:
        """Stops every engine."""
        for name in [n for n, s in self._served.items() if s.kind is ServedKind.BASE]:
            try:
                await self.unload_model(name)
            except Exception:
                log.exception("stopping %s failed", name)
        self.resolver.close()
