"""Log-likelihoods of continuations, with a shared prompt prefix computed once.

Requests are tokenized as lm-evaluation-harness's Hugging Face backend does: trailing spaces
of the context move to the continuation, the continuation's tokens are those the whole
`context + continuation` has past the context's own tokens, and overlong inputs are cut on
the left to the model's length. When every option of a question is one token, the options
share one forward pass (the next-token distribution at the context's end), as lm-eval's
one-token grouping does.

Rows that start with the same tokens (a subject's k-shot prefix) share those tokens' key/value
cache: the common token prefix is run once, and each batch continues from a copy of its cache.
The prefix is the common prefix of the *token* sequences, so a cached row feeds the model
exactly the tokens an uncached one would, whatever the tokenizer does at the text boundary.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

log = logging.getLogger(__name__)

DEFAULT_MAX_LENGTH = 2048
# Shorter shared prefixes are not worth a separate pass.
MIN_CACHED_PREFIX = 8
_LENGTH_ATTRS = ("n_positions", "max_position_embeddings", "n_ctx")


@dataclass(frozen=True)
class Row:
    """One model input and the continuations read from its last positions.

    Attributes:
        tokens: Token ids fed to the model.
        continuations: Token ids of each continuation; continuation `c` is predicted by the
            last `len(c)` positions of `tokens`.
    """

    tokens: tuple[int, ...]
    continuations: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class QuestionRows:
    """How one question's options map onto rows: `(row index, continuation index)` each."""

    slots: tuple[tuple[int, int], ...]


def model_max_length(model: Any, tokenizer: Any) -> int:
    """The longest input the model takes, found the way lm-eval's HF backend finds it."""
    config = getattr(model, "config", None)
    for attr in _LENGTH_ATTRS:
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < 1_000_000_000:
        return tok_max
    return DEFAULT_MAX_LENGTH


