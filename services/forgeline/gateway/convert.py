"""OpenAI requests -> `GenerateRequest`s, and the Generate stream -> OpenAI responses.

Pure functions and small accumulators, no I/O: the app feeds them the protobuf messages
it reads from the inference service. Requests the gateway cannot honour are refused with a
400 naming the field, before anything reaches an engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from forgeline.gateway.api_errors import bad_request
from forgeline.gateway.protocol import (
    MAX_STOP,
    UINT32_MAX,
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    ChatCompletionRequest,
    ChatTokenLogprob,
    ChoiceDelta,
    ChoiceLogprobs,
    ChunkChoice,
    Completion,
    CompletionChoice,
    CompletionLogprobs,
    CompletionRequest,
    CompletionUsage,
    TopLogprob,
)
from forgeline.v1 import inference_pb2

FINISH_REASONS = {
    inference_pb2.FINISH_REASON_STOP: "stop",
    inference_pb2.FINISH_REASON_LENGTH: "length",
    inference_pb2.FINISH_REASON_ABORT: "abort",
    inference_pb2.FINISH_REASON_ERROR: "error",
}


def finish_reason(chunk: inference_pb2.CompletionChunk) -> str | None:
    """OpenAI's finish reason of a chunk, or None while the completion goes on."""
    if not chunk.HasField("finish_reason"):
        return None
    return FINISH_REASONS.get(chunk.finish_reason, "stop")


# --------------------------------------------------------------------------- requests


def _stop(stop: str | list[str] | None) -> list[str]:
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if len(stops) > MAX_STOP:
        raise bad_request(f"at most {MAX_STOP} stop sequences are allowed", "stop")
    if any(not s for s in stops):
        raise bad_request("stop sequences must not be empty", "stop")
    return stops


def _token_id(key: str) -> int | None:
    # str.isdigit() also accepts digits int() refuses ("²") and other scripts' digits.
    if not (key.isascii() and key.isdigit()) or len(key) > 10:
        return None
    value = int(key)
    return value if value <= UINT32_MAX else None


def _logit_bias(bias: dict[str, float] | None) -> dict[int, float]:
    out = {}
    for key, value in (bias or {}).items():
        token = _token_id(key)
        if token is None:
            raise bad_request(
                f"logit_bias keys are token ids (0 to {UINT32_MAX}); {key[:40]!r} is not one",
                "logit_bias",
            )
        out[token] = value
    return out


def _token_prompt(ids: list[int]) -> list[int]:
    if not ids:
        raise bad_request("token prompts must not be empty", "prompt")
    if not all(0 <= i <= UINT32_MAX for i in ids):
        raise bad_request(f"token ids must be between 0 and {UINT32_MAX}", "prompt")
    return ids


def _sampling(
    req: CompletionRequest | ChatCompletionRequest,
    max_tokens: int | None,
    logprobs: int | None,
) -> inference_pb2.SamplingParams:
    pb = inference_pb2.SamplingParams(
        stop=_stop(req.stop),
        stop_token_ids=req.stop_token_ids or [],
        n=req.n or 1,
        ignore_eos=req.ignore_eos,
        include_stop_str_in_output=req.include_stop_str_in_output,
        logit_bias=_logit_bias(req.logit_bias),
    )
    optional = {
        "temperature": req.temperature,
        "top_p": req.top_p,
        "min_p": req.min_p,
        "max_tokens": max_tokens,
        "seed": req.seed,
        "presence_penalty": req.presence_penalty,
        "frequency_penalty": req.frequency_penalty,
        "repetition_penalty": req.repetition_penalty,
        "logprobs": logprobs,
    }
    if req.top_k is not None:
        if req.top_k < -1:
            raise bad_request("top_k must be -1 (all tokens) or positive", "top_k")
        optional["top_k"] = max(req.top_k, 0)  # vLLM's -1 and 0 both mean "all tokens"
    for name, value in optional.items():
        if value is None:
            continue
        try:
            setattr(pb, name, value)
        except (ValueError, TypeError):
            # The request models bound every field; this keeps a missed one a 400.
            raise bad_request(f"{name} is out of range", name) from None
    return pb


