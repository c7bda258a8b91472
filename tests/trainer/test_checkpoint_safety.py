"""Checkpoints are read as tensors and plain state: a crafted file runs nothing.

The crafted file unpickles into a call that writes a marker file; every loader of the
trainer (engine state, RNG state, DeepSpeed's files) must refuse it before anything runs.
DeepSpeed's own checkpoints still load, and a DeepSpeed run resumes exactly.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from forgeline.trainer.recipes import sft
from forgeline.trainer.recipes.common import ENGINE_STATE, TrainState, load_rng, save_rng
from forgeline.trainer.state_files import UnsafeCheckpoint, load_plain_state
from forgeline.trainer.worker import Inputs, LocalEnv
from tests.trainer.test_recipes import CFG


class WritesMarker:
    """Unpickles into `Path(marker).write_text("owned")`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.write_text, (pathlib.Path(self.marker), "owned"))


def crafted(path: Path, marker: Path, key: str = "trainable") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({key: WritesMarker(marker)}, path)
    return path


def test_the_crafted_file_runs_code_when_unpickled_without_restriction(tmp_path):
    marker = tmp_path / "marker"
    path = crafted(tmp_path / "engine.pt", marker)
    torch.load(path, weights_only=False)  # what the trainer must never do
    assert marker.read_text() == "owned"


def test_plain_state_loads_and_crafted_state_is_refused(tmp_path):
    plain = tmp_path / "plain.pt"
    torch.save({"w": torch.ones(2), "groups": [{"lr": 0.1, "betas": (0.9, 0.99)}]}, plain)
    assert load_plain_state(plain)["groups"][0]["betas"] == (0.9, 0.99)
    marker = tmp_path / "marker"
    with pytest.raises(UnsafeCheckpoint, match="refusing to load it"):
        load_plain_state(crafted(tmp_path / "engine.pt", marker))
    assert not marker.exists()


def test_a_resume_from_a_crafted_engine_state_is_refused(tmp_path, bundled_model, tiny_facts):
    marker = tmp_path / "marker"
    checkpoint = tmp_path / "ck" / "checkpoint-000000"
    crafted(checkpoint / ENGINE_STATE / "engine.pt", marker)
    TrainState(step=2, micro_batches=2).write(checkpoint)
    save_rng(checkpoint, 0)
    env = LocalEnv(Inputs(base=bundled_model, dataset=tiny_facts), tmp_path / "ck")
    with pytest.raises(UnsafeCheckpoint):
        sft.run(replace(CFG, hyper=replace(CFG.hyper, max_steps=3)), env)
    assert not marker.exists()
    assert not env.reports  # not a step was trained


def test_a_crafted_rng_state_is_refused(tmp_path):
    marker = tmp_path / "marker"
    crafted(tmp_path / "rng-0.pt", marker, key="python")
    with pytest.raises(UnsafeCheckpoint):
        load_rng(tmp_path, 0)
    assert not marker.exists()


def test_deepspeed_files_are_read_as_plain_state(tmp_path):
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    from forgeline.trainer.deepspeed_engine import PlainStateReader

    class Inner:
        name = "TorchCheckpointEngine"

        def load(self, path, map_location=None):
            raise AssertionError("the unrestricted loader was used")

    reader = PlainStateReader(Inner())
    assert reader.name == "TorchCheckpointEngine"  # everything else is the engine's own
    saved = {
        "loss_scaler": LossScaler(1.0),
        "zero_stage": ZeroStageEnum.gradients,
        "param_slice_mappings": [{"w": fragment_address(numel=4, start=0)}],
        "state": torch.zeros(3),
    }
    torch.save(saved, tmp_path / "optim_states.pt")
    loaded = reader.load(str(tmp_path / "optim_states.pt"), map_location="cpu")
    assert loaded["zero_stage"] is ZeroStageEnum.gradients
    assert loaded["loss_scaler"].cur_scale == 1.0
    assert loaded["param_slice_mappings"][0]["w"].numel == 4
    marker = tmp_path / "marker"
    with pytest.raises(UnsafeCheckpoint):
        reader.load(str(crafted(tmp_path / "zero_optim_states.pt", marker)))
    assert not marker.exists()


DEEPSPEED_RESUME = """
import json, os, sys
from dataclasses import replace
from pathlib import Path

import torch.distributed as dist

os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=sys.argv[4], DS_ACCELERATOR="cpu")
os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")
dist.init_process_group("gloo", rank=0, world_size=1)

from forgeline.trainer.config import DistSettings, Strategy
from forgeline.trainer.recipes import sft
from forgeline.trainer.worker import Inputs, LocalEnv, StopRequested
from tests.trainer.test_recipes import CFG, StopAfter, losses

cfg = replace(CFG, dist=DistSettings(strategy=Strategy.DEEPSPEED, zero_stage=2))
inputs = Inputs(base=Path(sys.argv[1]), dataset=Path(sys.argv[2]))
out = Path(sys.argv[3])
whole = LocalEnv(inputs, out / "whole")
sft.run(cfg, whole)
first = StopAfter(inputs, out / "split", steps=2)
try:
    sft.run(cfg, first)
except StopRequested:
    pass
second = LocalEnv(inputs, out / "split")
sft.run(cfg, second)
print(json.dumps({"whole": losses(whole), "first": losses(first), "second": losses(second),
                  "logs": second.logs}))
"""


def test_a_deepspeed_run_resumes_exactly(tmp_path, bundled_model, tiny_facts):
    from forgeline.common.processes import free_port

    # Its own process: DeepSpeed needs a process group, which would outlive the test here.
    root = Path(__file__).resolve().parents[2]
    args = (bundled_model, tiny_facts, tmp_path, free_port())
    run = subprocess.run(
        [sys.executable, "-c", DEEPSPEED_RESUME, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert "resumed from the checkpoint at step 2" in result["logs"]
    split = {**result["first"], **result["second"]}
    assert sorted(split) == ["1", "2", "3", "4"]
    for step, loss in split.items():
        assert loss == pytest.approx(result["whole"][step], rel=1e-4), step
