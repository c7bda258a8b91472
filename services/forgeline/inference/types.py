"""Domain types of the inference service and their protobuf conversions.

Nothing here imports grpc or vLLM: the servicer converts protobuf to these types, the core
(`forgeline.inference.core`) routes them, and the engine (`forgeline.inference.engine`)
turns them into vLLM calls. The sampling rules that do not need an engine (validation,
defaults, the `max_tokens` budget) live here so they can be tested without one.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from forgeline.client.exceptions import FieldViolation, InvalidArgument, Violations
from forgeline.client.refs import RefError, parse_ref
from forgeline.v1 import inference_pb2

# vLLM accepts only these values for the highest LoRA rank an engine reserves room for.
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
# vLLM's defaults when `max_lora_rank` / `max_loras` are left at 0.
DEFAULT_MAX_LORA_RANK = 16
DEFAULT_MAX_LORAS = 1
# A bound on `n` and on the logprobs counts, so one request cannot monopolise an engine.
MAX_N = 128
MAX_LOGPROBS = 20


class Dtype(enum.StrEnum):
    """Weight and compute dtype of an engine, as vLLM names it."""

    AUTO = "auto"
    FLOAT32 = "float32"
    BFLOAT16 = "bfloat16"
    FLOAT16 = "float16"


_DTYPE_FROM_PB = {
    inference_pb2.ENGINE_DTYPE_UNSPECIFIED: Dtype.AUTO,
    inference_pb2.ENGINE_DTYPE_AUTO: Dtype.AUTO,
    inference_pb2.ENGINE_DTYPE_FLOAT32: Dtype.FLOAT32,
    inference_pb2.ENGINE_DTYPE_BFLOAT16: Dtype.BFLOAT16,
    inference_pb2.ENGINE_DTYPE_FLOAT16: Dtype.FLOAT16,
}
_DTYPE_TO_PB = {
    Dtype.AUTO: inference_pb2.ENGINE_DTYPE_AUTO,
    Dtype.FLOAT32: inference_pb2.ENGINE_DTYPE_FLOAT32,
    Dtype.BFLOAT16: inference_pb2.ENGINE_DTYPE_BFLOAT16,
    Dtype.FLOAT16: inference_pb2.ENGINE_DTYPE_FLOAT16,
}


class ServedKind(enum.Enum):
    """A model with its own engine, or an adapter on a base model's engine."""

    BASE = inference_pb2.SERVED_MODEL_KIND_BASE
    ADAPTER = inference_pb2.SERVED_MODEL_KIND_ADAPTER


class ServedState(enum.Enum):
    """Lifecycle of a served model."""

    LOADING = inference_pb2.SERVED_MODEL_STATE_LOADING
    READY = inference_pb2.SERVED_MODEL_STATE_READY
    FAILED = inference_pb2.SERVED_MODEL_STATE_FAILED


class FinishReason(enum.Enum):
    """Why a completion ended."""

    STOP = inference_pb2.FINISH_REASON_STOP
    LENGTH = inference_pb2.FINISH_REASON_LENGTH
    ABORT = inference_pb2.FINISH_REASON_ABORT
    ERROR = inference_pb2.FINISH_REASON_ERROR

    @classmethod
    def from_engine(cls, reason: str | None) -> FinishReason | None:
        """Maps vLLM's finish reason string (`stop`, `length`, `abort`, ...) to the enum.

        Reasons this contract does not name (newer vLLM stop conditions) count as STOP:
        the completion ended normally.
        """
        if reason is None:
            return None
        return _FINISH_FROM_ENGINE.get(reason, cls.STOP)


_FINISH_FROM_ENGINE = {
    "stop": FinishReason.STOP,
    "length": FinishReason.LENGTH,
    "abort": FinishReason.ABORT,
    "error": FinishReason.ERROR,
}


def _optional(message: Any, name: str) -> Any:
    return getattr(message, name) if message.HasField(name) else None


# --------------------------------------------------------------------------- engine options