def completion_requests(
    req: CompletionRequest, request_id: str
) -> list[inference_pb2.GenerateRequest]:
    """One `GenerateRequest` per prompt of a /v1/completions request.

    Raises:
        ApiError: a 400 naming a field the gateway cannot honour.
    """
    if req.suffix:
        raise bad_request("suffix is not supported by this server", "suffix")
    if req.best_of is not None and req.best_of != (req.n or 1):
        raise bad_request("best_of is not supported by this server; use n", "best_of")
    if req.max_tokens == 0:
        raise bad_request("max_tokens must be at least 1", "max_tokens")
    if req.echo and req.logprobs is not None:
        raise bad_request("echo cannot be combined with logprobs here", "echo")
    text_prompts = isinstance(req.prompt, str) or all(isinstance(p, str) for p in req.prompt)
    if req.echo and not text_prompts:
        raise bad_request("echo needs text prompts, not token ids", "echo")
    sampling = _sampling(req, req.max_tokens, req.logprobs)
    prompt = req.prompt
    if isinstance(prompt, str) or (prompt and isinstance(prompt[0], int)):
        prompts: Sequence[str | list[int]] = [prompt]  # type: ignore[list-item]
    else:
        prompts = prompt  # type: ignore[assignment]
    if not prompts:
        raise bad_request("prompt must not be empty", "prompt")
    out = []
    for i, p in enumerate(prompts):
        request = inference_pb2.GenerateRequest(
            model=req.model,
            sampling=sampling,
            request_id=request_id if len(prompts) == 1 else f"{request_id}-{i}",
        )
        if isinstance(p, str):
            request.prompt = p
        else:
            request.prompt_token_ids.ids.extend(_token_prompt(p))
        out.append(request)
    return out


def _content(message, i: int) -> str:
    content = message.content
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for part in content:
        if part.type != "text" or part.text is None:
            raise bad_request(
                f"content parts of type {part.type!r} are not supported; send text",
                f"messages[{i}].content",
            )
        texts.append(part.text)
    return "\n".join(texts)


def chat_request(req: ChatCompletionRequest, request_id: str) -> inference_pb2.GenerateRequest:
    """The `GenerateRequest` of a /v1/chat/completions request.

    Raises:
        ApiError: a 400 naming a field the gateway cannot honour.
    """
    if req.tools or req.functions:
        raise bad_request(
            "tool calling is not supported by this server", "tools" if req.tools else "functions"
        )
    if req.tool_choice not in (None, "none"):
        raise bad_request("tool calling is not supported by this server", "tool_choice")
    if req.function_call not in (None, "none"):
        raise bad_request("tool calling is not supported by this server", "function_call")
    if req.response_format is not None and req.response_format.type != "text":
        raise bad_request("only response_format type 'text' is supported", "response_format")
    if req.audio is not None:
        raise bad_request("only text output is supported", "audio")
    if req.modalities and set(req.modalities) != {"text"}:
        raise bad_request("only text output is supported", "modalities")
    if req.top_logprobs is not None and not req.logprobs:
        raise bad_request("top_logprobs requires logprobs to be true", "top_logprobs")
    logprobs = (req.top_logprobs or 0) if req.logprobs else None
    max_tokens = req.max_completion_tokens or req.max_tokens
    request = inference_pb2.GenerateRequest(
        model=req.model,
        sampling=_sampling(req, max_tokens, logprobs),
        request_id=request_id,
        add_generation_prompt=req.add_generation_prompt,
    )
    for i, message in enumerate(req.messages):
        if message.role == "tool" or message.tool_calls:
            raise bad_request("tool messages are not supported", f"messages[{i}].role")
        role = "system" if message.role == "developer" else message.role
        added = request.messages.messages.add(role=role, content=_content(message, i))
        if message.name:
            added.name = message.name
    return request


# --------------------------------------------------------------------------- responses


def usage(pb: inference_pb2.Usage) -> CompletionUsage:
    """OpenAI usage from the contract's."""
    return CompletionUsage(
        completion_tokens=pb.completion_tokens,
        prompt_tokens=pb.prompt_tokens,
        total_tokens=pb.prompt_tokens + pb.completion_tokens,
    )


def _token_bytes(token: str) -> list[int]:
    return list(token.encode("utf-8"))


def chat_logprobs(chunk: inference_pb2.CompletionChunk) -> ChoiceLogprobs:
    """Chat-format logprobs of a chunk's tokens."""
    return ChoiceLogprobs(
        content=[
            ChatTokenLogprob(
                token=lp.token,
                logprob=lp.logprob,
                bytes=_token_bytes(lp.token),
                top_logprobs=[
                    TopLogprob(token=t.token, logprob=t.logprob, bytes=_token_bytes(t.token))
                    for t in lp.top_logprobs
                ],
            )
            for lp in chunk.logprobs
        ]
    )


def completion_logprobs(chunk: inference_pb2.CompletionChunk, offset: int) -> CompletionLogprobs:
    """Legacy-format logprobs of a chunk's tokens; `offset` is where its text starts."""
    offsets = []
    for lp in chunk.logprobs:
        offsets.append(offset)
        offset += len(lp.token)
    return CompletionLogprobs(
        text_offset=offsets,
        token_logprobs=[lp.logprob for lp in chunk.logprobs],
        tokens=[lp.token for lp in chunk.logprobs],
        top_logprobs=[{t.token: t.logprob for t in lp.top_logprobs} for lp in chunk.logprobs],
    )


@dataclass
class _Choice:
    text: list[str] = field(default_factory=list)
    length: int = 0
    finish_reason: str | None = None
    logprobs: list = field(default_factory=list)


