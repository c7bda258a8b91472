"""Prometheus metrics of the gateway, labelled by model.

Each app gets its own `CollectorRegistry`, so several gateways (or tests) in one process
do not share counters. Only served model names become label values (unknown names are
counted as `""`), which keeps the label set bounded whatever clients send.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class GatewayMetrics:
    """The gateway's counters and histograms."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "forgeline_gateway_requests",
            "Requests answered, by model, endpoint and HTTP status.",
            ["model", "endpoint", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "forgeline_gateway_request_duration_seconds",
            "Time from request to the last byte of the response.",
            ["model", "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "forgeline_gateway_time_to_first_token_seconds",
            "Time from request to the first generated token.",
            ["model", "endpoint"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.prompt_tokens = Counter(
            "forgeline_gateway_prompt_tokens", "Prompt tokens processed.", ["model"], registry=r
        )
        self.completion_tokens = Counter(
            "forgeline_gateway_completion_tokens", "Tokens generated.", ["model"], registry=r
        )
        self.rate_limited = Counter(
            "forgeline_gateway_rate_limited",
            "Requests refused with 429, by model and the limit hit.",
            ["model", "limit"],
            registry=r,
        )
        self.in_flight = Gauge(
            "forgeline_gateway_requests_in_flight",
            "Requests being answered now.",
            ["model"],
            registry=r,
        )
        self._served_models: set[str] = set()

    def saw_served(self, model: str) -> None:
        """Records that the inference service accepted a request for `model`."""
        self._served_models.add(model)

    def label(self, model: str) -> str:
        """The metric label for a model name: itself if it was ever served, else ''."""
        return model if model in self._served_models else ""

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
