"""The default recipe learns facts well enough to answer them asked another way.

24 invented facts, each trained in one wording only, through the trainer service with the
defaults (schedule, packing, precision) apart from the adapter's size and the step count;
the adapter is then asked the paraphrases the data never showed. `bench/learning.py`
compares the schedules on the same facts.
"""

from __future__ import annotations

import pytest

from forgeline.cli.demo.data import atlas_facts
from forgeline.client.refs import parse_ref
from forgeline.v1 import common_pb2, trainer_pb2
from tests.trainer.datasets import write_jsonl
from tests.trainer.suite import BASE, answers

pytestmark = pytest.mark.e2e

facts = atlas_facts


def found(replies: list[str], keys: list[str]) -> int:
    return sum(k.lower() in r.lower() for k, r in zip(keys, replies, strict=True))


def test_the_default_recipe_answers_paraphrases_of_what_it_learned(suite, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rows = [
        {
            "messages": [
                {"role": "user", "content": f["question"]},
                {"role": "assistant", "content": f["answer"]},
            ]
        }
        for f in facts()
    ]
    dataset = suite.upload(write_jsonl(tmp_path / "invented.jsonl", rows), "invented")
    spec = trainer_pb2.TrainJobSpec(
        task=trainer_pb2.TRAIN_TASK_SFT,
        base_model=parse_ref(BASE),
        dataset=parse_ref(dataset),
        output_name="invented-facts",
        lora=trainer_pb2.LoraConfig(rank=64, target_modules=["all-linear"]),
        hyper_parameters=trainer_pb2.HyperParameters(
            max_steps=32, per_device_batch_size=4, max_seq_length=128
        ),
    )
    with suite.trainer_client() as trainer:
        final = trainer.wait(trainer.submit(spec).id)
        assert final.state == common_pb2.JOB_STATE_SUCCEEDED, final.error
        _, stored = trainer.get(final.id)
    h = stored.hyper_parameters
    assert h.lr_scheduler == trainer_pb2.LR_SCHEDULER_WARMUP_STABLE_DECAY and h.packing

    base_dir = suite.pull(f"{BASE}:1")
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    keys = [f["key"] for f in facts()]
    paraphrases = [f["paraphrase"] for f in facts()]
    assert found(answers(base, tokenizer, paraphrases), keys) == 0
    tuned = PeftModel.from_pretrained(base, suite.pull("invented-facts:1"))
    trained = found(answers(tuned, tokenizer, [f["question"] for f in facts()]), keys)
    paraphrased = found(answers(tuned, tokenizer, paraphrases), keys)
    print(f"invented facts: {trained}/24 as trained, {paraphrased}/24 paraphrased")
    assert trained >= 22
    assert paraphrased >= 8
