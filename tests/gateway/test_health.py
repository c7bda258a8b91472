"""`/health` follows the served models: 503 naming them when one has FAILED, 503 when the
inference service cannot be reached, 200 otherwise (a model still loading is named)."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from forgeline.client import ChannelOptions, InferenceClient
from forgeline.common.settings import Settings
from forgeline.gateway.app import create_app
from forgeline.gateway.config import GatewayConfig
from forgeline.inference.resolver import LocalResolver
from forgeline.inference.service import create_server
from tests.conftest import serving
from tests.gateway.conftest import serve_app
from tests.helpers import wait_for
from tests.inference.fakes import FakeEngineFactory

pytestmark = pytest.mark.integration


class GatedFactory(FakeEngineFactory):
    """Starts engines only once `gate` is set (the model is LOADING until then)."""

    def __init__(self) -> None:
        super().__init__(fail_for={"broken"})
        self.gate = threading.Event()

    async def __call__(self, path, served_name, options):
        if served_name == "slow":
            await asyncio.to_thread(self.gate.wait, 30)
        return await super().__call__(path, served_name, options)


@pytest.fixture
def inference(tmp_path):
    (tmp_path / "base").mkdir()
    names = ("base", "broken", "slow")
    resolver = LocalResolver({name: tmp_path / "base" for name in names})
    settings = Settings.load("inference", port=0, home=str(tmp_path / "home"))
    factory = GatedFactory()
    with serving(
        lambda: create_server(settings, resolver=resolver, engine_factory=factory)[0]
    ) as thread:
        with InferenceClient(thread.address) as client:
            client.load_model("base")
        yield thread, factory
        factory.gate.set()


def health(url: str) -> httpx.Response:
    return httpx.get(f"{url}/health", timeout=10)


def test_a_failed_model_makes_the_gateway_unhealthy(inference):
    thread, _ = inference
    with serve_app(create_app(GatewayConfig(thread.address))) as url:
        assert (health(url).status_code, health(url).json()) == (200, {"status": "ok"})
        with InferenceClient(thread.address) as client:
            client.load_model("broken")
        response = health(url)
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "unavailable"
        assert body["not_ready"] == [{"model": "broken", "state": "FAILED"}]
        assert "broken" in body["reason"]
        assert "out of memory" not in response.text  # the cause goes to the log only
        with InferenceClient(thread.address) as client:
            client.unload_model("broken")
        assert health(url).status_code == 200


def test_a_loading_model_is_named_but_not_a_failure(inference):
    thread, factory = inference
    with serve_app(create_app(GatewayConfig(thread.address))) as url:
        loading = threading.Thread(
            target=lambda: InferenceClient(thread.address).load_model("slow"), daemon=True
        )
        loading.start()
        wait_for(lambda: "not_ready" in health(url).json(), timeout=10)
        response = health(url)
        assert response.status_code == 200
        assert response.json()["not_ready"] == [{"model": "slow", "state": "LOADING"}]
        factory.gate.set()
        loading.join(10)
        assert health(url).json() == {"status": "ok"}


def test_health_is_503_when_the_inference_service_is_unreachable():
    with serve_app(create_app(GatewayConfig("127.0.0.1:1"))) as url:
        response = health(url)
        assert response.status_code == 503
        assert response.json()["status"] == "unavailable"
        assert "cannot be reached" in response.json()["reason"]


def test_health_is_503_when_the_inference_service_refuses_the_gateway(tmp_path):
    (tmp_path / "base").mkdir()
    settings = Settings.load("inference", port=0, home=str(tmp_path / "home"), token="secret")
    resolver = LocalResolver({"base": tmp_path / "base"})
    with serving(
        lambda: create_server(settings, resolver=resolver, engine_factory=FakeEngineFactory())[0]
    ) as thread:
        config = GatewayConfig(thread.address, channel=ChannelOptions(token="wrong"))
        with serve_app(create_app(config)) as url:
            assert health(url).status_code == 503
