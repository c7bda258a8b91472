"""How one generation request is accounted: its metrics, and the tokens settled with its key.

A request is counted in flight from the moment its model is known until `finish`, which
runs exactly once however the request ends: answered, refused, failed, or abandoned by its
client at any point (before the first token included). `finish` gives back the request's
streams to the inference service (its streams are closed by then) and settles the key's
token reservation with what the request used. A stream that delivered its final usage is charged
that; one cut short is charged its prompt (the engine was asked to process it) plus the
tokens it produced before it ended, so leaving early is never free.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from prometheus_client import Gauge

from forgeline.gateway.capacity import StreamSlots
from forgeline.gateway.keys import ApiKey
from forgeline.gateway.limits import Reservation
from forgeline.gateway.state import Gateway
from forgeline.v1 import inference_pb2


@dataclass
class StreamUsage:
    """What one Generate stream (one prompt) used."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    # Tokens relayed so far; what a stream cut short is charged when no usage arrived.
    seen_tokens: int = 0
    reported: bool = False

    def charged(self, prompt_estimate: int) -> int:
        """Tokens to charge: the reported usage, or the prompt and what was seen."""
        if self.reported:
            return self.prompt_tokens + max(self.completion_tokens, self.seen_tokens)
        return prompt_estimate + self.seen_tokens


@dataclass
class Usage:
    """What one generation request used, per stream, for limits and metrics."""

    streams: dict[int, StreamUsage] = field(default_factory=dict)
    first_token_at: float | None = None

    def see(self, index: int, response: inference_pb2.GenerateResponse) -> None:
        """Records one message of stream `index`."""
        if self.first_token_at is None and response.chunks:
            self.first_token_at = time.perf_counter()
        stream = self.streams.setdefault(index, StreamUsage())
        for chunk in response.chunks:
            stream.seen_tokens += len(chunk.token_ids)
        if response.HasField("usage"):
            stream.prompt_tokens += response.usage.prompt_tokens
            stream.completion_tokens += response.usage.completion_tokens
            stream.reported = True

    @property
    def prompt_tokens(self) -> int:
        """Prompt tokens the inference service reported."""
        return sum(s.prompt_tokens for s in self.streams.values())

    @property
    def completion_tokens(self) -> int:
        """Generated tokens the inference service reported."""
        return sum(s.completion_tokens for s in self.streams.values())

    def charged(self, prompt_estimates: Sequence[int]) -> int:
        """Tokens to charge for every stream, `prompt_estimates` standing in for prompts
        whose usage never arrived."""
        return sum(
            self.streams.get(i, StreamUsage()).charged(estimate)
            for i, estimate in enumerate(prompt_estimates)
        ) + sum(s.charged(0) for i, s in self.streams.items() if i >= len(prompt_estimates))


@dataclass
class RequestRecord:
    """How one request is accounted: its metrics, and its key's token reservation."""

    gateway: Gateway
    endpoint: str
    started: float = field(default_factory=time.perf_counter)
    # A request that fails before its status is known was a server error.
    status: int = 500
    model: str = ""
    key: ApiKey | None = None
    usage: Usage = field(default_factory=Usage)
    reservation: Reservation | None = None
    # Each engine request's prompt tokens, charged for streams cut short.
    prompt_estimates: Sequence[int] = ()
    # Whether the engine was asked to generate (nothing is charged when it refused).
    started_generating: bool = False
    # Streams to the inference service held for the request, given back at the end.
    slots: tuple[StreamSlots, int] | None = None
    in_flight: Gauge | None = None
    finished: bool = False

    def begin(self, model: str) -> None:
        """Counts the request as in flight for `model`."""
        self.model = model
        self.in_flight = self.gateway.metrics.in_flight.labels(self.gateway.metrics.label(model))
        self.in_flight.inc()

    def finish(self) -> None:
        """Records the finished request in the metrics and settles its key (once)."""
        if self.finished:
            return
        self.finished = True
        if self.slots is not None:
            pool, count = self.slots
            pool.release(count)
        metrics = self.gateway.metrics
        label = metrics.label(self.model)
        if self.in_flight is not None:
            self.in_flight.dec()
        metrics.requests.labels(label, self.endpoint, str(self.status)).inc()
        metrics.latency.labels(label, self.endpoint).observe(time.perf_counter() - self.started)
        if self.usage.first_token_at is not None:
            metrics.ttft.labels(label, self.endpoint).observe(
                self.usage.first_token_at - self.started
            )
        metrics.prompt_tokens.labels(label).inc(self.usage.prompt_tokens)
        metrics.completion_tokens.labels(label).inc(self.usage.completion_tokens)
        if self.reservation is not None:
            used = self.usage.charged(self.prompt_estimates) if self.started_generating else 0
            self.gateway.access.settle(self.reservation, used)
