"""Trainer fixtures: one local Ray for the session, and a registry holding the bundled model."""

from __future__ import annotations

import os
from pathlib import Path

# Before torch loads: idle OpenMP threads of in-process training sleep instead of spinning,
# which on a shared 2-core machine is the difference between seconds and minutes.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest


@pytest.fixture
def tiny_facts(tmp_path: Path) -> Path:
    """The invented-facts SFT dataset as a JSONL file."""
    from tests.trainer.datasets import facts_rows, write_jsonl

    return write_jsonl(tmp_path / "facts.jsonl", facts_rows())


@pytest.fixture(scope="module")
def suite(tmp_path_factory, ray_cluster, bundled_model):
    """A registry and a trainer in this process on one home, the bundled model registered."""
    from tests.trainer.suite import running_suite

    with running_suite(tmp_path_factory.mktemp("home"), bundled_model) as s:
        yield s
