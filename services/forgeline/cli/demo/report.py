"""The demo's summary on the terminal, and its report folder.

The folder holds the fine-tune's loss curve (PNG and CSV, from the adapter version's
`training/` files), the evaluation table (`evaluations.md`) and every number as JSON
(`summary.json`): versions and lineage, sizes, evaluations, the gate's decisions, the
served answers and each step's time.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from rich.table import Table

from forgeline.cli.context import console
from forgeline.cli.demo.line import MMLU_SUITE, MODEL, QA_SUITE, Line
from forgeline.cli.demo.release import Release
from forgeline.client.cache import VersionCache
from forgeline.client.labels import label
from forgeline.client.refs import format_ref
from forgeline.common.settings import cache_dir
from forgeline.v1 import registry_pb2


def summary(line: Line, base: str, adapter: str, quantized: str, release: Release) -> dict:
    """Every number of the run, JSON-able."""
    versions = {ref: line.registry.get_version(ref) for ref in (base, adapter, quantized)}
    lineage = line.registry.get_lineage(quantized, registry_pb2.LINEAGE_DIRECTION_ANCESTORS)
    size_ratio = versions[quantized].total_bytes / versions[base].total_bytes
    return {
        "versions": {
            ref: {
                "kind": label(registry_pb2.VersionKind, v.kind),
                "bytes": v.total_bytes,
                "parents": [f"{p.name}:{p.version}" for p in v.parents],
                "aliases": list(v.aliases),
                "metrics": dict(v.metrics),
                "metadata": dict(v.metadata),
            }
            for ref, v in versions.items()
        },
        "lineage": _lineage(lineage),
        "quantized_size_ratio": size_ratio,
        "evaluations": line.scores,
        "release": dataclasses.asdict(release),
        "served_right": sum(a.right for a in release.after),
        "served_asked": len(release.after),
        "steps": [dataclasses.asdict(s) for s in line.steps],
        "total_seconds": sum(s.seconds for s in line.steps),
    }


def _lineage(lineage: registry_pb2.GetLineageResponse) -> dict[str, list[str]]:
    """Each version reached, with its kind -> the versions it was made from."""
    kinds = {
        f"{v.model}:{v.number}": label(registry_pb2.VersionKind, v.kind)
        for v in (lineage.root, *lineage.versions)
    }
    parents: dict[str, list[str]] = {}
    for edge in lineage.edges:
        child = format_ref(edge.child)
        parents.setdefault(f"{child} ({kinds.get(child, '')})", []).append(format_ref(edge.parent))
    return parents


def evaluation_table(line: Line, numbers: dict) -> Table:
    """Each version's domain QA and MMLU accuracy."""
    table = Table("version", "kind", f"{QA_SUITE} (paraphrases)", MMLU_SUITE)
    for ref, scores in line.scores.items():
        kind = numbers["versions"].get(ref, {}).get("kind", "")
        table.add_row(ref, kind, f"{scores[QA_SUITE]:.1%}", f"{scores[MMLU_SUITE]:.1%}")
    return table


def print_summary(line: Line, numbers: dict) -> None:
    """The run at a glance."""
    console.rule("[bold]Summary")
    console.print(evaluation_table(line, numbers))
    console.print("lineage:")
    for child, parents in numbers["lineage"].items():
        console.print(f"  {child} <- {', '.join(parents)}")
    sizes = Table("version", "kind", "MiB", "aliases")
    for ref, v in numbers["versions"].items():
        sizes.add_row(ref, v["kind"], f"{v['bytes'] / 2**20:.0f}", ", ".join(v["aliases"]))
    console.print(sizes)
    console.print(f"quantized / base size: {numbers['quantized_size_ratio']:.2f}")
    release = numbers["release"]
    promoted = release["promoted"] or f"refused: {release['promotion_refusal']}"
    console.print(f"gate, promotion: {promoted}")
    console.print(f"gate, rollback to the stock model: refused: {release['rollback_refusal']}")
    console.print(
        f"served {release['served_before']} -> {release['served_after']} (following "
        f"{MODEL}@production); {numbers['served_right']}/{numbers['served_asked']} paraphrased "
        "questions answered right through the OpenAI SDK"
    )
    answers = ", ".join(f"{n} by {v}" for v, n in sorted(release["rollout_answers"].items()))
    failed = len(release["rollout_failures"])
    console.print(f"requests during the rollout: {answers}; {failed} failed")
    steps = Table("step", "seconds", "reused")
    for s in numbers["steps"]:
        steps.add_row(s["title"], f"{s['seconds']:.0f}", "yes" if s["reused"] else "")
    steps.add_row("[bold]total", f"[bold]{numbers['total_seconds']:.0f}", "")
    console.print(steps)


def write_report(folder: Path, line: Line, adapter: str, numbers: dict) -> None:
    """Writes the report folder (see the module docstring)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "summary.json").write_text(json.dumps(numbers, indent=2) + "\n")
    rows = [f"| version | kind | {QA_SUITE} (paraphrases) | {MMLU_SUITE} |", "|---|---|---|---|"]
    for ref, scores in line.scores.items():
        kind = numbers["versions"].get(ref, {}).get("kind", "")
        rows.append(f"| {ref} | {kind} | {scores[QA_SUITE]:.3f} | {scores[MMLU_SUITE]:.3f} |")
    (folder / "evaluations.md").write_text("\n".join(rows) + "\n")
    training = VersionCache(line.registry, cache_dir() / "versions").pull(adapter).path / "training"
    for name in ("loss_curve.png", "loss_curve.csv"):
        if (training / name).exists():
            shutil.copyfile(training / name, folder / name)
