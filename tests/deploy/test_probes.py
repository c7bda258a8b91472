"""The probes of the manifests work, with TLS off and on: the exact commands of
registry.yaml and serving.yaml run against a real registry and a stand-in gateway."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from forgeline.common.settings import TlsSettings
from forgeline.registry.service import create_server
from tests.conftest import serving
from tests.deploy import rules
from tests.deploy.manifests import COMPOSE, KUBERNETES, Resource, find, load_yaml_documents

pytestmark = pytest.mark.integration

TLS_VARIABLES = ("FORGELINE_TLS_CERT", "FORGELINE_TLS_KEY", "FORGELINE_TLS_CA")


def readiness_command(file: str, deployment: str) -> list[str]:
    """The exec command of a Deployment's readiness probe."""
    (found,) = find(load_yaml_documents(KUBERNETES / file), "Deployment", deployment)
    return found["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["exec"]["command"]


@pytest.fixture
def probe_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a probe: `python` and `forgeline` on PATH run this interpreter
    (as in the image, where both are the venv's), no TLS."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    shim = bin_dir / "forgeline"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m forgeline.cli "$@"\n')
    shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in TLS_VARIABLES}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return env


def tls_env(env: dict[str, str], tls: TlsSettings) -> dict[str, str]:
    """`env` with the TLS settings of a service that has a certificate."""
    return {
        **env,
        "FORGELINE_TLS_CERT": tls.cert_file,
        "FORGELINE_TLS_KEY": tls.key_file,
        "FORGELINE_TLS_CA": tls.ca_file,
    }


def run_probe(command: list[str], default_port: int, port: int, env: dict[str, str]) -> int:
    """Runs a probe command aimed at `port` instead of the service's default; its exit code."""
    aimed = [part.replace(f"localhost:{default_port}", f"localhost:{port}") for part in command]
    assert aimed != command, "the probe does not name the service's port"
    return subprocess.run(aimed, env=env, capture_output=True, timeout=60).returncode


def test_the_grpc_probe_passes_without_tls(settings_for, probe_env):
    command = readiness_command("registry.yaml", "registry")
    with serving(lambda: create_server(settings_for("registry", token="t"))[0]) as server:
        assert run_probe(command, 50051, server.server.port, probe_env) == 0


def test_the_grpc_probe_passes_with_tls_thanks_to_its_switch(settings_for, certificate, probe_env):
    command = readiness_command("registry.yaml", "registry")
    without_switch = [part.replace(rules.TLS_SWITCH, "") for part in command]
    settings = settings_for("registry", tls=certificate, token="t")
    env = tls_env(probe_env, certificate)
    with serving(lambda: create_server(settings)[0]) as server:
        assert run_probe(command, 50051, server.server.port, env) == 0
        assert run_probe(without_switch, 50051, server.server.port, env) != 0


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@contextmanager
def stand_in_gateway(status: int, tls: TlsSettings | None = None) -> Iterator[int]:
    """An HTTP(S) server answering /health with `status`; yields its port."""
    handler = type("Health", (_Health,), {"status": status})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls.cert_file, tls.key_file)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("status", "with_tls", "ready"),
    [(200, False, True), (503, False, False), (200, True, True)],
    ids=["healthy", "unhealthy", "healthy-tls"],
)
def test_the_gateway_probe_is_ready_only_on_a_healthy_answer(
    certificate, probe_env, status, with_tls, ready
):
    command = readiness_command("serving.yaml", "gateway")
    env = tls_env(probe_env, certificate) if with_tls else probe_env
    with stand_in_gateway(status, certificate if with_tls else None) as port:
        assert (run_probe(command, 8000, port, env) == 0) is ready


def test_compose_checks_the_gateway_as_kubernetes_does():
    compose: Resource = yaml.safe_load(COMPOSE.read_text())
    test = compose["services"]["gateway"]["healthcheck"]["test"]
    assert test[0] == "CMD"
    assert test[1:] == readiness_command("serving.yaml", "gateway")
