"""Reflection, JSON logging, and the SDK's retries while a service comes up."""

from __future__ import annotations

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
from forgeline.client.channel import open_channel
from forgeline.client.registry import RegistryClient
from forgeline.common.logs import JsonFormatter
from forgeline.registry.service import create_server
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
