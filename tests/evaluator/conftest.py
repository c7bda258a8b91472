"""Evaluator fixtures: the real data sets beside the checkout, the bundled model loaded once."""

from __future__ import annotations

from pathlib import Path

import pytest

# The non-commercial sets (C-Eval, CMMLU) are never copied into the project: tests read them,
# and the full MMLU and GSM8K, from the shared data folder laid beside the checkout.
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def shared_data(name: str) -> Path:
    """A folder of the shared data, or a skip when this checkout has none beside it."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"shared data {name} not found at {path}")
    return path


@pytest.fixture(scope="package", autouse=True)
def one_torch_thread():
    """Scores with one torch thread, restoring the count afterwards.

    The bundled model's ops are small: on a 2-core machine shared with other busy processes,
    two threads spend most of their time waiting for each other (measured here: batched
    greedy generation of 3 x 10 tokens took 24 s with two threads, 1.8 s with one).
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def mmlu_dir() -> Path:
    """The full MMLU (hendrycks CSVs)."""
    return shared_data("mmlu")


@pytest.fixture(scope="session")
def ceval_dir() -> Path:
    """C-Eval (dev / val / test)."""
    return shared_data("ceval")


@pytest.fixture(scope="session")
def cmmlu_dir() -> Path:
    """CMMLU (dev / test)."""
    return shared_data("cmmlu")


@pytest.fixture(scope="session")
def gsm8k_file() -> Path:
    """GSM8K's test.jsonl."""
    return shared_data("gsm8k") / "test.jsonl"


@pytest.fixture(scope="session")
def loaded(bundled_model: Path):
    """The bundled SmolLM2 and its tokenizer, loaded once for the evaluator's tests."""
    from forgeline.evaluator.scorer import load_model

    return load_model(bundled_model)


@pytest.fixture
def ll_scorer(loaded):
    """A log-likelihood scorer over the bundled model."""
    from forgeline.evaluator.loglikelihood import LoglikelihoodScorer

    return LoglikelihoodScorer(loaded.model, loaded.tokenizer, batch_size=4)
