"""Conversions between the inference domain types and vLLM's.

Everything that knows vLLM's argument names and output shapes lives here, next to the
engine: engine arguments from `EngineOptions`, `SamplingParams` from a request (with the
model's generation-config defaults, as vLLM's OpenAI server applies them), and vLLM's
completion outputs, logprobs and finish reasons back into `forgeline.inference.outputs`
types. vLLM itself is imported only inside `sampling_params`, so the rest is testable
without it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from forgeline.client.exceptions import InvalidArgument
from forgeline.inference.options import DEFAULT_MAX_LORAS, EngineOptions
from forgeline.inference.outputs import CompletionDelta, FinishReason, TokenLogprob, TopLogprob
from forgeline.inference.requests import GenerateRequest
from forgeline.inference.sampling import SamplingParams, resolve_max_tokens

# Parameters a model's generation config may set defaults for (vLLM's list).
GENERATION_CONFIG_KEYS = (
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
)
SAMPLING_FIELDS = frozenset(f.name for f in dataclasses.fields(SamplingParams))

_FINISH_FROM_ENGINE = {
    "stop": FinishReason.STOP,
    "length": FinishReason.LENGTH,
    "abort": FinishReason.ABORT,
    "error": FinishReason.ERROR,
}


# --------------------------------------------------------------------------- into vLLM


def engine_kwargs(options: EngineOptions) -> dict[str, Any]:
    """Keyword arguments for vLLM's `AsyncEngineArgs`, leaving unset ones at its defaults."""
    kwargs: dict[str, Any] = {"dtype": options.dtype.value, "enforce_eager": options.enforce_eager}
    if options.max_model_len:
        kwargs["max_model_len"] = options.max_model_len
    if options.tensor_parallel_size:
        kwargs["tensor_parallel_size"] = options.tensor_parallel_size
    if options.gpu_memory_utilization:
        kwargs["gpu_memory_utilization"] = options.gpu_memory_utilization
    if options.kv_cache_bytes:
        kwargs["kv_cache_memory_bytes"] = options.kv_cache_bytes
    if options.enable_lora:
        kwargs["enable_lora"] = True
        kwargs["max_loras"] = options.max_loras or DEFAULT_MAX_LORAS
        kwargs["max_lora_rank"] = options.lora_rank_limit
    if options.quantization:
        kwargs["quantization"] = options.quantization
    if options.seed is not None:
        kwargs["seed"] = options.seed
    return kwargs


def sampling_kwargs(
    sampling: SamplingParams, defaults: Mapping[str, Any], max_tokens: int
) -> dict[str, Any]:
    """Keyword arguments for vLLM's `SamplingParams`.

    Args:
        sampling: The request's sampling options.
        defaults: The model's generation-config defaults (vLLM's
            `get_diff_sampling_param()`), used for fields left unset.
        max_tokens: The resolved token budget (see `resolve_max_tokens`).
    """
    kwargs: dict[str, Any] = {
        name: value
        for name in GENERATION_CONFIG_KEYS
        if (value := getattr(sampling, name)) is not None
        or (value := defaults.get(name)) is not None
    }
    kwargs.update(
        n=sampling.n,
        max_tokens=max_tokens,
        seed=sampling.seed,
        stop=list(sampling.stop) or None,
        stop_token_ids=list(sampling.stop_token_ids) or None,
        logprobs=sampling.logprobs,
        prompt_logprobs=sampling.prompt_logprobs,
        ignore_eos=sampling.ignore_eos,
        include_stop_str_in_output=sampling.include_stop_str_in_output,
        logit_bias=dict(sampling.logit_bias) or None,
    )
    return kwargs


