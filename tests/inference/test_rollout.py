"""Models that follow their alias, over fake engines and a fake registry: the served name
moves to each version the alias points at, no request fails or is cut short on the way, and
a version that cannot take over leaves the old one serving with the reason.

The same move with real vLLM engines, the real registry and the gateway, under load from
OpenAI SDK clients, is part of the production line's test (`tests/cli/test_demo.py`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from forgeline.client import InferenceClient
from forgeline.client.exceptions import FailedPrecondition, InvalidArgument, Unavailable
from forgeline.common.settings import Settings
from forgeline.inference.core import InferenceCore
from forgeline.inference.options import EngineOptions
from forgeline.inference.outputs import FinishReason
from forgeline.inference.requests import GenerateRequest
from forgeline.inference.sampling import SamplingParams
from forgeline.inference.served import ServedModel, ServedState
from forgeline.inference.service import create_server
from forgeline.v1 import inference_pb2, registry_pb2
from tests.conftest import serving
from tests.helpers import eventually, wait_for
from tests.inference.fakes import AliasResolver, FakeEngineFactory

FOLLOW = 0.01
ALIAS = "law@production"


@pytest.fixture
def registry(tmp_path: Path) -> AliasResolver:
    resolver = AliasResolver(tmp_path / "versions")
    for number in (1, 2, 3):
        resolver.add("law", number)
    resolver.add("law-lora", 1, registry_pb2.VERSION_KIND_ADAPTER)
    resolver.move("law", "production", 1)
    return resolver


@pytest.fixture
def factory() -> FakeEngineFactory:
    return FakeEngineFactory(step=0.01)


def make_core(registry, factory, **options) -> InferenceCore:
    return InferenceCore(registry, factory, follow_seconds=FOLLOW, watch_seconds=0.01, **options)


def listed(core: InferenceCore, name: str = "law") -> ServedModel:
    return next(m for m in core.list_models() if m.name == name)


def request(max_tokens: int = 2) -> GenerateRequest:
    return GenerateRequest("law", prompt="x", sampling=SamplingParams(max_tokens=max_tokens))


async def answer(core: InferenceCore, max_tokens: int = 2) -> tuple[str, FinishReason | None]:
    """The version that answered a request, and how its completion ended."""
    events = [e async for e in core.generate(request(max_tokens))]
    return events[0].model_version, events[-1].deltas[-1].finish_reason


async def test_the_served_name_moves_to_each_version_the_alias_points_at(registry, factory):
    core = make_core(registry, factory)
    options = EngineOptions(max_model_len=64)
    served = await core.load_model(ALIAS, options=options, follow=True)
    assert (served.state, served.version, served.follows) == (ServedState.READY, 1, ALIAS)
    assert await answer(core) == ("law:1", FinishReason.LENGTH)
    registry.move("law", "production", 2)
    await eventually(lambda: listed(core).version == 2)
    assert await answer(core) == ("law:2", FinishReason.LENGTH)
    first, second = factory.started
    assert second.path == registry.path("law", 2) and second.options == first.options
    await eventually(lambda: first.stopped)
    assert not second.stopped and listed(core).rollout_error == ""
    # Back again: a rollback is a move like any other.
    registry.move("law", "production", 1)
    await eventually(lambda: listed(core).version == 1)
    assert await answer(core) == ("law:1", FinishReason.LENGTH)
    await core.close()
    assert all(e.stopped for e in factory.started) and len(factory.started) == 3


async def test_requests_running_on_the_old_engine_finish_there(registry, factory):
    core = make_core(registry, factory)
    await core.load_model(ALIAS, follow=True)
    old = factory.started[0]
    # Three requests of ~0.4 s each, running when the alias moves.
    running = [asyncio.create_task(answer(core, max_tokens=40)) for _ in range(3)]
    await eventually(lambda: old.unfinished_requests() == 3)
    registry.move("law", "production", 2)
    await eventually(lambda: listed(core).version == 2)
    new = factory.started[1]
    # Switched while they still run: they are counted, and new requests go to version 2.
    assert old.unfinished_requests() == 3 and not old.stopped
    assert listed(core).running_requests == 3
    assert await answer(core) == ("law:2", FinishReason.LENGTH)
    assert await asyncio.gather(*running) == [("law:1", FinishReason.LENGTH)] * 3
    assert old.aborted == [] and old.closed_early == []
    await eventually(lambda: old.stopped)
    assert not new.stopped
    await core.close()


async def test_a_request_started_before_a_move_is_aborted_on_its_own_engine(registry, factory):
    # What the servicer does when a client leaves: abort by id, after the move too.
    core = make_core(registry, factory)
    await core.load_model(ALIAS, follow=True)
    old = factory.started[0]
    long = GenerateRequest(
        "law", prompt="x", request_id="r1", sampling=SamplingParams(max_tokens=60)
    )
    stream = core.generate(long)
    assert (await anext(stream)).model_version == "law:1"
    registry.move("law", "production", 2)
    await eventually(lambda: listed(core).version == 2)
    assert await core.abort("r1") is True
    assert old.aborted == ["r1"] and factory.started[1].aborted == []
    rest = [e async for e in stream]
    assert rest[-1].deltas[0].finish_reason is FinishReason.ABORT
    await eventually(lambda: old.stopped)
    await core.close()


async def test_requests_outlasting_the_drain_are_aborted_and_the_old_engine_stops(
    registry, factory
):
    core, old, slow = await followed_with_a_long_request(registry, factory, drain_seconds=0.05)
    registry.move("law", "production", 2)
    # It ends (ABORT, like an unload's abort), it does not fail.
    assert await slow == ("law:1", FinishReason.ABORT)
    await eventually(lambda: old.stopped)
    assert len(old.aborted) == 1 and listed(core).version == 2
    await core.close()


async def test_a_version_whose_engine_does_not_start_leaves_the_old_one_serving(registry, factory):
    health: list[bool] = []

    async def report(healthy: bool) -> None:
        health.append(healthy)

    core = make_core(registry, factory, on_health=report)
    await core.load_model(ALIAS, follow=True)
    factory.fail_paths = {registry.path("law", 2)}
    registry.move("law", "production", 2)
    await eventually(lambda: listed(core).rollout_error)
    model = listed(core)
    assert "law:2" in model.rollout_error and "out of memory" in model.rollout_error
    assert (model.state, model.version, model.error) == (ServedState.READY, 1, "")
    assert await answer(core) == ("law:1", FinishReason.LENGTH)
    assert not factory.started[0].stopped and core.healthy() and False not in health
    # Not tried again while the alias stays where it is...
    attempts = len(factory.attempts)
    await asyncio.sleep(FOLLOW * 20)
    assert len(factory.attempts) == attempts
    # ...and when it moves again, the new version takes over and the error goes.
    registry.move("law", "production", 3)
    await eventually(lambda: listed(core).version == 3)
    assert listed(core).rollout_error == ""
    assert await answer(core) == ("law:3", FinishReason.LENGTH)
    await core.close()


async def test_a_new_engine_that_does_not_answer_is_stopped_and_the_old_one_serves(
    registry, factory
):
    core = make_core(registry, factory)
    await core.load_model(ALIAS, follow=True)
    factory.mute_paths = {registry.path("law", 2)}
    registry.move("law", "production", 2)
    await eventually(lambda: listed(core).rollout_error)
    assert "law:2" in listed(core).rollout_error
    assert "generated nothing" in listed(core).rollout_error
    mute = factory.started[1]
    assert mute.stopped and not factory.started[0].stopped
    assert (listed(core).version, listed(core).state) == (1, ServedState.READY)
    assert await answer(core) == ("law:1", FinishReason.LENGTH)
    # The alias moved back to what serves: nothing to roll, and the error is cleared.
    registry.move("law", "production", 1)
    await eventually(lambda: not listed(core).rollout_error)
    assert len(factory.started) == 2
    await core.close()


async def test_an_alias_moved_to_an_adapter_is_a_rollout_error(registry, factory):
    core = make_core(registry, factory)
    await core.load_model(ALIAS, follow=True)
    # An alias of another model cannot point at law-lora; make law:2 an adapter instead.
    registry.kinds[("law", 2)] = registry_pb2.VERSION_KIND_ADAPTER
    registry.move("law", "production", 2)
    await eventually(lambda: listed(core).rollout_error)
    assert "ADAPTER" in listed(core).rollout_error and listed(core).version == 1
    assert len(factory.attempts) == 1  # no engine was started for it
    await core.close()


async def test_unloading_during_a_rollout_stops_both_engines(registry, factory):
    core = make_core(registry, factory)
    await core.load_model(ALIAS, follow=True)
    old = factory.started[0]
    factory.start_seconds = 0.2
    registry.move("law", "production", 2)
    await eventually(lambda: len(factory.attempts) == 2)  # the new engine is starting
    await core.unload_model("law")
    assert core.list_models() == [] and old.stopped
    # The new engine is stopped as soon as it is up, never served.
    await eventually(lambda: len(factory.started) == 2 and factory.started[1].stopped)
    # Nobody follows the alias any more.
    factory.start_seconds = 0
    registry.move("law", "production", 3)
    await asyncio.sleep(FOLLOW * 20)
    assert len(factory.attempts) == 2
    await core.close()


async def followed_with_a_long_request(registry, factory, **options):
    """A core serving `law` following its alias, with one long request running on its
    engine: (core, that engine, the request's task)."""
    core = make_core(registry, factory, **options)
    await core.load_model(ALIAS, follow=True)
    old = factory.started[0]
    slow = asyncio.create_task(answer(core, max_tokens=60))
    await eventually(lambda: old.unfinished_requests() == 1)
    return core, old, slow


async def test_unloading_while_the_old_engine_drains_stops_both(registry, factory):
    core, old, slow = await followed_with_a_long_request(registry, factory)
    registry.move("law", "production", 2)
    await eventually(lambda: listed(core).version == 2)
    new = factory.started[1]
    assert not old.stopped  # draining
    await core.unload_model("law")
    assert old.stopped and new.stopped
    assert await slow == ("law:1", FinishReason.ABORT)  # unloading aborts, as always
    await core.close()


async def test_engine_failures_after_a_rollout(registry, factory):
    core = make_core(registry, factory)
    await core.load_model(ALIAS, follow=True)
    registry.move("law", "production", 2)
    await eventually(lambda: listed(core).version == 2 and factory.started[0].stopped)
    old, new = factory.started
    old.dead = True  # the replaced engine is no longer watched: no failure
    await asyncio.sleep(0.1)
    assert listed(core).state is ServedState.READY and core.healthy()
    new.dead = True  # the serving one is, exactly as for a model loaded without follow
    await eventually(lambda: listed(core).state is ServedState.FAILED)
    assert "fake engine is dead" in listed(core).error and not core.healthy()
    # A FAILED model is not rolled; loading it again replaces it and its follower.
    registry.move("law", "production", 3)
    await asyncio.sleep(FOLLOW * 20)
    assert len(factory.attempts) == 2
    assert (await core.load_model(ALIAS, follow=True)).version == 3
    assert new.stopped and core.healthy()
    await core.close()


async def test_the_old_engine_dying_while_it_drains_fails_only_its_requests(registry, factory):
    core, old, slow = await followed_with_a_long_request(registry, factory)
    registry.move("law", "production", 2)
    await eventually(lambda: listed(core).version == 2)
    old.dead = True
    with pytest.raises(Unavailable):
        await slow
    # The model serves on, on version 2: the dead engine was already replaced.
    assert listed(core).state is ServedState.READY and core.healthy()
    assert await answer(core) == ("law:2", FinishReason.LENGTH)
    await eventually(lambda: old.stopped)
    await core.close()


async def test_follow_needs_an_alias_and_refuses_adapters(registry, factory):
    core = make_core(registry, factory)
    for ref in ("law:1", "law"):
        with pytest.raises(InvalidArgument) as err:
            await core.load_model(ref, follow=True)
        assert err.value.violations[0].field == "follow"
        assert "name@alias" in err.value.message
    assert core.list_models() == [] and factory.attempts == []
    await core.load_model(ALIAS, follow=True, options=EngineOptions(enable_lora=True))
    with pytest.raises(FailedPrecondition) as refused:
        await core.load_adapter("law-lora", base_served_name="law")
    assert refused.value.type == "FOLLOWED_BASE" and ALIAS in refused.value.message
    await core.close()


def test_follow_over_grpc(tmp_path: Path, registry, factory):
    """The contract end to end on fake engines: LoadModel.follow, ServedModel.follows and
    rollout_error, and GenerateResponse.model_version on the first message only."""
    settings = Settings.load(
        "inference", port=0, home=str(tmp_path / "home"), inference_follow_seconds=FOLLOW
    )
    server = lambda: create_server(settings, resolver=registry, engine_factory=factory)[0]  # noqa: E731
    with serving(server) as thread, InferenceClient(thread.address) as client:
        with pytest.raises(InvalidArgument) as err:
            client.load_model("law:1", follow=True)
        assert err.value.violations[0].field == "follow"
        model = client.load_model(ALIAS, follow=True)
        assert (model.follows, model.version, model.rollout_error) == (ALIAS, 1, "")

        def versions() -> list[str]:
            request = inference_pb2.GenerateRequest(
                model="law", prompt="x", sampling=inference_pb2.SamplingParams(max_tokens=3)
            )
            return [r.model_version for r in client.generate(request)]

        assert versions() == ["law:1", "", ""]
        factory.fail_paths = {registry.path("law", 2)}
        registry.move("law", "production", 2)
        wait_for(lambda: client.list_models()[0].rollout_error, timeout=5)
        registry.move("law", "production", 3)
        wait_for(lambda: client.list_models()[0].version == 3, timeout=5)
        assert versions()[0] == "law:3"
        [model] = client.list_models()
        assert (model.follows, model.rollout_error, model.ref.alias) == (ALIAS, "", "production")
