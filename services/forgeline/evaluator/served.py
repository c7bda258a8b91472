"""Scoring a model the inference service already serves, through its API (no weights here).

Multiple choice asks for prompt log-probabilities: each option's continuation is scored by
the log-probability the served model gives its tokens after the question (the same
context/continuation split lm-eval makes: the whole text is tokenized, and the
continuation is what follows the context's tokens). Generation QA asks for greedy answers,
with the model's chat template unless the suite turns it off. Perplexity needs the model's
own windows and is refused for served targets at submission.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from forgeline.client.channel import ChannelOptions
from forgeline.client.inference import InferenceClient
from forgeline.evaluator.generation_qa import GenerationQaSuite
from forgeline.evaluator.multiple_choice import MultipleChoiceSuite, run_multiple_choice
from forgeline.evaluator.results import SuiteResult
from forgeline.v1 import inference_pb2

log = logging.getLogger(__name__)


class ServedLoglikelihood:
    """`LoglikelihoodScorer.score` over a served model (one request per option).

    Args:
        client: The inference client.
        model: Served name.
    """

    def __init__(self, client: InferenceClient, model: str):
        self.client = client
        self.model = model

    def _ids(self, text: str) -> list[int]:
        return list(self.client.tokenize(self.model, text).token_ids)

    def score(
        self,
        prompts: Sequence[str],
        continuations: Sequence[str],
        *,
        use_prefix_cache: bool = True,
        on_contexts: Callable[[int], None] | None = None,
    ) -> list[list[float]]:
        """Log-likelihood of every continuation after every prompt."""
        del use_prefix_cache  # the engine's own prefix cache does this
        out = []
        for prompt in prompts:
            context = self._ids(prompt)
            scores = []
            for continuation in continuations:
                whole = self._ids(prompt + continuation)
                scores.append(self._continuation_logprob(whole, len(context)))
            out.append(scores)
            if on_contexts is not None:
                on_contexts(1)
        return out

    def _continuation_logprob(self, ids: list[int], context_length: int) -> float:
        request = inference_pb2.GenerateRequest(
            model=self.model,
            prompt_token_ids=inference_pb2.TokenIds(ids=ids),
            sampling=inference_pb2.SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0),
        )
        logprobs: list[float] = []
        for response in self.client.generate(request):
            if response.prompt_logprobs:
                logprobs = [p.logprob for p in response.prompt_logprobs]
        # Entry i is the log-probability of token i + 1.
        return float(sum(logprobs[context_length - 1 :]))


def generate_answers(
    client: InferenceClient, model: str, suite: GenerationQaSuite, questions: Sequence[str]
) -> list[str]:
    """Greedy answers of a served model, chat-templated unless the suite says not."""
    answers = []
    for question in questions:
        request = inference_pb2.GenerateRequest(
            model=model,
            sampling=inference_pb2.SamplingParams(max_tokens=suite.max_new_tokens, temperature=0),
        )
        if suite.apply_chat_template is False:
            request.prompt = question
        else:
            request.messages.messages.add(role="user", content=question)
        answers.append("".join(c.text for r in client.generate(request) for c in r.chunks))
    return answers


class ServedScorer:
    """Runs an evaluation job's suites against a served model.

    Args:
        address: The inference service.
        options: Token and TLS for it.
    """

    def __init__(self, address: str, options: ChannelOptions):
        self.address = address
        self.options = options

    def __call__(self, suites: Sequence, model: str, progress: Callable[[int, str], None]):
        """Scores `suites` (built with their data) on the served `model`."""
        results: list[SuiteResult] = []
        with InferenceClient(self.address, self.options) as client:
            for suite in suites:
                if isinstance(suite, MultipleChoiceSuite):
                    results.append(
                        run_multiple_choice(
                            ServedLoglikelihood(client, model),
                            suite,
                            use_prefix_cache=False,
                            on_items=progress,
                        )
                    )
                else:
                    results.append(self._qa(client, model, suite, progress))
        return results

    def _qa(self, client, model, suite: GenerationQaSuite, progress) -> SuiteResult:
        from forgeline.evaluator.generation_qa import qa_result

        started = time.monotonic()
        items = suite.load()
        outputs = generate_answers(client, model, suite, [item.question for item in items])
        progress(len(items), suite.name)
        result = qa_result(suite, items, [item.question for item in items], outputs)
        result.wall_seconds = time.monotonic() - started
        return result
