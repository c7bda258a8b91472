"""What the engines are doing, as Prometheus metrics: requests running and waiting, KV-cache
usage, prefix-cache queries and hits, per served model.

vLLM hands its scheduler's statistics after every engine step to the stat loggers an
`AsyncLLM` is built with; `EngineStats.vllm_logger` is one that keeps the latest numbers.
`EngineStatsCollector` reads them from every READY engine of the core at each scrape, so a
model unloaded or failed simply drops out. (vLLM's own `vllm:*` metrics land in the process
registry, which the metrics endpoint serves too, but they describe only the engine started
last when a service hosts several.)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from forgeline.inference.served import ServedKind, ServedState

if TYPE_CHECKING:
    from forgeline.inference.core import InferenceCore


@dataclass
class EngineStats:
    """The latest scheduler numbers of one engine, and its prefix-cache totals."""

    running: int = 0
    waiting: int = 0
    kv_cache_usage: float = 0.0  # 0..1
    prefix_cache_queries: int = 0  # prompt tokens looked up
    prefix_cache_hits: int = 0  # of those, found cached

    def record(self, scheduler_stats: Any) -> None:
        """Takes in one `vllm.v1.metrics.stats.SchedulerStats`."""
        self.running = scheduler_stats.num_running_reqs
        self.waiting = scheduler_stats.num_waiting_reqs
        self.kv_cache_usage = scheduler_stats.kv_cache_usage
        self.prefix_cache_queries += scheduler_stats.prefix_cache_stats.queries
        self.prefix_cache_hits += scheduler_stats.prefix_cache_stats.hits

    def vllm_logger(self) -> Any:
        """A vLLM stat-logger factory (`AsyncLLM(stat_loggers=[...])`) recording into this."""
        from vllm.v1.metrics.loggers import StatLoggerBase

        stats = self

        class _Recorder(StatLoggerBase):
            def __init__(self, vllm_config: Any, engine_index: int = 0):
                pass

            def record(
                self, scheduler_stats, iteration_stats, mm_cache_stats=None, engine_idx=0
            ) -> None:
                if scheduler_stats is not None:
                    stats.record(scheduler_stats)

            def log_engine_initialized(self) -> None:
                pass

        return _Recorder


_GAUGES = (
    ("forgeline_engine_requests_running", "Requests the engine is running.", "running"),
    ("forgeline_engine_requests_waiting", "Requests waiting for the engine.", "waiting"),
    ("forgeline_engine_kv_cache_usage", "Fraction of the KV cache in use.", "kv_cache_usage"),
)
_COUNTERS = (
    (
        "forgeline_engine_prefix_cache_queries",
        "Prompt tokens looked up in the prefix cache.",
        "prefix_cache_queries",
    ),
    (
        "forgeline_engine_prefix_cache_hits",
        "Prompt tokens found in the prefix cache.",
        "prefix_cache_hits",
    ),
)


class EngineStatsCollector:
    """Collects `EngineStats` of the core's READY engines, labelled by served model."""

    def __init__(self, core: InferenceCore):
        self.core = core

    def describe(self) -> list[Metric]:
        return [GaugeMetricFamily(name, "", labels=["model"]) for name, _, _ in _GAUGES] + [
            CounterMetricFamily(name, "", labels=["model"]) for name, _, _ in _COUNTERS
        ]

    def collect(self) -> Iterable[Metric]:
        engines = []
        for model in self.core.list_models():
            if model.kind is ServedKind.BASE and model.state is ServedState.READY:
                stats = getattr(self.core.engine_of(model.name), "stats", None)
                if isinstance(stats, EngineStats):
                    engines.append((model.name, stats))
        for name, help_text, attr in _GAUGES:
            family = GaugeMetricFamily(name, help_text, labels=["model"])
            for model, stats in engines:
                family.add_metric([model], getattr(stats, attr))
            yield family
        for name, help_text, attr in _COUNTERS:
            family = CounterMetricFamily(name, help_text, labels=["model"])
            for model, stats in engines:
                family.add_metric([model], getattr(stats, attr))
            yield family
