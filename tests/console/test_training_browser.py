"""A training job submitted from the console's form runs, and its loss curve draws live.

A real registry and trainer in this process (training on the shared local Ray) and the
bundled SmolLM2: three optimizer steps on short sequences. The form first carries an
invalid learning rate, refused by the trainer's own plan next to that field; corrected,
the job is submitted and followed on its page until it ends.
"""

from __future__ import annotations

import pytest

from forgeline.client.channel import ChannelOptions
from forgeline.client.jobs import TrainerClient
from forgeline.console.app import create_app
from forgeline.v1 import common_pb2
from tests.console.support import browser, console_config, log_in, screenshot
from tests.helpers import serve_app

pytestmark = pytest.mark.e2e
STEPS = 3


@pytest.fixture
def trainer_suite(tmp_path, ray_cluster, bundled_model):
    """A registry and a trainer on one home, the model and a small dataset registered."""
    from tests.trainer.datasets import facts_rows, write_jsonl
    from tests.trainer.suite import BASE, running_suite

    with running_suite(tmp_path / "home", bundled_model) as suite:
        dataset = suite.upload(write_jsonl(tmp_path / "facts.jsonl", facts_rows()[:8]), "facts")
        yield suite, f"{BASE}:1", dataset


def test_a_job_submitted_from_the_form_runs_and_its_loss_curve_draws(trainer_suite):
    suite, base, dataset = trainer_suite
    config = console_config(registry=suite.registry.address, trainer=suite.trainer.address)
    with serve_app(create_app(config)) as url, browser() as page:
        log_in(page, url, path="/submit")
        page.wait_for_selector("#train-form")
        page.fill("#f-model", base)
        page.fill("#f-dataset", dataset)
        page.fill("#f-max_steps", str(STEPS))
        page.fill("#f-max_seq_len", "48")
        page.fill("#f-batch_size", "2")
        page.fill("#f-lora_rank", "4")
        page.fill("#f-learning_rate", "-0.5")
        page.click("#preview")
        # The trainer's plan refuses the rate: its reason stands beside that field.
        page.locator("#e-learning_rate:not(:empty)").wait_for()
        assert page.inner_text("#e-learning_rate") == "learning rate must be in [0, 1), got -0.5"
        assert page.locator("#e-max_steps").inner_text() == ""

        page.fill("#f-learning_rate", "0.001")
        page.click("#preview")
        page.wait_for_selector("#memory")
        memory = page.inner_text("#memory")
        assert "Memory per worker" in memory and "allocator" in memory  # every part shown
        line = page.inner_text("#cli-line")
        assert line.startswith("forgeline sft") and f"--max-steps {STEPS}" in line
        assert "max_steps: 3" in page.inner_text("#job-yaml")
        screenshot(page, "submit")

        page.click("#submit")
        page.wait_for_selector("#loss-curve")
        job_id = page.url.rsplit("/", 1)[1]
        page.wait_for_selector("#job-state[data-ended]", timeout=480_000)
        with TrainerClient(suite.trainer.address, ChannelOptions(retries=False)) as trainer:
            job, _ = trainer.get(job_id)
            assert job.state == common_pb2.JOB_STATE_SUCCEEDED, job.error
            steps = sorted(
                {
                    e.metrics.step
                    for e in trainer.watch(job_id)
                    if e.WhichOneof("payload") == "metrics" and "loss" in e.metrics.values
                }
            )
        assert steps[0] == 0  # the job's final metrics, not a point of the curve
        steps = steps[1:]
        assert steps == list(range(1, STEPS + 1))
        # One vertex of the curve per training step the trainer reported a loss at.
        page.wait_for_selector(f"#loss-curve[data-steps='{','.join(map(str, steps))}']")
        path = page.get_attribute("#loss-curve path.loss-line", "d")
        assert path.count("M") + path.count("L") == len(steps)
        assert page.locator("#job-outputs a").count() == len(job.outputs) >= 1
        screenshot(page, "job")
        page.goto(url + "/jobs?kind=training")
        page.wait_for_selector(f"table.jobs a[href$='{job_id}']")
        assert "succeeded" in page.inner_text("table.jobs")
        screenshot(page, "jobs")
