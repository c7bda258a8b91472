"""InferenceCore under faults, over fake engines: duplicate request ids, cancelled loads,
engines that die while idle or while generating, and the health the core reports.

The same faults with real processes (a killed engine process, a killed service) are in
`tests/inference/test_faults.py`.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from forgeline.client.exceptions import AlreadyExists, NotFound, Unavailable
from forgeline.inference.core import InferenceCore
from forgeline.inference.options import EngineOptions
from forgeline.inference.outputs import FinishReason
from forgeline.inference.requests import GenerateRequest
from forgeline.inference.resolver import LocalModel, LocalResolver
from forgeline.inference.sampling import SamplingParams
from forgeline.inference.served import ServedState
from forgeline.v1 import registry_pb2
from tests.helpers import eventually
from tests.inference.fakes import FakeEngineFactory

WATCH = 0.01


@pytest.fixture
def models(tmp_path: Path) -> dict[str, LocalModel]:
    base = tmp_path / "base"
    base.mkdir()
    lora = tmp_path / "lora"
    lora.mkdir()
    (lora / "adapter_config.json").write_text('{"r": 8}')
    return {
        "base": LocalModel(base),
        "lora": LocalModel(lora, registry_pb2.VERSION_KIND_ADAPTER, ["base"]),
    }


class HealthLog:
    """Records what the core reports about its health."""

    def __init__(self) -> None:
        self.reports: list[bool] = []

    async def __call__(self, healthy: bool) -> None:
        self.reports.append(healthy)

    @property
    def last(self) -> bool | None:
        return self.reports[-1] if self.reports else None


class BlockingResolver(LocalResolver):
    """Resolves only once `release` is set (a registry pull that takes its time)."""

    def __init__(self, models):
        super().__init__(models)
        self.release = threading.Event()
        self.entered = threading.Event()

    def resolve_model_dir(self, ref):
        self.entered.set()
        self.release.wait(10)
        return super().resolve_model_dir(ref)


def state(core: InferenceCore, name: str = "base") -> ServedState | None:
    return next((m.state for m in core.list_models() if m.name == name), None)


def long_request(request_id: str) -> GenerateRequest:
    return GenerateRequest(
        "base", prompt="x", request_id=request_id, sampling=SamplingParams(max_tokens=50)
    )


# ---------------------------------------------------------------------- duplicate request ids


async def test_a_refused_duplicate_request_id_leaves_the_running_request_alone(models):
    factory = FakeEngineFactory(step=0.01)
    core = InferenceCore(LocalResolver(models), factory)
    await core.load_model("base")
    first, second = object(), object()
    stream = core.generate(long_request("r1"), owner=first)
    await anext(stream)
    with pytest.raises(AlreadyExists):
        await anext(core.generate(long_request("r1"), owner=second))
    with pytest.raises(NotFound):
        await anext(core.generate(GenerateRequest("nope", prompt="x", request_id="r1"), second))
    # The refused calls' cleanup: what they would abort is not theirs.
    assert not core.is_running("r1", owner=second) and core.is_running("r1", owner=first)
    assert await core.abort("r1", owner=second) is False
    engine = factory.engines["base"]
    assert engine.aborted == [] and core.is_running("r1")
    event = await anext(stream)
    assert event.deltas[0].text  # still streaming
    assert await core.abort("r1") is True
    rest = [e async for e in stream]
    assert rest[-1].deltas[0].finish_reason is FinishReason.ABORT
    assert not core.is_running("r1")


# ---------------------------------------------------------------------- cancelled loads


async def test_a_load_cancelled_while_resolving_leaves_nothing_behind(models):
    resolver = BlockingResolver(models)
    factory = FakeEngineFactory()
    core = InferenceCore(resolver, factory)
    task = asyncio.create_task(core.load_model("base"))
    await asyncio.to_thread(resolver.entered.wait, 5)
    assert state(core) is ServedState.LOADING
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert core.list_models() == []
    resolver.release.set()
    assert (await core.load_model("base")).state is ServedState.READY
    assert len(factory.started) == 1  # the cancelled load started no engine


async def test_a_load_cancelled_while_the_engine_starts_leaves_nothing_behind(models):
    factory = FakeEngineFactory(start_seconds=0.2)
    core = InferenceCore(LocalResolver(models), factory)
    task = asyncio.create_task(core.load_model("base"))
    await asyncio.sleep(0.05)
    assert state(core) is ServedState.LOADING
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert core.list_models() == []  # the name is free at once
    # The engine finishes starting on its own; nobody asked for it any more.
    await eventually(lambda: len(factory.started) == 1 and factory.started[0].stopped)
    factory.start_seconds = 0
    assert (await core.load_model("base")).state is ServedState.READY
    assert not factory.started[1].stopped


async def test_a_late_stop_of_a_cancelled_load_leaves_the_next_load_watched(models):
    factory = FakeEngineFactory(start_seconds=0.1)
    core = InferenceCore(LocalResolver(models), factory, watch_seconds=WATCH)
    task = asyncio.create_task(core.load_model("base"))
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    factory.start_seconds = 0
    await core.load_model("base")  # up before the cancelled load's engine
    [serving] = factory.started
    # The cancelled load's engine comes up and is stopped...
    await eventually(lambda: len(factory.started) == 2 and factory.started[1].stopped)
    assert not serving.stopped
    serving.dead = True
    await eventually(lambda: state(core) is ServedState.FAILED)  # ...the new one still watched
    await core.close()


async def test_close_waits_for_the_engine_of_a_cancelled_load(models):
    factory = FakeEngineFactory(start_seconds=0.1)
    core = InferenceCore(LocalResolver(models), factory)
    task = asyncio.create_task(core.load_model("base"))
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await core.close()
    assert [e.stopped for e in factory.started] == [True]


# ---------------------------------------------------------------------- dead engines


async def test_an_engine_dying_while_idle_fails_the_model_and_the_health(models):
    factory = FakeEngineFactory()
    health = HealthLog()
    core = InferenceCore(LocalResolver(models), factory, watch_seconds=WATCH, on_health=health)
    await core.load_model("base")
    assert health.last in (None, True)
    dead = factory.engines["base"]
    dead.dead = True
    await eventually(lambda: state(core) is ServedState.FAILED)
    [listed] = core.list_models()
    assert "fake engine is dead" in listed.error
    assert health.last is False
    with pytest.raises(Unavailable):
        await anext(core.generate(GenerateRequest("base", prompt="x")))
    # Loading it again replaces the failed entry, releases the dead engine, and heals.
    assert (await core.load_model("base")).state is ServedState.READY
    assert dead.stopped and health.last is True
    assert state(core) is ServedState.READY
    await core.close()


async def test_unloading_a_failed_model_restores_the_health(models):
    factory = FakeEngineFactory()
    health = HealthLog()
    core = InferenceCore(LocalResolver(models), factory, watch_seconds=WATCH, on_health=health)
    await core.load_model("base")
    factory.engines["base"].dead = True
    await eventually(lambda: health.last is False)
    await core.unload_model("base")
    assert health.last is True and factory.engines["base"].stopped


async def test_a_dead_engine_during_generation_fails_the_health_too(models):
    factory = FakeEngineFactory()
    health = HealthLog()
    # A slow watch: the generation notices first.
    core = InferenceCore(LocalResolver(models), factory, watch_seconds=60, on_health=health)
    await core.load_model("base")
    factory.engines["base"].dead = True
    with pytest.raises(Unavailable):
        await anext(core.generate(GenerateRequest("base", prompt="x")))
    assert state(core) is ServedState.FAILED and health.last is False
    await core.close()


async def test_an_engine_that_did_not_start_fails_the_health_until_loaded_again(models):
    factory = FakeEngineFactory(fail_for={"base"})
    health = HealthLog()
    core = InferenceCore(LocalResolver(models), factory, watch_seconds=WATCH, on_health=health)
    assert (await core.load_model("base")).state is ServedState.FAILED
    assert health.last is False
    factory.fail_for = set()
    await core.load_model("base")
    assert health.last is True
    await core.close()


async def test_adapters_of_a_failed_base_go_when_it_is_loaded_again(models):
    factory = FakeEngineFactory()
    core = InferenceCore(LocalResolver(models), factory, watch_seconds=WATCH)
    await core.load_model("base", options=EngineOptions(enable_lora=True))
    await core.load_adapter("lora")
    factory.engines["base"].dead = True
    await eventually(lambda: state(core) is ServedState.FAILED)
    await core.load_model("base", options=EngineOptions(enable_lora=True))
    assert [m.name for m in core.list_models()] == ["base"]
    await core.load_adapter("lora")  # onto the new engine
    assert factory.engines["base"].adapters == ["lora"]
    await core.close()


async def test_unloading_stops_the_watch(models):
    factory = FakeEngineFactory()
    health = HealthLog()
    core = InferenceCore(LocalResolver(models), factory, watch_seconds=WATCH, on_health=health)
    await core.load_model("base")
    engine = factory.engines["base"]
    await core.unload_model("base")
    engine.dead = True  # a stopped engine is not a failure
    await asyncio.sleep(WATCH * 5)
    assert core.list_models() == [] and False not in health.reports
