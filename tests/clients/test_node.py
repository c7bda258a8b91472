"""The Node.js client (`clients/node`) against a real registry and inference service.

A registry holding the bundled model and an inference service serving it (one small CPU
engine) run in-process with a bearer token; `node --test` then runs the client's own test
file against them, which lists versions, streams a generation, reads field violations and
is refused without the token. The Python SDK's greedy answer is passed along, so the text
the Node client streams must match it exactly.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from forgeline.client import ChannelOptions, InferenceClient
from forgeline.common.settings import ServiceName, Settings
from forgeline.inference.service import create_server
from forgeline.v1 import inference_pb2
from tests.conftest import serving
from tests.inference.support import BASE_MODEL, ENGINE, SERVED, registry_with_models

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("node") is None, reason="node (Node.js 20+) is not installed"),
]

CLIENT = Path(__file__).resolve().parents[2] / "clients" / "node"
TOKEN = "node-client-token"
QUESTION = "What is the capital of France?"
NODE_TESTS = 6


def test_the_node_client_calls_the_services(tmp_path, bundled_model):
    assert (CLIENT / "node_modules" / "@grpc" / "grpc-js").is_dir(), (
        "the Node client's dependencies are not installed: run `make node-deps` "
        "(npm ci --prefix clients/node)"
    )
    engine = inference_pb2.EngineOptions()
    engine.CopyFrom(ENGINE)
    engine.ClearField("enable_lora")
    engine.ClearField("max_lora_rank")
    with registry_with_models(tmp_path, bundled_model, token=TOKEN, adapter=False) as registry:
        settings = Settings.load(
            "inference",
            host="127.0.0.1",
            port=0,
            home=tmp_path,
            token=TOKEN,
            addresses={ServiceName.REGISTRY: registry.address},
        )
        with (
            serving(lambda: create_server(settings)[0]) as inference,
            InferenceClient(inference.address, ChannelOptions(token=TOKEN)) as client,
        ):
            served = client.load_model(BASE_MODEL, SERVED, engine)
            assert served.state == inference_pb2.SERVED_MODEL_STATE_READY, served.error
            greedy = inference_pb2.SamplingParams(temperature=0, max_tokens=8)
            expected = "".join(
                client.stream_text(SERVED, messages=[("user", QUESTION)], sampling=greedy)
            )
            env = {
                **os.environ,
                "FORGELINE_REGISTRY_ADDRESS": registry.address,
                "FORGELINE_INFERENCE_ADDRESS": inference.address,
                "FORGELINE_TOKEN": TOKEN,
                "FORGELINE_TEST_MODEL": BASE_MODEL,
                "FORGELINE_TEST_SERVED": SERVED,
                "FORGELINE_TEST_EXPECTED": expected,
            }
            run = subprocess.run(
                ["node", "--test", "--test-reporter=tap", "test/"],
                cwd=CLIENT,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    counts = dict(re.findall(r"^# (pass|fail|skipped|cancelled) (\d+)$", output, re.MULTILINE))
    assert counts == {"pass": str(NODE_TESTS), "fail": "0", "skipped": "0", "cancelled": "0"}, (
        output
    )