@dataclass(frozen=True)
class EngineOptions:
    """Engine settings of a served model; zero values mean the engine's default.

    Attributes mirror `forgeline.v1.EngineOptions`; `engine_kwargs()` turns them into
    vLLM `AsyncEngineArgs` keyword arguments.
    """

    max_model_len: int = 0
    dtype: Dtype = Dtype.AUTO
    tensor_parallel_size: int = 0
    gpu_memory_utilization: float = 0.0
    kv_cache_bytes: int = 0
    max_loras: int = 0
    max_lora_rank: int = 0
    enable_lora: bool = False
    quantization: str = ""
    enforce_eager: bool = False
    seed: int | None = None

    @classmethod
    def from_pb(cls, pb: inference_pb2.EngineOptions) -> EngineOptions:
        """Builds options from their protobuf form."""
        return cls(
            max_model_len=pb.max_model_len,
            dtype=_DTYPE_FROM_PB.get(pb.dtype, Dtype.AUTO),
            tensor_parallel_size=pb.tensor_parallel_size,
            gpu_memory_utilization=pb.gpu_memory_utilization,
            kv_cache_bytes=pb.kv_cache_bytes,
            max_loras=pb.max_loras,
            max_lora_rank=pb.max_lora_rank,
            enable_lora=pb.enable_lora,
            quantization=pb.quantization,
            enforce_eager=pb.enforce_eager,
            seed=_optional(pb, "seed"),
        )

    def to_pb(self) -> inference_pb2.EngineOptions:
        """Returns the protobuf form."""
        pb = inference_pb2.EngineOptions(
            max_model_len=self.max_model_len,
            dtype=_DTYPE_TO_PB[self.dtype],
            tensor_parallel_size=self.tensor_parallel_size,
            gpu_memory_utilization=self.gpu_memory_utilization,
            kv_cache_bytes=self.kv_cache_bytes,
            max_loras=self.max_loras,
            max_lora_rank=self.max_lora_rank,
            enable_lora=self.enable_lora,
            quantization=self.quantization,
            enforce_eager=self.enforce_eager,
        )
        if self.seed is not None:
            pb.seed = self.seed
        return pb

    def validate(self, prefix: str = "engine") -> None:
        """Checks every field at once.

        Raises:
            InvalidArgument: one violation per bad field, named `<prefix>.<field>`.
        """
        v = Violations()
        v.check(
            0.0 <= self.gpu_memory_utilization <= 1.0,
            f"{prefix}.gpu_memory_utilization",
            "must be between 0 and 1",
        )
        v.check(
            self.max_lora_rank == 0 or self.max_lora_rank in LORA_RANKS,
            f"{prefix}.max_lora_rank",
            f"must be one of {', '.join(map(str, LORA_RANKS))}",
        )
        if not self.enable_lora:
            v.check(
                self.max_loras == 0 and self.max_lora_rank == 0,
                f"{prefix}.enable_lora",
                "must be true when max_loras or max_lora_rank is set",
            )
        v.raise_if_any()

    def with_defaults(self, kv_cache_bytes: int) -> EngineOptions:
        """Fills the KV-cache size from a service default when no memory setting was given."""
        if kv_cache_bytes and not self.kv_cache_bytes and not self.gpu_memory_utilization:
            return dataclasses.replace(self, kv_cache_bytes=kv_cache_bytes)
        return self

    @property
    def lora_rank_limit(self) -> int:
        """The highest adapter rank the engine accepts."""
        return self.max_lora_rank or DEFAULT_MAX_LORA_RANK

    def engine_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for vLLM's `AsyncEngineArgs`, leaving unset ones at its defaults."""
        kwargs: dict[str, Any] = {"dtype": self.dtype.value, "enforce_eager": self.enforce_eager}
        if self.max_model_len:
            kwargs["max_model_len"] = self.max_model_len
        if self.tensor_parallel_size:
            kwargs["tensor_parallel_size"] = self.tensor_parallel_size
        if self.gpu_memory_utilization:
            kwargs["gpu_memory_utilization"] = self.gpu_memory_utilization
        if self.kv_cache_bytes:
            kwargs["kv_cache_memory_bytes"] = self.kv_cache_bytes
        if self.enable_lora:
            kwargs["enable_lora"] = True
            kwargs["max_loras"] = self.max_loras or DEFAULT_MAX_LORAS
            kwargs["max_lora_rank"] = self.lora_rank_limit
        if self.quantization:
            kwargs["quantization"] = self.quantization
        if self.seed is not None:
            kwargs["seed"] = self.seed
        return kwargs


# --------------------------------------------------------------------------- sampling

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


@dataclass(frozen=True)
class SamplingOptions:
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
    def from_pb(cls, pb: inference_pb2.SamplingParams) -> SamplingOptions:
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

    def engine_kwargs(self, defaults: Mapping[str, Any], max_tokens: int) -> dict[str, Any]:
        """Keyword arguments for vLLM's `SamplingParams`.

        Args:
            defaults: The model's generation-config defaults (vLLM's
                `get_diff_sampling_param()`), used for fields left unset.
            max_tokens: The resolved token budget (see `resolve_max_tokens`).
        """
        kwargs: dict[str, Any] = {
            name: value
            for name in GENERATION_CONFIG_KEYS
            if (value := getattr(self, name)) is not None
            or (value := defaults.get(name)) is not None
        }
        kwargs.update(
            n=self.n,
            max_tokens=max_tokens,
            seed=self.seed,
            stop=list(self.stop) or None,
            stop_token_ids=list(self.stop_token_ids) or None,
            logprobs=self.logprobs,
            prompt_logprobs=self.prompt_logprobs,
            ignore_eos=self.ignore_eos,
            include_stop_str_in_output=self.include_stop_str_in_output,
            logit_bias=dict(self.logit_bias) or None,
        )
        return kwargs


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


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class ChatMessage:
    """One message of a conversation."""

    role: str
    content: str
    name: str | None = None

    def to_template(self) -> dict[str, str]:
        """The message as chat templates expect it."""
        message = {"role": self.role, "content": self.content}
        if self.name is not None:
            message["name"] = self.name
        return message