def sampling_params(
    request: GenerateRequest,
    prompt_tokens: int,
    max_model_len: int,
    defaults: Mapping[str, Any],
) -> Any:
    """vLLM `SamplingParams` streaming deltas for `request`, whose prompt is rendered.

    Args:
        request: The generation.
        prompt_tokens: Length of the rendered prompt.
        max_model_len: The engine's context length.
        defaults: The model's generation-config defaults (see `sampling_kwargs`).

    Raises:
        InvalidArgument: the token budget does not fit, or vLLM refused the parameters.
    """
    from vllm import SamplingParams as VllmSamplingParams
    from vllm.sampling_params import RequestOutputKind

    sampling = request.sampling
    max_tokens = resolve_max_tokens(
        sampling.max_tokens,
        prompt_tokens,
        max_model_len,
        defaults.get("max_tokens"),
        input_field=request.input_field,
    )
    kwargs = sampling_kwargs(sampling, defaults, max_tokens)
    try:
        return VllmSamplingParams.from_optional(output_kind=RequestOutputKind.DELTA, **kwargs)
    except ValueError as exc:
        raise InvalidArgument("sampling", str(exc)) from exc


def error_field(exc: Exception, default: str) -> str:
    """The request field a vLLM validation error is about, in this contract's names."""
    parameter = getattr(exc, "parameter", None)
    if parameter in SAMPLING_FIELDS:
        return f"sampling.{parameter}"
    return default


# --------------------------------------------------------------------------- out of vLLM


def finish_reason(reason: str | None) -> FinishReason | None:
    """Maps vLLM's finish reason string (`stop`, `length`, `abort`, ...) to the enum.

    Reasons this contract does not name (newer vLLM stop conditions) count as STOP: the
    completion ended normally.
    """
    if reason is None:
        return None
    return _FINISH_FROM_ENGINE.get(reason, FinishReason.STOP)


class EngineLogprob(Protocol):
    """What the engine reports for one candidate token (vLLM's `Logprob`)."""

    logprob: float
    rank: int | None
    decoded_token: str | None


def convert_logprobs(
    positions: Iterable[Mapping[int, EngineLogprob] | None],
    token_ids: Iterable[int],
    top_n: int,
) -> list[TokenLogprob]:
    """Converts the engine's per-position candidate maps into `TokenLogprob`s.

    Each position's map holds the chosen token and the top candidates by rank; the
    alternatives kept are the `top_n` best ranked, most likely first. A position without
    a map (the first prompt token) is skipped.
    """
    out = []
    for candidates, token_id in zip(positions, token_ids, strict=False):
        if candidates is None:
            continue
        chosen = candidates.get(token_id)
        ranked = sorted(
            ((tid, lp) for tid, lp in candidates.items() if lp.rank is not None),
            key=lambda item: item[1].rank,
        )[:top_n]
        out.append(
            TokenLogprob(
                token_id=token_id,
                token=(chosen.decoded_token or "") if chosen else "",
                logprob=_clamp(chosen.logprob if chosen else float("-inf")),
                top=tuple(
                    TopLogprob(tid, lp.decoded_token or "", _clamp(lp.logprob))
                    for tid, lp in ranked
                ),
            )
        )
    return out


def _clamp(value: float) -> float:
    # -inf survives protobuf floats but not JSON; the smallest float32 stands in for it.
    return value if value > -3.4e38 else -3.4e38


def completion_delta(completion: Any, logprobs: int | None) -> CompletionDelta | None:
    """The new output of one vLLM `CompletionOutput` (DELTA mode) as a `CompletionDelta`.

    Args:
        completion: One entry of a `RequestOutput.outputs`.
        logprobs: The request's `sampling.logprobs` (alternatives kept per token), or None
            when it did not ask for logprobs.

    Returns:
        The delta, or None when the output carries no text, tokens or finish reason.
    """
    reason = finish_reason(completion.finish_reason)
    if not (completion.text or completion.token_ids or reason):
        return None
    token_ids = tuple(completion.token_ids)
    return CompletionDelta(
        index=completion.index,
        text=completion.text,
        token_ids=token_ids,
        logprobs=tuple(convert_logprobs(completion.logprobs, token_ids, logprobs))
        if logprobs is not None and completion.logprobs
        else (),
        finish_reason=reason,
        stop_reason="" if completion.stop_reason is None else str(completion.stop_reason),
    )
