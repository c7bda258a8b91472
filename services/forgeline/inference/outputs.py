"""Results of the inference service: generation events and tokenization results.

A generation streams `GenerateEvent`s, each holding the new output of some of its `n`
completions (`CompletionDelta`), with logprobs when asked for, and the usage in the last
one. How vLLM's outputs become these is `forgeline.inference.vllm_convert`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from forgeline.v1 import inference_pb2


class FinishReason(enum.Enum):
    """Why a completion ended."""

    STOP = inference_pb2.FINISH_REASON_STOP
    LENGTH = inference_pb2.FINISH_REASON_LENGTH
    ABORT = inference_pb2.FINISH_REASON_ABORT
    ERROR = inference_pb2.FINISH_REASON_ERROR


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
    """One step of a generation stream.

    `model_version` (`name:N`) is set by the core on the first event of a stream: the
    registry version whose engine answered, which can change between requests while a
    model follows its alias.
    """

    request_id: str
    deltas: tuple[CompletionDelta, ...] = ()
    prompt_logprobs: tuple[TokenLogprob, ...] = ()
    usage: Usage | None = None
    model_version: str = ""

    def to_pb(self) -> inference_pb2.GenerateResponse:
        """Returns the protobuf form."""
        pb = inference_pb2.GenerateResponse(
            request_id=self.request_id,
            chunks=[d.to_pb() for d in self.deltas],
            prompt_logprobs=[lp.to_pb() for lp in self.prompt_logprobs],
            model_version=self.model_version,
        )
        if self.usage is not None:
            pb.usage.CopyFrom(self.usage.to_pb())
        return pb


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
