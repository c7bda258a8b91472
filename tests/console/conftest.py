"""Console fixtures: a real registry holding a small line of versions, and the console app
over it in a TestClient, logged in or not."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from forgeline.client.registry import RegistryClient
from forgeline.console.app import create_app
from forgeline.v1 import registry_pb2
from tests.console.support import TOKEN, console_config

ORIGIN = "http://testserver"
# The line the lineage graph must show: name, kind, parents.
LINE = [
    ("smol", registry_pb2.VERSION_KIND_BASE, []),
    ("facts", registry_pb2.VERSION_KIND_DATASET, []),
    ("smol-lora", registry_pb2.VERSION_KIND_ADAPTER, ["smol:1", "facts:1"]),
    ("smol-merged", registry_pb2.VERSION_KIND_MERGED, ["smol-lora:1"]),
    ("smol-gptq", registry_pb2.VERSION_KIND_QUANTIZED, ["smol-merged:1"]),
]


def evaluation(suite: str, accuracy: float, **subjects: float) -> registry_pb2.Evaluation:
    """A report of `suite` with an accuracy and per-subject scores."""
    return registry_pb2.Evaluation(
        suite=suite, metrics={"accuracy": accuracy}, subjects=subjects, num_samples=10
    )


def build_line(client: RegistryClient) -> None:
    """Registers `LINE` (empty READY versions) and two reports on each end of it."""
    for name, kind, parents in LINE:
        v = client.create_version(name, kind, parents=parents, create_model=True)
        client.commit_version(v.model, v.number)
    client.add_evaluation("smol:1", evaluation("mmlu", 0.5, history=0.6, law=0.4))
    client.add_evaluation("smol-gptq:1", evaluation("mmlu", 0.3, history=0.5, law=0.1))
    client.set_alias("smol", "production", 1, actor="test")


@pytest.fixture
def line(registry_client: RegistryClient) -> RegistryClient:
    """The registry client, with `LINE` registered."""
    build_line(registry_client)
    return registry_client


@pytest.fixture
def console(registry_server) -> Iterator[TestClient]:
    """The console app over the real registry (the other services unreachable), logged out."""
    config = console_config(registry=registry_server.address)
    with TestClient(create_app(config), headers={"Origin": ORIGIN}) as client:
        yield client


@pytest.fixture
def session(console: TestClient) -> TestClient:
    """`console`, logged in."""
    assert console.post("/api/login", json={"token": TOKEN}).status_code == 200
    return console
