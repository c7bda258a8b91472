"""Sampling options of a generation: their protobuf form, validation and token budget.

These rules need no engine, so they are tested without one. Turning the options into
vLLM's `SamplingParams` (with the model's generation-config defaults) is
`forgeline.inference.vllm_convert.sampling_params`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from forgeline.client.exceptions import FieldViolation, InvalidArgument, Violations
from forgeline.v1 import inference_pb2

# A bound on `n` and on the logprobs counts, so one request cannot monopolise an engine.
MAX_N = 128
MAX_LOGPROBS = 20


def _optional(message: Any, name: str) -> Any:
    return getattr(message, name) if message.HasField(name) else None


@dataclass(frozen=True)
class SamplingParams:
    """How to sample; `None` fields take the model's generation-config default.

    Mirrors `forgeline.v1.SamplingParams`.
    """

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = None
    n: int = 1
    logprobs: int | None = None
    prompt_logprobs: int | None = None
    ignore_eos: bool = False
    include_stop_str_in_output: bool = False
    logit_bias: Mapping[int, float] = field(default_factory=dict)

    @classmethod
    def from_pb(cls, pb: inference_pb2.SamplingParams) -> SamplingParams:
        """Builds options from their protobuf form (`n` 0 means 1)."""
        return cls(
            temperature=_optional(pb, "temperature"),
            top_p=_optional(pb, "top_p"),
            top_k=_optional(pb, "top_k"),
            min_p=_optional(pb, "min_p"),
            max_tokens=_optional(pb, "max_tokens"),
            stop=tuple(pb.stop),
            stop_token_ids=tuple(pb.stop_token_ids),
            seed=_optional(pb, "seed"),
            presence_penalty=_optional(pb, "presence_penalty"),
            frequency_penalty=_optional(pb, "frequency_penalty"),
            repetition_penalty=_optional(pb, "repetition_penalty"),
            n=pb.n or 1,
            logprobs=_optional(pb, "logprobs"),
            prompt_logprobs=_optional(pb, "prompt_logprobs"),
            ignore_eos=pb.ignore_eos,
            include_stop_str_in_output=pb.include_stop_str_in_output,
            logit_bias=dict(pb.logit_bias),
        )

    def to_pb(self) -> inference_pb2.SamplingParams:
        """Returns the protobuf form, leaving `None` fields unset."""
        pb = inference_pb2.SamplingParams(
            stop=list(self.stop),
            stop_token_ids=list(self.stop_token_ids),
            n=self.n,
            ignore_eos=self.ignore_eos,
            include_stop_str_in_output=self.include_stop_str_in_output,
            logit_bias=dict(self.logit_bias),
        )
        for name in (
            "temperature",
            "top_p",
            "top_k",
            "min_p",
            "max_tokens",
            "seed",
            "presence_penalty",
            "frequency_penalty",
            "repetition_penalty",
            "logprobs",
            "prompt_logprobs",
        ):
            value = getattr(self, name)
            if value is not None:
                setattr(pb, name, value)
        return pb

    def violations(self, prefix: str = "sampling") -> list[FieldViolation]:
        """Returns every problem with these options, each naming its field."""
        v = Violations()

        def finite(name: str) -> bool:
            value = getattr(self, name)
            return v.check(
                value is None or math.isfinite(value), f"{prefix}.{name}", "must be a finite number"
            )

        if finite("temperature") and self.temperature is not None:
            v.check(self.temperature >= 0, f"{prefix}.temperature", "must be >= 0")
        if finite("top_p") and self.top_p is not None:
            v.check(0 < self.top_p <= 1, f"{prefix}.top_p", "must be in (0, 1]")
        if finite("min_p") and self.min_p is not None:
            v.check(0 <= self.min_p <= 1, f"{prefix}.min_p", "must be in [0, 1]")
        for name in ("presence_penalty", "frequency_penalty"):
            value = getattr(self, name)
            if finite(name) and value is not None:
                v.check(-2 <= value <= 2, f"{prefix}.{name}", "must be in [-2, 2]")
        if finite("repetition_penalty") and self.repetition_penalty is not None:
            v.check(self.repetition_penalty > 0, f"{prefix}.repetition_penalty", "must be > 0")
        v.check(
            self.max_tokens is None or self.max_tokens >= 1,
            f"{prefix}.max_tokens",
            "must be at least 1",
        )
        v.check(1 <= self.n <= MAX_N, f"{prefix}.n", f"must be between 1 and {MAX_N}")
        if self.n > 1 and self.temperature == 0:
            v.add(f"{prefix}.n", "must be 1 with greedy sampling (temperature 0)")
        for name in ("logprobs", "prompt_logprobs"):
            value = getattr(self, name)
            v.check(
                value is None or value <= MAX_LOGPROBS,
                f"{prefix}.{name}",
                f"must be at most {MAX_LOGPROBS}",
            )
        v.check(all(s for s in self.stop), f"{prefix}.stop", "stop strings must not be empty")
        v.check(
            all(-100 <= b <= 100 and math.isfinite(b) for b in self.logit_bias.values()),
            f"{prefix}.logit_bias",
            "biases must be in [-100, 100]",
        )
        return v.items


def resolve_max_tokens(
    requested: int | None,
    prompt_tokens: int,
    max_model_len: int,
    default: int | None = None,
    *,
    input_field: str = "prompt",
    prefix: str = "sampling",
) -> int:
    """The number of tokens a request may generate.

    An explicit `requested` budget must fit in the context beside the prompt; without one
    the model's generation-config default applies, capped by the room left.

    Raises:
        InvalidArgument: the prompt leaves no room, or `requested` does not fit.
    """
    room = max_model_len - prompt_tokens
    if room <= 0:
        raise InvalidArgument(
            input_field,
            f"the prompt has {prompt_tokens} tokens; the model's context length is "
            f"{max_model_len}, which leaves no room to generate",
        )
    if requested is not None:
        if requested > room:
            raise InvalidArgument(
                f"{prefix}.max_tokens",
                f"{requested} tokens do not fit: the prompt has {prompt_tokens} tokens and "
                f"the context length is {max_model_len}, so at most {room} can be generated",
            )
        return requested
    return min(room, default) if default else room
