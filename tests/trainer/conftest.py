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
    from forgeline.client.transfer import push_folder
    from forgeline.common.settings import ServiceName, Settings
    from forgeline.registry.service import create_server as create_registry
    from forgeline.v1 import registry_pb2
    from tests.conftest import ServerThread
    from tests.trainer.suite import BASE, Suite

    home = tmp_path_factory.mktemp("home")
    registry_settings = Settings.load("registry", host="127.0.0.1", port=0, home=home)
    registry = ServerThread(lambda: create_registry(registry_settings)[0]).start()
    trainer_settings = Settings.load(
        "trainer",
        host="127.0.0.1",
        port=0,
        home=home,
        addresses={ServiceName.REGISTRY: registry.address},
    )
    s = Suite(home, registry, None, trainer_settings)  # type: ignore[arg-type]
    s.start_trainer()
    with s.registry_client() as client:
        push_folder(client, bundled_model, BASE, registry_pb2.VERSION_KIND_BASE)
    yield s
    s.trainer.stop()
    registry.stop()
