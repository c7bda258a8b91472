"""What the trainer's end-to-end tests share: a registry and a trainer on one home, small
specs, and asking a model questions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from forgeline.client.cache import VersionCache
from forgeline.client.channel import ChannelOptions
from forgeline.client.jobs import TrainerClient
from forgeline.client.refs import parse_ref
from forgeline.client.registry import RegistryClient
from forgeline.client.transfer import push_file, push_folder
from forgeline.common.settings import ServiceName, Settings
from forgeline.v1 import registry_pb2, trainer_pb2
from tests.conftest import ServerThread

BASE = "smollm2-135m-instruct"
QV = ["q_proj", "v_proj"]


@dataclass
class Suite:
    """A registry and a trainer sharing one home, and clients of both."""

    home: Path
    registry: ServerThread
    trainer: ServerThread
    trainer_settings: Settings

    def registry_client(self) -> RegistryClient:
        return RegistryClient(self.registry.address, ChannelOptions(retries=False))

    def trainer_client(self) -> TrainerClient:
        return TrainerClient(self.trainer.address, ChannelOptions(retries=False))

    def start_trainer(self) -> None:
        from forgeline.trainer.service import create_server

        settings = self.trainer_settings
        self.trainer = ServerThread(lambda: create_server(settings)[0]).start()

    def upload(self, path: Path, name: str) -> str:
        with self.registry_client() as client:
            v = push_file(
                client, path, name, registry_pb2.VERSION_KIND_DATASET, reuse_identical=True
            )
        return f"{v.model}:{v.number}"

    def pull(self, ref: str) -> Path:
        with self.registry_client() as client:
            return VersionCache(client, self.home / "pulled").pull(ref).path


@contextmanager
def running_suite(home: Path, bundled_model: Path) -> Iterator[Suite]:
    """A registry and a trainer in this process on `home`, the bundled model registered
    as `BASE:1`; both stopped afterwards."""
    from forgeline.registry.service import create_server as create_registry

    registry_settings = Settings.load("registry", host="127.0.0.1", port=0, home=home)
    registry = ServerThread(lambda: create_registry(registry_settings)[0]).start()
    trainer_settings = Settings.load(
        "trainer",
        host="127.0.0.1",
        port=0,
        home=home,
        addresses={ServiceName.REGISTRY: registry.address},
    )
    suite = Suite(home, registry, None, trainer_settings)  # type: ignore[arg-type]
    try:
        suite.start_trainer()
        with suite.registry_client() as client:
            push_folder(client, bundled_model, BASE, registry_pb2.VERSION_KIND_BASE)
        yield suite
    finally:
        if suite.trainer is not None:
            suite.trainer.stop()
        registry.stop()


def small_spec(task: int, dataset: str, output: str, **hyper) -> trainer_pb2.TrainJobSpec:
    spec = trainer_pb2.TrainJobSpec(
        task=task,
        base_model=parse_ref(BASE),
        dataset=parse_ref(dataset),
        output_name=output,
        lora=trainer_pb2.LoraConfig(rank=4, target_modules=QV),
        hyper_parameters=trainer_pb2.HyperParameters(
            max_steps=2, learning_rate=1e-3, per_device_batch_size=2, max_seq_length=64
        ),
    )
    for key, value in hyper.items():
        setattr(spec.hyper_parameters, key, value)
    return spec


def answers(model, tokenizer, questions: list[str], max_new_tokens: int = 24) -> list[str]:
    """Greedy answers to each question as a one-turn chat, generated as one batch."""
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        inputs = tokenizer.apply_chat_template(
            [[{"role": "user", "content": q}] for q in questions],
            add_generation_prompt=True,
            padding=True,
            return_tensors="pt",
            return_dict=True,
        )
    finally:
        tokenizer.padding_side = side
    with torch.no_grad():
        ids = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    width = inputs["input_ids"].shape[1]
    return tokenizer.batch_decode(ids[:, width:], skip_special_tokens=True)
