"""Shared pieces of the end-to-end serving tests: a registry holding the bundled model and
a LoRA adapter for it, and the engine options that keep one CPU engine small and quick.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from forgeline.client import ChannelOptions, RegistryClient
from forgeline.client.transfer import push_folder
from forgeline.common.settings import Settings
from forgeline.v1 import inference_pb2, registry_pb2
from tests.conftest import serving

BASE_MODEL = "smollm2-135m-instruct"
ADAPTER_MODEL = "smol-lora"
SERVED = "smol"
# Small, fixed engine: a 1024-token context, 256 MiB of KV cache, no compilation (the
# explicit KV size also skips the memory-profiling warm-up), room for one rank-8 adapter.
ENGINE = inference_pb2.EngineOptions(
    max_model_len=1024,
    kv_cache_bytes=256 * 1024 * 1024,
    enforce_eager=True,
    enable_lora=True,
    max_lora_rank=8,
    seed=0,
)
ENGINE_ARGS = [
    "--max-model-len",
    "1024",
    "--kv-cache-bytes",
    str(256 * 1024 * 1024),
    "--enforce-eager",
    "--max-lora-rank",
    "8",
]


def make_lora_adapter(base: Path, out: Path, rank: int = 8) -> Path:
    """A PEFT LoRA adapter for `base` whose B matrices are random, so it changes outputs."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["q_proj", "v_proj"])
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.05)
    peft_model.save_pretrained(out)
    return out


@dataclass
class Registry:
    """A running registry holding the bundled model (version 1) and an adapter for it."""

    address: str
    home: Path
    token: str

    def client(self) -> RegistryClient:
        """A client of it."""
        return RegistryClient(self.address, ChannelOptions(token=self.token))


@contextmanager
def registry_with_models(
    home: Path, bundled: Path, token: str = "", adapter: bool = True
) -> Iterator[Registry]:
    """Starts a registry in `home`, pushes the bundled model and (unless `adapter` is
    False) a LoRA adapter on it."""
    from forgeline.registry.service import create_server

    settings = Settings.load("registry", host="127.0.0.1", port=0, home=home, token=token)
    with serving(lambda: create_server(settings)[0]) as thread:
        registry = Registry(thread.address, home, token)
        with registry.client() as client:
            base = push_folder(client, bundled, BASE_MODEL, registry_pb2.VERSION_KIND_BASE)
            if adapter:
                adapter_dir = make_lora_adapter(bundled, home / "adapter-src")
                push_folder(
                    client,
                    adapter_dir,
                    ADAPTER_MODEL,
                    registry_pb2.VERSION_KIND_ADAPTER,
                    parents=[f"{base.model}:{base.number}"],
                )
        yield registry


def hf_tokenizer(bundled: Path):
    """The model's own tokenizer, to check token counts independently of the engine."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(bundled)
