"""What a generation request can cost before it runs: its fan-out and its token bound.

A request is admitted against its key's limits before it starts, so its cost is bounded
up front. `generations` counts the engine generations it starts (prompts x `n`), which
the gateway caps per request. `estimate` bounds its tokens: each prompt's exact length
(tokenized by the inference service as Generate would, chat template included) plus, for
each of its `n` completions, `max_tokens` or the room the context leaves, whichever is
smaller. Only keys with a token limit need the estimate, so only their
requests pay for the extra Tokenize calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from forgeline.client.aio import AsyncInferenceClient
from forgeline.gateway.api_errors import bad_request
from forgeline.gateway.capacity import retry_refused
from forgeline.gateway.protocol import ChatCompletionRequest, CompletionRequest
from forgeline.v1 import inference_pb2

# Output budget of a generation whose bound is unknown (token prompt, no max_tokens): the
# limiter then reserves a full bucket for it.
UNKNOWN_BUDGET = 2**32 - 1


def generations(body: CompletionRequest | ChatCompletionRequest) -> tuple[int, int]:
    """(prompts, completions per prompt) that a request asks for."""
    n = body.n or 1
    if isinstance(body, ChatCompletionRequest):
        return 1, n
    prompt = body.prompt
    if isinstance(prompt, str) or (prompt and isinstance(prompt[0], int)):
        return 1, n
    return len(prompt), n


def check_fan_out(
    body: CompletionRequest | ChatCompletionRequest, max_generations: int, max_prompts: int
) -> int:
    """Returns the number of generations a request starts.

    Raises:
        ApiError: 400 naming `prompt` (or `n`) when they are more than `max_generations`,
            or the prompts more than `max_prompts`.
    """
    prompts, n = generations(body)
    if prompts * n > max_generations:
        raise bad_request(
            f"this request asks for {prompts} prompt(s) x n={n} = {prompts * n} generations; "
            f"at most {max_generations} are allowed per request: send fewer prompts or a "
            "smaller n",
            "prompt" if prompts > max_generations else "n",
        )
    if prompts > max_prompts:
        raise bad_request(
            f"this request has {prompts} prompts; at most {max_prompts} are allowed per request",
            "prompt",
        )
    return prompts * n


@dataclass(frozen=True)
class TokenEstimate:
    """An upper bound of what a request's generations use.

    Attributes:
        prompt_tokens: Tokens of each engine request's prompt, in request order.
        total: Prompt tokens plus the output budget of every completion.
        bounded: Whether every completion had a known budget.
    """

    prompt_tokens: tuple[int, ...]
    total: int
    bounded: bool


def _tokenize_request(request: inference_pb2.GenerateRequest) -> inference_pb2.TokenizeRequest:
    if request.HasField("messages"):
        return inference_pb2.TokenizeRequest(
            model=request.model,
            messages=request.messages,
            add_generation_prompt=request.add_generation_prompt,
        )
    return inference_pb2.TokenizeRequest(model=request.model, text=request.prompt)


async def _length(
    client: AsyncInferenceClient, request: inference_pb2.GenerateRequest
) -> tuple[int, int | None]:
    """(prompt tokens, context length or None when unknown) of one engine request."""
    if request.HasField("prompt_token_ids"):
        return len(request.prompt_token_ids.ids), None
    tokenize = _tokenize_request(request)
    response = await retry_refused(lambda: client.tokenize(tokenize))
    return response.count, response.max_model_len or None


async def estimate(
    client: AsyncInferenceClient, requests: Sequence[inference_pb2.GenerateRequest]
) -> TokenEstimate:
    """Bounds the tokens `requests` can use.

    Raises:
        ForgelineError: the inference service could not tokenize a prompt (unknown model,
            a model that is not ready, ...).
    """
    lengths = await asyncio.gather(*(_length(client, r) for r in requests))
    total = 0
    bounded = True
    for request, (prompt, context) in zip(requests, lengths, strict=True):
        sampling = request.sampling
        room = max(0, context - prompt) if context else UNKNOWN_BUDGET
        if sampling.HasField("max_tokens"):
            # The engine never generates past the context (and refuses a budget beyond it
            # with a 400, which should not be preempted by a 429 here).
            budget = min(sampling.max_tokens, room)
        else:
            bounded = False
            budget = room
        total += prompt + (sampling.n or 1) * budget
    return TokenEstimate(tuple(p for p, _ in lengths), total, bounded)