@dataclass
class Accumulator:
    """Collects Generate streams (one per prompt) into a non-streamed response.

    Choices are numbered `prompt_index * n + completion_index`, as OpenAI numbers them.
    """

    n: int
    prompts: int = 1
    choices: dict[int, _Choice] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, prompt_index: int, response: inference_pb2.GenerateResponse, legacy: bool):
        """Folds one stream message in; `legacy` keeps completion-format logprobs."""
        for chunk in response.chunks:
            choice = self.choices.setdefault(prompt_index * self.n + chunk.index, _Choice())
            if chunk.logprobs:
                if legacy:
                    choice.logprobs.append(completion_logprobs(chunk, choice.length))
                else:
                    choice.logprobs.extend(chat_logprobs(chunk).content or [])
            choice.text.append(chunk.text)
            choice.length += len(chunk.text)
            choice.finish_reason = finish_reason(chunk) or choice.finish_reason
        if response.HasField("usage"):
            self.prompt_tokens += response.usage.prompt_tokens
            self.completion_tokens += response.usage.completion_tokens

    def usage(self) -> CompletionUsage:
        """Summed usage of every prompt."""
        return CompletionUsage(
            completion_tokens=self.completion_tokens,
            prompt_tokens=self.prompt_tokens,
            total_tokens=self.prompt_tokens + self.completion_tokens,
        )

    def completion(self, id: str, created: int, model: str, echo: Sequence[str] = ()) -> Completion:
        """The /v1/completions response (prompts prepended when `echo` lists them)."""
        choices = []
        for index in range(self.prompts * self.n):
            c = self.choices.get(index, _Choice())
            logprobs = None
            if c.logprobs:
                logprobs = CompletionLogprobs(
                    text_offset=[o for lp in c.logprobs for o in lp.text_offset],
                    token_logprobs=[v for lp in c.logprobs for v in lp.token_logprobs],
                    tokens=[t for lp in c.logprobs for t in lp.tokens],
                    top_logprobs=[t for lp in c.logprobs for t in lp.top_logprobs],
                )
            prefix = echo[index // self.n] if echo else ""
            choices.append(
                CompletionChoice(
                    finish_reason=c.finish_reason,
                    index=index,
                    logprobs=logprobs,
                    text=prefix + "".join(c.text),
                )
            )
        return Completion(id=id, choices=choices, created=created, model=model, usage=self.usage())

    def chat_completion(
        self, id: str, created: int, model: str, with_logprobs: bool
    ) -> ChatCompletion:
        """The /v1/chat/completions response."""
        choices = []
        for index in range(self.n):
            c = self.choices.get(index, _Choice())
            choices.append(
                ChatChoice(
                    finish_reason=c.finish_reason,
                    index=index,
                    logprobs=ChoiceLogprobs(content=c.logprobs) if with_logprobs else None,
                    message=ChatCompletionMessage(content="".join(c.text)),
                )
            )
        return ChatCompletion(
            id=id, choices=choices, created=created, model=model, usage=self.usage()
        )


def completion_chunks(
    response: inference_pb2.GenerateResponse,
    prompt_index: int,
    n: int,
    offsets: dict[int, int],
    id: str,
    created: int,
    model: str,
    echo: str = "",
) -> list[Completion]:
    """The /v1/completions stream events of one Generate message, one per choice."""
    events = []
    for chunk in response.chunks:
        index = prompt_index * n + chunk.index
        start = offsets.get(index)
        text = chunk.text if start is not None or not echo else echo + chunk.text
        offset = start or 0
        logprobs = completion_logprobs(chunk, offset) if chunk.logprobs else None
        offsets[index] = offset + len(text)
        events.append(
            Completion(
                id=id,
                choices=[
                    CompletionChoice(
                        finish_reason=finish_reason(chunk),
                        index=index,
                        logprobs=logprobs,
                        text=text,
                    )
                ],
                created=created,
                model=model,
            )
        )
    return events


def chat_chunks(
    response: inference_pb2.GenerateResponse,
    started: set[int],
    id: str,
    created: int,
    model: str,
    with_logprobs: bool,
) -> list[ChatCompletionChunk]:
    """The /v1/chat/completions stream events of one Generate message, one per choice.

    A choice's first event carries `role: assistant`, as OpenAI's does.
    """
    events = []
    for chunk in response.chunks:
        first = chunk.index not in started
        started.add(chunk.index)
        events.append(
            ChatCompletionChunk(
                id=id,
                choices=[
                    ChunkChoice(
                        delta=ChoiceDelta(content=chunk.text, role="assistant" if first else None),
                        finish_reason=finish_reason(chunk),
                        index=chunk.index,
                        logprobs=chat_logprobs(chunk) if with_logprobs else None,
                    )
                ],
                created=created,
                model=model,
            )
        )
    return events
