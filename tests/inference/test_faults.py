"""Faults with real processes: a killed vLLM engine process, a killed inference service.

The inference service runs as `forgeline serve inference` (a real process, so that its vLLM
engine-core process is its child and can be killed); the registry holding the bundled model
runs in this process. Each test starts its own service with one small CPU engine. The same
faults over fake engines are in `tests/inference/test_core_faults.py`.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from forgeline.client import InferenceClient
from forgeline.client.exceptions import Cancelled, Unavailable
from forgeline.client.health import check_health
from forgeline.inference.service import SERVICE_NAME
from forgeline.v1 import inference_pb2
from tests.helpers import FORGELINE, ServiceProcess, start_service, wait_for
from tests.inference.support import BASE_MODEL, SERVED, registry_with_models

pytestmark = pytest.mark.e2e

# Small and quick on CPU: a short context, 256 MiB of KV cache, no compilation, no LoRA.
ENGINE = inference_pb2.EngineOptions(
    max_model_len=512, kv_cache_bytes=256 * 1024 * 1024, enforce_eager=True, seed=0
)
READY = inference_pb2.SERVED_MODEL_STATE_READY
FAILED = inference_pb2.SERVED_MODEL_STATE_FAILED


@pytest.fixture(scope="module")
def env(tmp_path_factory, bundled_model) -> Iterator[dict[str, str]]:
    home = tmp_path_factory.mktemp("home")
    with registry_with_models(home, bundled_model, adapter=False) as registry:
        yield {
            **os.environ,
            "FORGELINE_HOME": str(home),
            "FORGELINE_CACHE_DIR": str(home / "cache"),
            "FORGELINE_REGISTRY_ADDRESS": registry.address,
        }


@contextmanager
def inference_service(env: dict[str, str], log: Path, port: int = 0) -> Iterator[ServiceProcess]:
    """`forgeline serve inference`, stopped (or killed) afterwards."""
    service = start_service("inference", env, log, port=port)
    try:
        yield service
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):  # then `stop` killed it
            service.stop(30)


def engine_processes(service: ServiceProcess) -> list[psutil.Process]:
    """The vLLM engine-core processes among the service's descendants."""
    found, seen = [], []
    for child in psutil.Process(service.proc.pid).children(recursive=True):
        try:
            title = " ".join(child.cmdline()) + " " + child.name()
        except psutil.Error:
            continue
        seen.append(title)
        if "EngineCore" in title:
            found.append(child)
    assert found, f"no EngineCore process among the service's children: {seen}"
    return found


def gone(process: psutil.Process) -> bool:
    """Exited (a zombie waiting to be reaped counts: it holds no memory, no sockets)."""
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def state(client: InferenceClient) -> int:
    [model] = client.list_models()
    return model.state


def greet(client: InferenceClient) -> str:
    sampling = inference_pb2.SamplingParams(temperature=0, max_tokens=4)
    return "".join(client.stream_text(SERVED, "Hello", sampling=sampling, timeout=60))


def test_a_killed_engine_process_fails_the_model_until_it_is_loaded_again(env, tmp_path):
    with (
        inference_service(env, tmp_path / "inference.log") as service,
        InferenceClient(service.address) as client,
    ):
        loaded = client.load_model(BASE_MODEL, served_name=SERVED, engine=ENGINE)
        assert loaded.state == READY, loaded.error + service.output()[-3000:]
        assert check_health(service.address, SERVICE_NAME) == "SERVING"
        [engine] = engine_processes(service)

        engine.kill()  # SIGKILL, while idle
        wait_for(lambda: state(client) == FAILED, timeout=15)
        [model] = client.list_models()
        assert "SIGKILL" in model.error or "dead" in model.error, model.error
        assert check_health(service.address, SERVICE_NAME) == "NOT_SERVING"
        assert check_health(service.address) == "SERVING"  # the process itself is fine
        cli = subprocess.run(
            [*FORGELINE, "health", service.address, "--service", SERVICE_NAME],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert cli.returncode == 1 and "NOT_SERVING" in cli.stdout, cli.stdout + cli.stderr
        with pytest.raises(Unavailable):
            greet(client)

        again = client.load_model(BASE_MODEL, served_name=SERVED, engine=ENGINE)
        assert again.state == READY, again.error + service.output()[-3000:]
        assert check_health(service.address, SERVICE_NAME) == "SERVING"
        assert greet(client)


def test_a_killed_service_ends_the_stream_and_restarts_on_its_port(env, tmp_path):
    engines: list[psutil.Process] = []
    with inference_service(env, tmp_path / "first.log") as service:
        port = service.port
        try:
            with InferenceClient(service.address) as client:
                loaded = client.load_model(BASE_MODEL, served_name=SERVED, engine=ENGINE)
                assert loaded.state == READY, loaded.error + service.output()[-3000:]
                engines = engine_processes(service)
                request = inference_pb2.GenerateRequest(
                    model=SERVED,
                    prompt="Tell me a long story.",
                    sampling=inference_pb2.SamplingParams(max_tokens=400, ignore_eos=True),
                )
                stream = client.generate(request, timeout=120)
                next(stream)
                next(stream)  # generating

                service.proc.kill()  # SIGKILL, mid-generation
                killed = time.monotonic()
                with pytest.raises((Unavailable, Cancelled)):
                    for _ in stream:
                        pass
                assert time.monotonic() - killed < 30  # an error, not a hang
            service.proc.wait(10)
        finally:
            # vLLM's engine process has no parent-death check, so it may outlive a
            # SIGKILLed service (a container runtime or systemd kills it with the service's
            # group). Spawned, it holds no inherited socket, only memory: removed by hand.
            for process in engines:
                if not gone(process):
                    process.kill()

    with (
        inference_service(env, tmp_path / "second.log", port=port) as restarted,
        InferenceClient(restarted.address) as client,
    ):
        assert restarted.port == port
        assert check_health(restarted.address, SERVICE_NAME) == "SERVING"
        assert client.list_models() == []
        loaded = client.load_model(BASE_MODEL, served_name=SERVED, engine=ENGINE)
        assert loaded.state == READY, loaded.error + restarted.output()[-3000:]
        assert greet(client)