def _messages_from_pb(pb: inference_pb2.ChatMessages) -> tuple[ChatMessage, ...]:
    return tuple(ChatMessage(m.role, m.content, _optional(m, "name")) for m in pb.messages)


def _messages_to_pb(messages: Sequence[ChatMessage]) -> inference_pb2.ChatMessages:
    out = inference_pb2.ChatMessages()
    for m in messages:
        message = out.messages.add(role=m.role, content=m.content)
        if m.name is not None:
            message.name = m.name
    return out


def _input_violations(
    prompt: str | None,
    messages: tuple[ChatMessage, ...] | None,
    token_ids: tuple[int, ...] | None,
    names: tuple[str, str, str],
) -> list[FieldViolation]:
    v = Violations()
    given = [x is not None for x in (prompt, messages, token_ids)]
    if sum(given) != 1:
        v.add("input", f"give exactly one of {', '.join(n for n in names if n)}")
    if messages is not None:
        v.check(bool(messages), f"{names[1]}.messages", "must not be empty")
        for i, m in enumerate(messages):
            v.check(bool(m.role), f"{names[1]}.messages[{i}].role", "must not be empty")
    if token_ids is not None:
        v.check(bool(token_ids), f"{names[2]}.ids", "must not be empty")
    return v.items


@dataclass(frozen=True)
class GenerateRequest:
    """A generation: one of `prompt`, `messages` or `prompt_token_ids`, and how to sample."""

    model: str
    prompt: str | None = None
    messages: tuple[ChatMessage, ...] | None = None
    prompt_token_ids: tuple[int, ...] | None = None
    sampling: SamplingOptions = field(default_factory=SamplingOptions)
    request_id: str = ""
    add_generation_prompt: bool = True

    @classmethod
    def from_pb(cls, pb: inference_pb2.GenerateRequest) -> GenerateRequest:
        """Builds a request from its protobuf form."""
        which = pb.WhichOneof("input")
        return cls(
            model=pb.model,
            prompt=pb.prompt if which == "prompt" else None,
            messages=_messages_from_pb(pb.messages) if which == "messages" else None,
            prompt_token_ids=(
                tuple(pb.prompt_token_ids.ids) if which == "prompt_token_ids" else None
            ),
            sampling=SamplingOptions.from_pb(pb.sampling),
            request_id=pb.request_id,
            add_generation_prompt=(
                pb.add_generation_prompt if pb.HasField("add_generation_prompt") else True
            ),
        )

    def to_pb(self) -> inference_pb2.GenerateRequest:
        """Returns the protobuf form."""
        pb = inference_pb2.GenerateRequest(
            model=self.model,
            sampling=self.sampling.to_pb(),
            request_id=self.request_id,
            add_generation_prompt=self.add_generation_prompt,
        )
        if self.prompt is not None:
            pb.prompt = self.prompt
        elif self.messages is not None:
            pb.messages.CopyFrom(_messages_to_pb(self.messages))
        elif self.prompt_token_ids is not None:
            pb.prompt_token_ids.ids.extend(self.prompt_token_ids)
        return pb

    @property
    def input_field(self) -> str:
        """Name of the input field in use, for error messages."""
        if self.messages is not None:
            return "messages"
        if self.prompt_token_ids is not None:
            return "prompt_token_ids"
        return "prompt"

    def validate(self) -> None:
        """Checks the whole request before any work starts.

        Raises:
            InvalidArgument: every problem, each naming its field.
        """
        items = [] if self.model else [FieldViolation("model", "must not be empty")]
        items += _input_violations(
            self.prompt,
            self.messages,
            self.prompt_token_ids,
            ("prompt", "messages", "prompt_token_ids"),
        )
        items += self.sampling.violations()
        if items:
            raise InvalidArgument.from_violations(items)


