"""The evaluator's entry point for a job: load a model once, run its suites, report progress.

The job runner resolves registry versions to folders and builds the suites; `Scorer` does
the rest on whatever worker it runs on. A BASE, MERGED or QUANTIZED version is one Hugging
Face folder; an ADAPTER is a PEFT folder applied to its base folder (kept unmerged, so a
quantized base stays quantized). Every suite's data is read and checked before the first
forward pass, so a bad file fails the job before any work.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgeline.client import exceptions
from forgeline.evaluator.generation_qa import GenerationQaSuite, run_generation_qa
from forgeline.evaluator.loglikelihood import LoglikelihoodScorer
from forgeline.evaluator.multiple_choice import MultipleChoiceSuite, run_multiple_choice
from forgeline.evaluator.perplexity_suite import PerplexitySuite, run_perplexity
from forgeline.evaluator.results import SuiteResult

log = logging.getLogger(__name__)

Suite = MultipleChoiceSuite | GenerationQaSuite | PerplexitySuite
# (items done, items in all suites, what is running, e.g. `mmlu/anatomy`). The callback may
# raise (`Cancelled`, say) to stop the run between batches.
Progress = Callable[[int, int, str], None]
DEFAULT_BATCH_SIZE = 8


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to score, with its tokenizer."""

    model: Any
    tokenizer: Any


def load_model(
    model_dir: Path,
    *,
    adapter_dir: Path | None = None,
    dtype: str = "auto",
    device: str = "cpu",
) -> LoadedModel:
    """Loads a Hugging Face folder, with a PEFT adapter on top when given, for inference.

    GPTQ and AWQ folders load through the quantizer's `load_for_scoring` (float32 layers
    holding exactly the quantized weights); bitsandbytes folders load as saved.

    Args:
        model_dir: The model folder (the adapter's base when `adapter_dir` is given).
        adapter_dir: A PEFT adapter folder, or None.
        dtype: Weight dtype name (`auto` keeps the folder's own).
        device: Torch device.

    Raises:
        FailedPrecondition: a folder does not hold a loadable model or adapter.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if _packed_quantization(Path(model_dir)):
        # GPTQ/AWQ: loaded the quantizer's way, the packed layers unpacked once into float32
        # layers holding exactly the quantized weights (CPU kernels unpack on every call).
        from forgeline.quantizer.perplexity import load_for_scoring

        model, tokenizer = load_for_scoring(Path(model_dir))
        return _finish(model, tokenizer, adapter_dir)
    torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
    try:
        tokenizer_dir = model_dir
        if adapter_dir is not None and (Path(adapter_dir) / "tokenizer_config.json").is_file():
            # An adapter trained with added tokens carries its own tokenizer.
            tokenizer_dir = adapter_dir
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch_dtype)
        if getattr(model, "hf_quantizer", None) is None:
            model.to(device)
    except (OSError, ValueError) as err:
        raise exceptions.FailedPrecondition(f"cannot load a model from {model_dir}: {err}") from err
    return _finish(model, tokenizer, adapter_dir)


def _packed_quantization(model_dir: Path) -> bool:
    """Whether the folder holds GPTQ or AWQ packed weights."""
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    method = str((config.get("quantization_config") or {}).get("quant_method", ""))
    return method.lower() in ("gptq", "awq")


def _finish(model: Any, tokenizer: Any, adapter_dir: Path | None) -> LoadedModel:
    """Applies the adapter, if any, and readies model and tokenizer for inference.

    Raises:
        FailedPrecondition: the adapter cannot be applied.
    """
    if adapter_dir is not None:
        from peft import PeftModel

        try:
            model = PeftModel.from_pretrained(model, adapter_dir)
        except (OSError, ValueError) as err:
            raise exceptions.FailedPrecondition(
                f"cannot apply the adapter in {adapter_dir}: {err}"
            ) from err
    model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(model, tokenizer)


class Scorer:
    """Runs evaluation suites on one model, loaded once.

    Args:
        model_dir: The model folder (the base, for an adapter).
        adapter_dir: A PEFT adapter folder applied to `model_dir`, or None.
        batch_size: Items per forward pass; 0 for the default.
        dtype: Weight dtype name; `auto` keeps the folder's.
        device: Torch device.
        use_prefix_cache: Reuse each subject's k-shot prefix cache (same decisions, faster).
        num_threads: Torch intra-op threads for this process; None leaves torch's default.
            On a CPU shared with other busy processes, fewer threads than cores avoid
            oversubscription, which can slow scoring several times over.
    """

    def __init__(
        self,
        model_dir: Path,
        *,
        adapter_dir: Path | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        dtype: str = "auto",
        device: str = "cpu",
        use_prefix_cache: bool = True,
        num_threads: int | None = None,
    ):
        self.model_dir = Path(model_dir)
        self.adapter_dir = Path(adapter_dir) if adapter_dir is not None else None
        self.batch_size = batch_size or DEFAULT_BATCH_SIZE
        self.dtype = dtype
        self.device = device
        self.use_prefix_cache = use_prefix_cache
        self.num_threads = num_threads
        self._loaded: LoadedModel | None = None

    @property
    def loaded(self) -> LoadedModel:
        """The model and tokenizer, loaded on first use.

        Raises:
            FailedPrecondition: the folders do not hold a loadable model.
        """
        if self._loaded is None:
            if self.num_threads:
                import torch

                torch.set_num_threads(self.num_threads)
            started = time.monotonic()
            self._loaded = load_model(
                self.model_dir, adapter_dir=self.adapter_dir, dtype=self.dtype, device=self.device
            )
            log.info("loaded %s in %.1f s", self.model_dir, time.monotonic() - started)
        return self._loaded

    def run(self, suites: Sequence[Suite], progress: Progress | None = None) -> list[SuiteResult]:
        """Runs the suites in order; returns one result per suite.

        Args:
            suites: What to run.
            progress: Called after every batch with (done, total, stage).

        Raises:
            InvalidArgument: a suite's data is malformed (found before any scoring).
            FailedPrecondition: the model cannot be loaded.
        """
        data = [suite.load() for suite in suites]
        total = sum(item_count(d) for d in data)
        done = 0

        def advance(n: int, stage: str) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress(done, total, stage)

        loaded = self.loaded
        results = []
        for suite, suite_data in zip(suites, data, strict=True):
            prefix = suite.name

            def on_items(n: int, what: str, prefix: str = prefix) -> None:
                advance(n, prefix if what == prefix else f"{prefix}/{what}")

            if progress is not None:
                progress(done, total, prefix)
            results.append(self._run_one(loaded, suite, suite_data, on_items))
        return results

    def _run_one(
        self, loaded: LoadedModel, suite: Suite, data: Any, on_items: Callable[[int, str], None]
    ) -> SuiteResult:
        if isinstance(suite, MultipleChoiceSuite):
            scorer = LoglikelihoodScorer(loaded.model, loaded.tokenizer, batch_size=self.batch_size)
            return run_multiple_choice(
                scorer,
                suite,
                data=data,
                use_prefix_cache=self.use_prefix_cache,
                on_items=on_items,
            )
        if isinstance(suite, GenerationQaSuite):
            return run_generation_qa(
                loaded.model,
                loaded.tokenizer,
                suite,
                items=data,
                batch_size=self.batch_size,
                on_items=on_items,
            )
        return run_perplexity(loaded.model, loaded.tokenizer, suite, texts=data, on_items=on_items)


def item_count(data: list[Any]) -> int:
    """Items a suite scores: questions of every subject, or its questions or documents."""
    return sum(len(d.scored) if hasattr(d, "scored") else 1 for d in data)
