"""QLoRA on a CUDA device: NF4 weights on the GPU, bf16 compute, paged AdamW; the loss falls.

Skipped where no CUDA device is present (CI runs on CPU).
"""

from __future__ import annotations

import pytest
import torch

from forgeline.trainer.config import (
    CheckpointSettings,
    HyperSettings,
    LoraSettings,
    OptimizerKind,
    Precision,
    QuantSettings,
    QuantType,
    Task,
    TrainConfig,
    Tuner,
)
from forgeline.trainer.recipes import sft
from forgeline.trainer.worker import Inputs, LocalEnv

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_qlora_nf4_trains_on_cuda(tmp_path, bundled_model, tiny_facts):
    cfg = TrainConfig(
        task=Task.SFT,
        tuner=Tuner.QLORA,
        lora=LoraSettings(rank=16, alpha=32),
        quant=QuantSettings(
            bits=4, quant_type=QuantType.NF4, double_quant=True, compute_dtype=Precision.BF16
        ),
        hyper=HyperSettings(
            max_steps=16,
            learning_rate=2e-3,
            batch_size=4,
            max_seq_length=128,
            precision=Precision.BF16,
            optimizer=OptimizerKind.PAGED_ADAMW_8BIT,
        ),
        checkpoints=CheckpointSettings(save_every_steps=8),
    )
    env = LocalEnv(
        Inputs(base=bundled_model, dataset=tiny_facts), tmp_path / "ck", torch.device("cuda")
    )
    torch.cuda.reset_peak_memory_stats()
    recipe = sft.SFTRecipe(cfg, env)
    recipe.setup()
    try:
        quantized = [m for m in recipe.model.modules() if type(m).__name__ == "Linear4bit"]
        assert quantized, "no bitsandbytes 4-bit layers"
        assert all(m.weight.device.type == "cuda" for m in quantized)
        assert {m.weight.quant_state.quant_type for m in quantized} == {"nf4"}
        recipe.train()
        recipe.save_checkpoint(final=True)
        losses = [entry["loss"] for entry in recipe.state.history]
    finally:
        recipe.cleanup()
    assert len(losses) == 16
    # A clear fall, loose enough for a stand-in model with random weights.
    assert sum(losses[-4:]) / 4 < 0.9 * sum(losses[:4]) / 4, losses
    peak = torch.cuda.max_memory_allocated()
    assert peak < 4 * 2**30, peak
    print(
        f"QLoRA on {torch.cuda.get_device_name()}: losses {losses[0]:.3f} -> {losses[-1]:.3f}, "
        f"peak CUDA memory {peak / 2**20:.0f} MiB"
    )
    assert (env.latest() / "model" / "adapter_model.safetensors").exists()


def test_qlora_shards_its_4_bit_base_under_fsdp_on_cuda(bundled_model, tiny_facts):
    """FSDP over a one-GPU process group: the packed NF4 weights are stored in bf16 so FSDP
    shards them like any other parameter, and the adapters still learn."""
    import torch.distributed as dist

    from forgeline.trainer import data as data_mod
    from forgeline.trainer.config import DistSettings, Strategy
    from forgeline.trainer.distributed import FsdpEngine
    from forgeline.trainer.modeling import load_for_training, load_tokenizer
    from forgeline.trainer.recipes.common import collate_lm

    cfg = TrainConfig(
        task=Task.SFT,
        tuner=Tuner.QLORA,
        lora=LoraSettings(rank=16, alpha=32),
        quant=QuantSettings(bits=4, quant_type=QuantType.NF4, compute_dtype=Precision.BF16),
        hyper=HyperSettings(
            max_steps=12, learning_rate=2e-3, batch_size=4, max_seq_length=128,
            precision=Precision.BF16,
        ),
        dist=DistSettings(strategy=Strategy.FSDP, gpus_per_worker=1),
    )  # fmt: skip
    device = torch.device("cuda", 0)
    dist.init_process_group("nccl", init_method="tcp://127.0.0.1:29533", rank=0, world_size=1)
    try:
        model = load_for_training(bundled_model, cfg, device=device)
        quantized = [m for m in model.modules() if type(m).__name__ == "Linear4bit"]
        assert quantized and {m.weight.dtype for m in quantized} == {torch.bfloat16}
        engine = FsdpEngine(model, cfg, cfg.hyper.max_steps, device)
        tokenizer = load_tokenizer(bundled_model)
        examples = data_mod.load_dataset(tiny_facts, Task.SFT).examples
        items = data_mod.tokenize_dataset(tokenizer, examples, 128)
        losses = []
        for step in range(cfg.hyper.max_steps):
            rows = [items[(step * 4 + i) % len(items)] for i in range(4)]
            batch = collate_lm(rows, tokenizer.pad_token_id, device)
            labels = batch.pop("labels")
            with engine.autocast():
                logits = engine.module(**batch).logits.float()
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1)
            )
            engine.backward(loss)
            engine.step()
            losses.append(loss.item())
    finally:
        dist.destroy_process_group()
    assert sum(losses[-3:]) / 3 < 0.9 * sum(losses[:3]) / 3, losses
