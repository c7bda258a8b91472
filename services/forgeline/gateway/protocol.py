"""OpenAI API request and response models, in the order of the official API reference.

Requests accept unknown fields (logged by the gateway, not rejected), so newer SDKs keep
working; fields the gateway cannot honour are rejected with a 400 naming them. A few
vLLM extensions the benchmark clients send (`top_k`, `min_p`, `repetition_penalty`,
`ignore_eos`, ...) are accepted too. Integer fields that reach the inference contract are
bounded by their protobuf type (uint32, int64), and numbers must be finite, so an
out-of-range value is a 400 naming the field rather than a failure further down. Responses
carry OpenAI's exact shapes, including the `null`s the reference documents.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# OpenAI's documented limits where the gateway enforces them.
MAX_STOP = 16
MAX_TOP_LOGPROBS = 20
MAX_COMPLETION_LOGPROBS = 5
# Ranges of the contract's integer types.
UINT32_MAX = 2**32 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class OpenAIModel(BaseModel):
    """Base of the request models: unknown fields are kept (and logged), not rejected."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, allow_inf_nan=False)

    def unknown_fields(self) -> list[str]:
        """Names of the fields the request carried that this model does not declare."""
        return sorted(self.model_extra or {})


class ResponseModel(BaseModel):
    """Base of the response models."""

    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- errors


class ErrorInfo(ResponseModel):
    """The body of an error."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(ResponseModel):
    """`{"error": {...}}`, as the OpenAI API answers any failure."""

    error: ErrorInfo


# --------------------------------------------------------------------------- shared


class StreamOptions(OpenAIModel):
    """Options of a streamed response."""

    include_usage: bool | None = None
    include_obfuscation: bool | None = None


class CompletionUsage(ResponseModel):
    """Token counts of a request."""

    completion_tokens: int
    prompt_tokens: int
    total_tokens: int


Stop = str | list[str] | None
Uint32 = Annotated[int, Field(ge=0, le=UINT32_MAX)]
PositiveUint32 = Annotated[int, Field(ge=1, le=UINT32_MAX)]
Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]


class SamplingExtensions(OpenAIModel):
    """vLLM sampling fields beyond the OpenAI API, accepted by both endpoints."""

    top_k: Annotated[int, Field(le=UINT32_MAX)] | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    ignore_eos: bool = False
    include_stop_str_in_output: bool = False
    stop_token_ids: list[Uint32] | None = None


# --------------------------------------------------------------------------- completions


class CompletionRequest(SamplingExtensions):
    """POST /v1/completions."""

    model: str
    # Token ids are range-checked after validation, so that one message names the prompt
    # instead of one per member of this union.
    prompt: str | list[str] | list[int] | list[list[int]]
    best_of: int | None = None
    echo: bool | None = False
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: Annotated[int, Field(ge=0, le=MAX_COMPLETION_LOGPROBS)] | None = None
    max_tokens: Uint32 | None = 16
    n: PositiveUint32 | None = 1
    presence_penalty: float | None = None
    seed: Int64 | None = None
    stop: Stop = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    suffix: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    user: str | None = None


class CompletionLogprobs(ResponseModel):
    """Per-token logprobs of a completion choice (the legacy format)."""

    text_offset: list[int]
    token_logprobs: list[float | None]
    tokens: list[str]
    top_logprobs: list[dict[str, float] | None]


class CompletionChoice(ResponseModel):
    """One completion."""

    finish_reason: str | None
    index: int
    logprobs: CompletionLogprobs | None = None
    text: str


class Completion(ResponseModel):
    """Response of /v1/completions, and each event of its stream."""

    id: str
    choices: list[CompletionChoice]
    created: int
    model: str
    system_fingerprint: str | None = None
    object: Literal["text_completion"] = "text_completion"
    usage: CompletionUsage | None = None


# --------------------------------------------------------------------------- chat


class TextPart(OpenAIModel):
    """A text part of a message's content."""

    type: str
    text: str | None = None


class ChatMessageParam(OpenAIModel):
    """One input message (system, developer, user, assistant or tool)."""

    role: str
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class ResponseFormat(OpenAIModel):
    """`response_format`; only plain text is produced."""

    type: str


class ChatCompletionRequest(SamplingExtensions):
    """POST /v1/chat/completions."""

    messages: list[ChatMessageParam] = Field(min_length=1)
    model: str
    audio: dict[str, Any] | None = None
    frequency_penalty: float | None = None
    function_call: str | dict[str, Any] | None = None
    functions: list[dict[str, Any]] | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = False
    max_completion_tokens: PositiveUint32 | None = None
    max_tokens: PositiveUint32 | None = None
    metadata: dict[str, str] | None = None
    modalities: list[str] | None = None
    n: PositiveUint32 | None = 1
    parallel_tool_calls: bool | None = None
    prediction: dict[str, Any] | None = None
    presence_penalty: float | None = None
    reasoning_effort: str | None = None
    response_format: ResponseFormat | None = None
    seed: Int64 | None = None
    service_tier: str | None = None
    stop: Stop = None
    store: bool | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    temperature: float | None = None
    tool_choice: str | dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=MAX_TOP_LOGPROBS)] | None = None
    top_p: float | None = None
    user: str | None = None
    # Forgeline/vLLM extensions.
    add_generation_prompt: bool = True


class TopLogprob(ResponseModel):
    """An alternative token at a position."""

    token: str
    logprob: float
    bytes: list[int] | None


class ChatTokenLogprob(ResponseModel):
    """Logprob of one generated token."""

    token: str
    logprob: float
    bytes: list[int] | None
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(ResponseModel):
    """Logprobs of a chat choice."""

    content: list[ChatTokenLogprob] | None
    refusal: list[ChatTokenLogprob] | None = None


class ChatCompletionMessage(ResponseModel):
    """The generated message."""

    content: str | None
    refusal: str | None = None
    role: Literal["assistant"] = "assistant"


class ChatChoice(ResponseModel):
    """One chat completion."""

    finish_reason: str | None
    index: int
    logprobs: ChoiceLogprobs | None = None
    message: ChatCompletionMessage


class ChatCompletion(ResponseModel):
    """Response of /v1/chat/completions."""

    id: str
    choices: list[ChatChoice]
    created: int
    model: str
    object: Literal["chat.completion"] = "chat.completion"
    service_tier: str | None = None
    system_fingerprint: str | None = None
    usage: CompletionUsage | None = None


class ChoiceDelta(ResponseModel):
    """What a stream event adds to a chat choice."""

    content: str | None = None
    refusal: str | None = None
    role: Literal["assistant"] | None = None


class ChunkChoice(ResponseModel):
    """A chat choice in a stream event."""

    delta: ChoiceDelta
    finish_reason: str | None = None
    index: int
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(ResponseModel):
    """One event of a streamed chat completion."""

    id: str
    choices: list[ChunkChoice]
    created: int
    model: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    service_tier: str | None = None
    system_fingerprint: str | None = None
    usage: CompletionUsage | None = None


# --------------------------------------------------------------------------- models


class ModelCard(ResponseModel):
    """One entry of /v1/models (OpenAI's fields, then vLLM's `root`/`parent`/`max_model_len`)."""

    id: str
    created: int
    object: Literal["model"] = "model"
    owned_by: str = "forgeline"
    root: str | None = None
    parent: str | None = None
    max_model_len: int | None = None


class ModelList(ResponseModel):
    """Response of /v1/models."""

    object: Literal["list"] = "list"
    data: list[ModelCard]
