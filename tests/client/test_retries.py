"""The SDK repeats only calls that are safe to repeat when a service answers UNAVAILABLE."""

from __future__ import annotations

from collections import Counter

import pytest

from forgeline.client import exceptions
from forgeline.client.registry import RegistryClient
from forgeline.common.server import Service, build_server
from forgeline.v1 import registry_pb2, registry_pb2_grpc
from tests.conftest import serving

pytestmark = pytest.mark.integration


class Restarting(registry_pb2_grpc.RegistryServiceServicer):
    """Answers UNAVAILABLE to the first call of each method, as a restarting service does."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def _first_fails(self, method: str) -> None:
        self.calls[method] += 1
        if self.calls[method] == 1:
            raise exceptions.Unavailable("restarting")

    async def GetVersion(self, request, context):
        self._first_fails("GetVersion")
        return registry_pb2.GetVersionResponse(version=registry_pb2.Version(model="m", number=1))

    async def CreateVersion(self, request, context):
        self._first_fails("CreateVersion")
        return registry_pb2.CreateVersionResponse(version=registry_pb2.Version(model="m"))

    async def CommitVersion(self, request, context):
        self._first_fails("CommitVersion")
        return registry_pb2.CommitVersionResponse()


@pytest.fixture
def restarting(settings_for):
    servicer = Restarting()
    name = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name
    service = Service(
        name, lambda s: registry_pb2_grpc.add_RegistryServiceServicer_to_server(servicer, s)
    )
    with serving(lambda: build_server(settings_for("registry"), [service])) as server:
        yield servicer, server.address


def test_reads_are_retried(restarting):
    servicer, address = restarting
    with RegistryClient(address) as client:
        assert client.get_version("m:1").number == 1
    assert servicer.calls["GetVersion"] == 2


def test_writes_are_not_repeated(restarting):
    servicer, address = restarting
    with RegistryClient(address) as client:
        with pytest.raises(exceptions.Unavailable):
            client.create_version("m", registry_pb2.VERSION_KIND_BASE)
        with pytest.raises(exceptions.Unavailable):
            client.commit_version("m", 1)
    assert (servicer.calls["CreateVersion"], servicer.calls["CommitVersion"]) == (1, 1)
