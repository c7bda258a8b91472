"""Reflection, JSON logging, and the SDK's retries while a service comes up."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sys
import threading
import time

import pytest
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from forgeline.client import exceptions
from forgeline.client.channel import ChannelOptions, open_channel
from forgeline.client.registry import RegistryClient
from forgeline.common.logs import JsonFormatter
from forgeline.common.server import Service, build_server
from forgeline.registry.service import create_server
from forgeline.v1 import registry_pb2, registry_pb2_grpc
from tests.conftest import ServerThread, serving
from tests.helpers import free_port

pytestmark = pytest.mark.integration


def test_reflection_lists_the_service_and_health(settings_for):
    with serving(lambda: create_server(settings_for("registry", token="t"))[0]) as server:
        database = ProtoReflectionDescriptorDatabase(open_channel(server.address))
        services = set(database.get_services())
        service_file = database.FindFileContainingSymbol("forgeline.v1.RegistryService")
    assert {"forgeline.v1.RegistryService", "grpc.health.v1.Health"} <= services
    assert service_file.name == "forgeline/v1/registry.proto"


def test_json_log_lines_carry_level_logger_message_and_exception():
    record = logging.LogRecord(
        "forgeline.x", logging.ERROR, __file__, 1, "job %s failed", ("j1",), None
    )
    try:
        raise ValueError("boom")
    except ValueError:
        record.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "ERROR" and entry["logger"] == "forgeline.x"
    assert entry["message"] == "job j1 failed" and "ValueError: boom" in entry["exception"]


def test_sdk_retries_unavailable_until_the_service_is_up(settings_for):
    port = free_port()
    settings = dataclasses.replace(settings_for("registry"), port=port)
    holder: list[ServerThread] = []

    def start_later() -> None:
        time.sleep(0.8)
        holder.append(ServerThread(lambda: create_server(settings)[0]).start())

    starter = threading.Thread(target=start_later)
    starter.start()
    try:
        with RegistryClient(f"127.0.0.1:{port}") as client, pytest.raises(exceptions.NotFound):
            client.get_model("nothing-here")  # reached the real server after retries
    finally:
        starter.join()
        for server in holder:
            server.stop()


async def _set(event: asyncio.Event) -> None:
    event.set()


def test_calls_beyond_the_cap_are_refused_at_once(settings_for):
    release = asyncio.Event()

    class Slow(registry_pb2_grpc.RegistryServiceServicer):
        async def GetModel(self, request, context):
            await release.wait()
            return registry_pb2.GetModelResponse(model=registry_pb2.Model(name=request.name))

    name = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name
    servicer = Slow()
    service = Service(
        name, lambda s: registry_pb2_grpc.add_RegistryServiceServicer_to_server(servicer, s)
    )
    settings = settings_for("registry", max_concurrent_rpcs=1)
    with serving(lambda: build_server(settings, [service])) as server:
        results: list[object] = []
        with RegistryClient(server.address, ChannelOptions(retries=False)) as first:
            waiting = threading.Thread(target=lambda: results.append(first.get_model("a")))
            waiting.start()
            time.sleep(0.5)
            with (
                RegistryClient(server.address, ChannelOptions(retries=False)) as second,
                pytest.raises(exceptions.ResourceExhausted),
            ):
                second.get_model("b")
            server.run(_set(release))
            waiting.join(10)
        assert [m.name for m in results] == ["a"]
