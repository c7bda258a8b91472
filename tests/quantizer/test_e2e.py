"""The quantizer service end to end on the bundled SmolLM2: real registry, real Ray, real
quantization.

- A LoRA adapter merged by the service answers exactly as base + adapter do.
- A GGUF export loads back in transformers and knows the capital of France.

GPTQ W4 at the CPU defaults runs through this service in `tests/cli/test_demo.py`, on the
demo's merged model, and is served there by the inference service that follows the
release alias. AWQ's folder is checked against vLLM's config classes in `test_quantize.py`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from forgeline.client.cache import VersionCache
from forgeline.client.jobs import QuantizerClient
from forgeline.client.refs import parse_ref
from forgeline.common.settings import ServiceName, Settings
from forgeline.v1 import common_pb2, quantizer_pb2, registry_pb2
from tests.conftest import ServerThread
from tests.inference.support import ADAPTER_MODEL, BASE_MODEL, registry_with_models

pytestmark = pytest.mark.e2e

QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def line(tmp_path_factory, bundled_model, ray_cluster):
    """The registry (with the bundled model and a LoRA adapter) and the quantizer service."""
    from forgeline.quantizer.service import create_server

    home = tmp_path_factory.mktemp("home")
    with registry_with_models(home, bundled_model) as registry:
        settings = Settings.load(
            "quantizer",
            host="127.0.0.1",
            port=0,
            home=home,
            addresses={ServiceName.REGISTRY: registry.address},
        )
        server = ServerThread(lambda: create_server(settings)[0]).start()
        try:
            with QuantizerClient(server.address) as quantizer, registry.client() as client:
                yield quantizer, client, registry
        finally:
            server.stop()


def run(quantizer: QuantizerClient, **fields) -> common_pb2.Job:
    job = quantizer.submit(quantizer_pb2.QuantizeJobSpec(**fields))
    final = quantizer.wait(job.id)
    assert final.state == common_pb2.JOB_STATE_SUCCEEDED, final.error
    return final


def greedy(model_dir: Path, adapter: Path | None = None, gguf: str | None = None) -> str:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": gguf} if gguf else {}
    tokenizer = AutoTokenizer.from_pretrained(model_dir, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, **kwargs)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": QUESTION}], add_generation_prompt=True, return_tensors="pt"
    )
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=16, do_sample=False)
    return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


def test_a_merged_adapter_answers_as_base_plus_adapter(line, tmp_path):
    quantizer, registry, _ = line
    final = run(
        quantizer,
        source=parse_ref(ADAPTER_MODEL),
        operation=quantizer_pb2.QUANTIZE_OPERATION_MERGE,
    )
    merged = registry.get_version(final.outputs[0])
    assert merged.kind == registry_pb2.VERSION_KIND_MERGED
    assert [p.name for p in merged.parents] == [BASE_MODEL, ADAPTER_MODEL]
    cache = VersionCache(registry, tmp_path / "cache")
    base = cache.pull(BASE_MODEL).path
    adapter = cache.pull(ADAPTER_MODEL).path
    assert greedy(cache.pull(final.outputs[0]).path) == greedy(base, adapter)


def test_a_gguf_export_loads_back_and_answers(line, tmp_path):
    quantizer, registry, _ = line
    final = run(
        quantizer,
        source=parse_ref(BASE_MODEL),
        method=quantizer_pb2.QUANTIZE_METHOD_GGUF,
        gguf_type=quantizer_pb2.GGUF_TYPE_Q8_0,
    )
    folder = VersionCache(registry, tmp_path / "cache").pull(final.outputs[0]).path
    (gguf,) = folder.glob("*.gguf")
    assert os.path.getsize(gguf) < 0.3 * 538_090_408
    assert "Paris" in greedy(folder, gguf=gguf.name)