class LoglikelihoodScorer:
    """Scores continuations of contexts with a causal language model.

    Args:
        model: A Hugging Face causal LM (or a `PeftModel` around one), in eval mode.
        tokenizer: Its tokenizer.
        batch_size: Rows per forward pass.
        max_length: Longest input; default from the model's config.
    """

    def __init__(
        self, model: Any, tokenizer: Any, *, batch_size: int = 8, max_length: int | None = None
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = max(1, batch_size)
        self.max_length = max_length or model_max_length(model, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def encode(self, text: str) -> list[int]:
        """Token ids of a text, with the tokenizer's default special tokens."""
        return self.tokenizer.encode(text)

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Context and continuation tokens, split as lm-eval's causal backend splits them."""
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            continuation = context[-n_spaces:] + continuation
            context = context[:-n_spaces]
        whole = self.encode(context + continuation)
        context_ids = self.encode(context)
        return context_ids, whole[len(context_ids) :]

    def build_rows(
        self, contexts: Sequence[str], continuations: Sequence[str]
    ) -> tuple[list[Row], list[QuestionRows]]:
        """Rows scoring every continuation after every context.

        A question whose continuations are all single tokens gets one row read at its last
        position; otherwise each continuation gets its own row.
        """
        rows: list[Row] = []
        questions: list[QuestionRows] = []
        for context in contexts:
            pairs = [self.encode_pair(context, c) for c in continuations]
            context_ids = pairs[0][0]
            same_context = all(ctx == context_ids for ctx, _ in pairs)
            if same_context and all(len(cont) == 1 for _, cont in pairs):
                tokens = tuple(context_ids[-self.max_length :])
                rows.append(Row(tokens, tuple((cont[0],) for _, cont in pairs)))
                index = len(rows) - 1
                questions.append(QuestionRows(tuple((index, i) for i in range(len(pairs)))))
                continue
            slots = []
            for ctx, cont in pairs:
                whole = (ctx + cont)[-(self.max_length + 1) :]
                rows.append(Row(tuple(whole[:-1]), (tuple(cont),)))
                slots.append((len(rows) - 1, 0))
            questions.append(QuestionRows(tuple(slots)))
        return rows, questions

    def score(
        self,
        contexts: Sequence[str],
        continuations: Sequence[str],
        *,
        use_prefix_cache: bool = True,
        on_contexts: Callable[[int], None] | None = None,
    ) -> list[list[float]]:
        """Log-likelihood of each continuation after each context.

        Args:
            contexts: The prompts.
            continuations: The options, the same for every prompt.
            use_prefix_cache: Run the rows' common token prefix once and reuse its cache.
            on_contexts: Called with the number of contexts finished by each batch.

        Returns:
            One list per context with one log-likelihood per continuation.
        """
        rows, questions = self.build_rows(contexts, continuations)
        owner = {r: q for q, question in enumerate(questions) for r, _ in question.slots}
        remaining = [len({r for r, _ in question.slots}) for question in questions]

        def rows_done(indices: list[int]) -> None:
            finished = 0
            for r in indices:
                remaining[owner[r]] -= 1
                finished += remaining[owner[r]] == 0
            if on_contexts is not None and finished:
                on_contexts(finished)

        scores = self.score_rows(rows, use_prefix_cache=use_prefix_cache, on_rows=rows_done)
        return [[scores[r][c] for r, c in q.slots] for q in questions]

    @torch.inference_mode()
    def score_rows(
        self,
        rows: Sequence[Row],
        *,
        use_prefix_cache: bool = True,
        on_rows: Callable[[list[int]], None] | None = None,
    ) -> list[list[float]]:
        """Summed log-probabilities of every continuation of every row.

        Rows are batched longest first, right-padded (padding sits after every real token,
        so causal attention never sees it). `on_rows` gets the indices of each finished batch.
        """
        if not rows:
            return []
        prefix_len = 0
        if use_prefix_cache:
            # Every position that predicts a continuation token must be fed, not cached.
            limit = min(len(r.tokens) - max(len(c) for c in r.continuations) for r in rows)
            prefix_len = min(common_prefix_length([r.tokens for r in rows]), limit)
        if prefix_len < MIN_CACHED_PREFIX:
            prefix_len = 0
        prefix_kv = self._prefix_cache(rows[0].tokens[:prefix_len]) if prefix_len else None
        log.debug("scoring %d rows with a cached prefix of %d tokens", len(rows), prefix_len)
        results: list[list[float]] = [[] for _ in rows]
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i].tokens))
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            scored = self._score_batch([rows[i] for i in batch], prefix_len, prefix_kv)
            for i, row_scores in zip(batch, scored, strict=True):
                results[i] = row_scores
            if on_rows is not None:
                on_rows(batch)
        return results

    def _prefix_cache(self, prefix: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Keys and values of every layer after the shared prefix (batch of one)."""
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        ids = torch.tensor([list(prefix)], device=self._device())
        self.model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
        return [(layer.keys, layer.values) for layer in cache.layers]

    def _score_batch(
        self,
        rows: Sequence[Row],
        prefix_len: int,
        prefix_kv: list[tuple[torch.Tensor, torch.Tensor]] | None,
    ) -> list[list[float]]:
        suffixes = [r.tokens[prefix_len:] for r in rows]
        width = max(len(s) for s in suffixes)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        for i, suffix in enumerate(suffixes):
            ids[i, : len(suffix)] = torch.tensor(suffix, dtype=torch.long)
        # Only the positions that predict a continuation go through the LM head.
        needed = sorted(
            {
                pos
                for row, suffix in zip(rows, suffixes, strict=True)
                for pos in range(len(suffix) - max(len(c) for c in row.continuations), len(suffix))
            }
        )
        column = {pos: k for k, pos in enumerate(needed)}
        kwargs: dict[str, Any] = {"input_ids": ids.to(self._device())}
        kwargs["logits_to_keep"] = torch.tensor(needed, device=self._device())
        if prefix_kv is not None:
            from transformers import DynamicCache

            # Expanded views: the cache's first update concatenates into fresh tensors.
            kwargs["past_key_values"] = DynamicCache(
                [
                    (k.expand(len(rows), -1, -1, -1), v.expand(len(rows), -1, -1, -1))
                    for k, v in prefix_kv
                ],
                config=self.model.config,
            )
            kwargs["use_cache"] = True
        else:
            kwargs["use_cache"] = False
        logits = self.model(**kwargs).logits
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        out = []
        for i, (row, suffix) in enumerate(zip(rows, suffixes, strict=True)):
            row_scores = []
            for cont in row.continuations:
                first = len(suffix) - len(cont)
                total = 0.0
                for j, token in enumerate(cont):
                    total += float(logprobs[i, column[first + j], token])
                row_scores.append(total)
            out.append(row_scores)
        return out

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device


def common_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """Length of the longest common prefix, leaving every sequence at least one token."""
    first = sequences[0]
    limit = min(len(s) for s in sequences) - 1
    n = 0
    while n < limit and all(s[n] == first[n] for s in sequences):
        n += 1
    return n