@dataclass(frozen=True)
class TokenizeRequest:
    """Text or a conversation to tokenize exactly as Generate would."""

    model: str
    text: str | None = None
    messages: tuple[ChatMessage, ...] | None = None
    add_generation_prompt: bool = True

    @classmethod
    def from_pb(cls, pb: inference_pb2.TokenizeRequest) -> TokenizeRequest:
        """Builds a request from its protobuf form."""
        which = pb.WhichOneof("input")
        return cls(
            model=pb.model,
            text=pb.text if which == "text" else None,
            messages=_messages_from_pb(pb.messages) if which == "messages" else None,
            add_generation_prompt=(
                pb.add_generation_prompt if pb.HasField("add_generation_prompt") else True
            ),
        )

    def validate(self) -> None:
        """Raises:
        InvalidArgument: the model or the input is missing.
        """
        items = [] if self.model else [FieldViolation("model", "must not be empty")]
        items += _input_violations(self.text, self.messages, None, ("text", "messages", ""))
        if items:
            raise InvalidArgument.from_violations(items)

    def as_generate(self) -> GenerateRequest:
        """The equivalent generation request (for rendering the same prompt)."""
        return GenerateRequest(
            model=self.model,
            prompt=self.text,
            messages=self.messages,
            add_generation_prompt=self.add_generation_prompt,
        )


@dataclass(frozen=True)
class TokenizeResult:
    """Token ids of a rendered input and the model's context length."""

    token_ids: tuple[int, ...]
    max_model_len: int

    def to_pb(self) -> inference_pb2.TokenizeResponse:
        """Returns the protobuf form."""
        return inference_pb2.TokenizeResponse(
            token_ids=list(self.token_ids),
            count=len(self.token_ids),
            max_model_len=self.max_model_len,
        )


# --------------------------------------------------------------------------- outputs


@dataclass(frozen=True)
class TopLogprob:
    """One alternative token at a position."""

    token_id: int
    token: str
    logprob: float


@dataclass(frozen=True)
class TokenLogprob:
    """Log-probability of one token, with the most likely alternatives at its position."""

    token_id: int
    token: str
    logprob: float
    top: tuple[TopLogprob, ...] = ()

    def to_pb(self) -> inference_pb2.TokenLogprob:
        """Returns the protobuf form."""
        return inference_pb2.TokenLogprob(
            token_id=self.token_id,
            token=self.token,
            logprob=self.logprob,
            top_logprobs=[
                inference_pb2.TopLogprob(token_id=t.token_id, token=t.token, logprob=t.logprob)
                for t in self.top
            ],
        )


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


@dataclass(frozen=True)
class CompletionDelta:
    """New output of one of the `n` completions since the previous event."""

    index: int
    text: str
    token_ids: tuple[int, ...]
    logprobs: tuple[TokenLogprob, ...] = ()
    finish_reason: FinishReason | None = None
    stop_reason: str = ""

    def to_pb(self) -> inference_pb2.CompletionChunk:
        """Returns the protobuf form."""
        pb = inference_pb2.CompletionChunk(
            index=self.index,
            text=self.text,
            token_ids=self.token_ids,
            logprobs=[lp.to_pb() for lp in self.logprobs],
            stop_reason=self.stop_reason,
        )
        if self.finish_reason is not None:
            pb.finish_reason = self.finish_reason.value
        return pb


@dataclass(frozen=True)
class Usage:
    """Token counts of a request."""

    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    def to_pb(self) -> inference_pb2.Usage:
        """Returns the protobuf form."""
        return inference_pb2.Usage(
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            total_tokens=self.total_tokens,
        )


@dataclass(frozen=True)
class GenerateEvent:
    """One step of a generation stream."""

    request_id: str
    deltas: tuple[CompletionDelta, ...] = ()
    prompt_logprobs: tuple[TokenLogprob, ...] = ()
    usage: Usage | None = None

    def to_pb(self) -> inference_pb2.GenerateResponse:
        """Returns the protobuf form."""
        pb = inference_pb2.GenerateResponse(
            request_id=self.request_id,
            chunks=[d.to_pb() for d in self.deltas],
            prompt_logprobs=[lp.to_pb() for lp in self.prompt_logprobs],
        )
        if self.usage is not None:
            pb.usage.CopyFrom(self.usage.to_pb())
        return pb


# --------------------------------------------------------------------------- served models


@dataclass(frozen=True)
class ServedModel:
    """A model or adapter as ListServedModels reports it."""

    name: str
    kind: ServedKind
    ref: str
    version: int = 0
    parent: str = ""
    max_model_len: int = 0
    state: ServedState = ServedState.LOADING
    error: str = ""
    running_requests: int = 0
    lora_enabled: bool = False

    def to_pb(self) -> inference_pb2.ServedModel:
        """Returns the protobuf form."""
        try:
            ref = parse_ref(self.ref)
        except RefError:
            ref = None
        return inference_pb2.ServedModel(
            name=self.name,
            kind=self.kind.value,
            parent=self.parent,
            ref=ref,
            version=self.version,
            max_model_len=self.max_model_len,
            state=self.state.value,
            error=self.error,
            running_requests=self.running_requests,
            lora_enabled=self.lora_enabled,
        )
