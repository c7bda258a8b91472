"""InferenceCore over fake engines: names, adapters, routing, aborts and failures."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from forgeline.client.exceptions import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from forgeline.inference.core import InferenceCore
from forgeline.inference.options import EngineOptions
from forgeline.inference.outputs import FinishReason
from forgeline.inference.requests import GenerateRequest, TokenizeRequest
from forgeline.inference.resolver import LocalModel, LocalResolver
from forgeline.inference.sampling import SamplingParams
from forgeline.inference.served import ServedKind, ServedState
from forgeline.v1 import registry_pb2
from tests.inference.fakes import ADAPTER_WORDS, BASE_WORDS, FakeEngineFactory

ADAPTER = registry_pb2.VERSION_KIND_ADAPTER
LORA = EngineOptions(enable_lora=True)


def adapter_dir(root: Path, name: str, rank: int = 8) -> Path:
    path = root / name
    path.mkdir()
    (path / "adapter_config.json").write_text(json.dumps({"r": rank, "peft_type": "LORA"}))
    return path


@pytest.fixture
def models(tmp_path: Path) -> dict[str, LocalModel]:
    base = tmp_path / "base"
    base.mkdir()
    return {
        "base": LocalModel(base),
        "other": LocalModel(base),
        "lora": LocalModel(adapter_dir(tmp_path, "lora"), ADAPTER, ["base"]),
        "wide": LocalModel(adapter_dir(tmp_path, "wide", rank=64), ADAPTER, ["base"]),
        "orphan": LocalModel(adapter_dir(tmp_path, "orphan"), ADAPTER, []),
    }


@pytest.fixture
def factory() -> FakeEngineFactory:
    return FakeEngineFactory()


@pytest.fixture
def core(models, factory) -> InferenceCore:
    return InferenceCore(LocalResolver(models), factory)


def req(model: str, request_id: str = "", **sampling) -> GenerateRequest:
    return GenerateRequest(
        model, prompt="x", request_id=request_id, sampling=SamplingParams(**sampling)
    )


async def collect(core: InferenceCore, request: GenerateRequest) -> tuple[str, list]:
    events = [e async for e in core.generate(request)]
    text = "".join(d.text for e in events for d in e.deltas if d.index == 0)
    return text, events


async def test_load_generate_and_list(core, factory):
    served = await core.load_model("base", options=EngineOptions(max_model_len=64))
    assert served.state is ServedState.READY and served.version == 1
    text, events = await collect(
        core, GenerateRequest("base", prompt="a b c", sampling=SamplingParams(max_tokens=3))
    )
    assert text == " ".join(BASE_WORDS[:3])
    assert events[-1].usage.prompt_tokens == 3 and events[-1].usage.completion_tokens == 3
    assert events[-1].deltas[-1].finish_reason is FinishReason.LENGTH
    [listed] = core.list_models()
    assert (listed.name, listed.kind, listed.running_requests) == ("base", ServedKind.BASE, 0)
    result = await core.tokenize(TokenizeRequest("base", text="x y"))
    assert result.token_ids == (0, 1)


async def test_names_are_unique_and_validated(core):
    await core.load_model("base")
    with pytest.raises(AlreadyExists):
        await core.load_model("other", served_name="base")
    with pytest.raises(InvalidArgument) as err:
        await core.load_model("base", served_name="bad name!")
    assert err.value.violations[0].field == "served_name"
    with pytest.raises(InvalidArgument) as err:
        await core.load_model("Not A Ref")
    assert err.value.violations[0].field == "ref"
    with pytest.raises(NotFound):
        await core.load_model("missing")
    assert [m.name for m in core.list_models()] == ["base"]  # failures leave nothing behind
    with pytest.raises(InvalidArgument) as err:
        await core.load_model("lora", served_name="x")
    assert "LoadAdapter" in err.value.message


async def test_a_failed_engine_is_listed_with_its_reason_and_can_be_replaced(models, factory):
    factory.fail_for = {"base"}
    core = InferenceCore(LocalResolver(models), factory)
    served = await core.load_model("base")
    assert served.state is ServedState.FAILED and "out of memory" in served.error
    with pytest.raises(Unavailable):
        await collect(core, GenerateRequest("base", prompt="x"))
    factory.fail_for = set()
    assert (await core.load_model("base")).state is ServedState.READY


async def test_adapter_is_hot_loaded_onto_its_parent_and_selected_by_name(core, factory):
    await core.load_model("base", options=LORA)
    adapter = await core.load_adapter("lora")
    assert (adapter.kind, adapter.parent, adapter.state) == (
        ServedKind.ADAPTER,
        "base",
        ServedState.READY,
    )
    assert factory.engines["base"].adapters == ["lora"]
    text, _ = await collect(core, req("lora", max_tokens=2))
    assert text == " ".join(ADAPTER_WORDS[:2])
    text, _ = await collect(core, req("base", max_tokens=2))
    assert text == " ".join(BASE_WORDS[:2])
    assert [(m.name, m.parent) for m in core.list_models()] == [("base", ""), ("lora", "base")]
    await core.unload_adapter("lora")
    assert factory.engines["base"].adapters == []
    with pytest.raises(NotFound):
        await collect(core, GenerateRequest("lora", prompt="x"))


async def test_adapter_preconditions_say_what_to_do(core):
    with pytest.raises(FailedPrecondition) as err:
        await core.load_adapter("lora")
    assert err.value.type == "ADAPTER_BASE" and "base" in err.value.message
    await core.load_model("base")
    with pytest.raises(FailedPrecondition) as err:
        await core.load_adapter("lora")
    assert err.value.type == "LORA_DISABLED"
    await core.unload_model("base")
    await core.load_model("base", options=LORA)
    with pytest.raises(FailedPrecondition) as err:
        await core.load_adapter("wide")
    assert err.value.type == "LORA_RANK" and "64" in err.value.message
    with pytest.raises(FailedPrecondition) as err:
        await core.load_adapter("orphan")
    assert "base_served_name" in err.value.message
    assert (await core.load_adapter("orphan", base_served_name="base")).parent == "base"
    with pytest.raises(InvalidArgument):
        await core.load_adapter("base", served_name="b2")
    with pytest.raises(InvalidArgument):
        await core.unload_model("orphan")
    with pytest.raises(InvalidArgument):
        await core.unload_adapter("base")


async def test_unloading_a_model_aborts_its_requests_and_stops_the_engine(models):
    factory = FakeEngineFactory(step=0.05)
    core = InferenceCore(LocalResolver(models), factory)
    await core.load_model("base", options=LORA)
    await core.load_adapter("lora")
    request = GenerateRequest("lora", prompt="x", sampling=SamplingParams(max_tokens=40))
    task = asyncio.create_task(collect(core, request))
    await asyncio.sleep(0.12)
    await core.unload_model("base")
    _, events = await task
    assert events[-1].deltas[0].finish_reason is FinishReason.ABORT
    assert factory.engines["base"].stopped
    assert core.list_models() == []


async def test_unloading_an_adapter_lets_running_requests_finish(models):
    factory = FakeEngineFactory(step=0.02)
    core = InferenceCore(LocalResolver(models), factory)
    await core.load_model("base", options=LORA)
    await core.load_adapter("lora")
    request = GenerateRequest("lora", prompt="x", sampling=SamplingParams(max_tokens=5))
    task = asyncio.create_task(collect(core, request))
    await asyncio.sleep(0.03)
    await core.unload_adapter("lora")
    assert task.done()  # unload waited for it
    _, events = task.result()
    assert events[-1].deltas[0].finish_reason is FinishReason.LENGTH


async def test_closing_the_stream_aborts_the_request(models):
    factory = FakeEngineFactory(step=0.01)
    core = InferenceCore(LocalResolver(models), factory)
    await core.load_model("base")
    stream = core.generate(req("base", "r1", max_tokens=50))
    await anext(stream)
    assert core.is_running("r1") and factory.engines["base"].unfinished_requests() == 1
    with pytest.raises(AlreadyExists):
        await anext(core.generate(GenerateRequest("base", prompt="x", request_id="r1")))
    await stream.aclose()
    assert not core.is_running("r1") and factory.engines["base"].unfinished_requests() == 0


async def test_abort_by_id_ends_the_stream_with_abort(models):
    factory = FakeEngineFactory(step=0.01)
    core = InferenceCore(LocalResolver(models), factory)
    await core.load_model("base")
    request = req("base", "r2", max_tokens=50)
    task = asyncio.create_task(collect(core, request))
    await asyncio.sleep(0.03)
    assert await core.abort("r2") is True
    _, events = await task
    assert events[-1].deltas[0].finish_reason is FinishReason.ABORT
    assert await core.abort("r2") is False


async def test_a_dead_engine_marks_the_model_failed(core, factory):
    await core.load_model("base")
    factory.engines["base"].dead = True
    with pytest.raises(Unavailable) as err:
        await collect(core, GenerateRequest("base", prompt="x"))
    assert "load the model again" in err.value.message
    [listed] = core.list_models()
    assert listed.state is ServedState.FAILED and "engine stopped" in listed.error


async def test_stop_strings_and_n(core):
    await core.load_model("base")
    request = req("base", max_tokens=10, stop=("fox",), n=2, temperature=1.0)
    text, events = await collect(core, request)
    assert text == "the quick brown "
    last = {d.index: d for e in events for d in e.deltas if d.finish_reason}
    assert set(last) == {0, 1} and last[0].finish_reason is FinishReason.STOP
    assert last[0].stop_reason == "fox"


async def test_close_stops_every_engine(core, factory):
    await core.load_model("base")
    await core.load_model("other")
    await core.close()
    assert all(e.stopped for e in factory.engines.values())
