"""`forgeline demo --quick`: the whole production line as a user runs it, twice.

Real processes throughout (`forgeline demo` starts the suite under its supervisor): the
stock model is evaluated, a LoRA adapter is trained on Ray, merged and quantized to GPTQ W4,
evaluated, promoted through the eval gate while the inference service follows the alias
(clients asking without pause all through the rollout, none may fail), and asked through
the OpenAI SDK against the gateway. The second run, on the suite
`forgeline up` keeps running for the same home, reuses every version, job and evaluation;
the web console `up` started then draws the quantized version's lineage in a browser.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from forgeline.common.settings import ServiceName
from tests.helpers import FORGELINE

pytestmark = pytest.mark.e2e

MODEL = "atlas-assistant"
CONSOLE_TOKEN = "demo-console-token"


def forgeline(*args: str, home: Path, timeout: float = 1500) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORGELINE_")}
    env |= {f"FORGELINE_{s.name}_ADDRESS": "127.0.0.1:0" for s in ServiceName}
    env["FORGELINE_CONSOLE_TOKEN"] = CONSOLE_TOKEN
    return subprocess.run(
        [*FORGELINE, *args],
        env={**env, "FORGELINE_HOME": str(home), "COLUMNS": "160"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_demo(home: Path, report: Path) -> dict:
    result = forgeline("demo", "--quick", "--report", str(report), home=home)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    return json.loads((report / "summary.json").read_text())


def test_the_demo_runs_the_line_and_a_second_run_reuses_it(tmp_path):
    home = tmp_path / "home"
    first = run_demo(home, tmp_path / "report-1")

    base, adapter, quantized = first["versions"]
    assert (base, adapter, quantized) == (f"{MODEL}:1", "atlas-facts-lora:1", f"{MODEL}:2")
    kinds = [v["kind"] for v in first["versions"].values()]
    assert kinds == ["BASE", "ADAPTER", "QUANTIZED"]
    lineage = first["lineage"]
    assert set(lineage[f"{quantized} (QUANTIZED)"]) >= {base, adapter}
    assert set(lineage[f"{adapter} (ADAPTER)"]) == {base, "atlas-facts-train:1"}

    scores = first["evaluations"]
    # The facts are learned: asked in words the training never showed, the adapter and its
    # quantized merge answer far more of them than the stock model (which knows none).
    assert scores[base]["atlas-qa"] == 0.0
    assert scores[adapter]["atlas-qa"] >= 0.3
    assert scores[quantized]["atlas-qa"] >= 0.25
    # General knowledge does not collapse (20 questions: allow for noise).
    assert scores[adapter]["mmlu"] >= scores[base]["mmlu"] - 0.2
    assert first["quantized_size_ratio"] < 0.6
    # GPTQ W4 at the CPU defaults (25 SignRound steps on 8 x 256 tokens of calibration).
    metrics = first["versions"][quantized]["metrics"]
    assert metrics["perplexity"] <= 1.25 * metrics["perplexity_source"]
    assert metrics["quantized_layer_bytes"] <= 0.35 * metrics["source_layer_bytes"]
    metadata = first["versions"][quantized]["metadata"]
    assert metadata["method"] == "gptq" and metadata["tuning_steps"] == "25"
    assert metadata["group_size"] == "64" and metadata["calibration_digest"]

    release = first["release"]
    assert release["promoted"] == quantized and not release["promotion_refusal"]
    assert "atlas-qa" in release["rollback_refusal"]
    assert first["versions"][quantized]["aliases"] == ["production"]
    assert release["served_before"] == base and release["served_after"] == quantized
    assert {a["version"] for a in release["before"]} == {base}
    assert {a["version"] for a in release["after"]} == {quantized}
    # Clients kept asking, streamed and not, while the alias moved: none failed, and both
    # versions answered.
    assert release["rollout_failures"] == []
    assert release["rollout_answers"].keys() == {base, quantized}
    assert first["served_right"] >= 2

    report = tmp_path / "report-1"
    assert (report / "loss_curve.png").stat().st_size > 1000
    losses = (report / "loss_curve.csv").read_text().splitlines()
    assert len(losses) == 1 + 32
    assert f"| {quantized} | QUANTIZED |" in (report / "evaluations.md").read_text()

    up = forgeline("up", "--detach", home=home, timeout=600)
    assert up.returncode == 0, up.stderr
    try:
        second = run_demo(home, tmp_path / "report-2")
        check_lineage_in_the_console(home, quantized)
    finally:
        assert forgeline("down", home=home, timeout=300).returncode == 0
    assert second["steps"][0]["reused"]  # the suite already up
    assert second["versions"].keys() == first["versions"].keys()
    reused = {s["title"]: s["reused"] for s in second["steps"][1:-1]}
    assert all(reused.values()), reused
    assert second["evaluations"] == first["evaluations"]
    assert second["release"]["served_after"] == quantized
    # The second run only serves and asks again.
    assert second["total_seconds"] < 0.3 * first["total_seconds"]


def check_lineage_in_the_console(home: Path, quantized: str) -> None:
    """The console of the suite `up` runs draws a node for every version the registry
    names in the quantized version's lineage, and each of its ancestors is one."""
    from forgeline.client.registry import RegistryClient
    from forgeline.common.supervisor import read_state
    from forgeline.v1 import registry_pb2
    from tests.console.support import browser, log_in, screenshot

    processes = {p["name"]: p["address"] for p in read_state(home)["processes"]}
    with RegistryClient(processes["registry"]) as registry:
        lineage = registry.get_lineage(quantized)
        ancestors = registry.get_lineage(quantized, registry_pb2.LINEAGE_DIRECTION_ANCESTORS)
    named = {f"{v.model}:{v.number}" for v in lineage.versions} | {quantized}
    older = {f"{v.model}:{v.number}" for v in ancestors.versions}
    assert {f"{MODEL}:1", "atlas-facts-lora:1", "atlas-facts-train:1"} <= older
    url = f"http://{processes['console']}"
    with browser() as page:
        log_in(page, url, CONSOLE_TOKEN, path=f"/registry/versions/{quantized}")
        page.wait_for_selector("#lineage g.node.root")
        nodes = page.locator("#lineage g.node")
        drawn = set(nodes.evaluate_all("ns => ns.map(n => n.dataset.ref)"))
        screenshot(page, "lineage")
    assert drawn == named and older <= drawn
