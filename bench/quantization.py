"""Quantization: size, accuracy and speed of each format, and the quantizer job's overhead.

One run on the bundled SmolLM2-135M-Instruct (fp32, the source):

- Forgeline: a registry and a quantizer started as processes; one job per format (GPTQ W4,
  AWQ W4, NF4, GGUF Q8_0) submitted through the SDK and timed from submission to the
  registered version.
- The anchor for the job's overhead: auto-round called directly (`AutoRound(...)` and
  `quantize_and_save`) on the same model, the same calibration texts and settings, in this
  process.
- For every folder: size on disk, the quantized layers' bytes against their fp32 bytes,
  perplexity on the same held-out text (the bundled calibration sample's held-out part),
  and for the formats vLLM serves (fp32, GPTQ, AWQ) output tokens/s of vLLM's own server
  driven by vLLM's benchmark client, as `bench/serving.py` does.

Targets: GPTQ/AWQ W4 quantized layers <= 0.35x of fp32, perplexity increase <= 10%, job
wall time <= 1.15x of the direct call.

Run: .venv/bin/python bench/quantization.py
Writes bench/results/quantization.json and bench/results/quantization.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from forgeline.client import ChannelOptions, QuantizerClient, RegistryClient  # noqa: E402
from forgeline.client.cache import VersionCache  # noqa: E402
from forgeline.client.refs import parse_ref  # noqa: E402
from forgeline.client.transfer import push_folder  # noqa: E402
from forgeline.common.bundled import import_bundled  # noqa: E402
from forgeline.common.processes import start_service  # noqa: E402
from forgeline.quantizer.calibration import calibration_samples, default_texts, split_heldout  # noqa: E402
from forgeline.quantizer.layers import folder_bytes  # noqa: E402
from forgeline.quantizer.perplexity import perplexity  # noqa: E402
from forgeline.quantizer.spec import CPU_CALIBRATION  # noqa: E402
from forgeline.v1 import common_pb2, registry_pb2  # noqa: E402
from forgeline.v1 import quantizer_pb2 as q  # noqa: E402

RESULTS = ROOT / "bench" / "results"
HELDOUT_TEXTS = 16
WINDOW = 512
FORMATS = {
    "gptq-w4": {"method": q.QUANTIZE_METHOD_GPTQ, "bits": 4},
    "awq-w4": {"method": q.QUANTIZE_METHOD_AWQ, "bits": 4},
    "nf4": {"method": q.QUANTIZE_METHOD_BNB_NF4},
    "gguf-q8_0": {"method": q.QUANTIZE_METHOD_GGUF, "gguf_type": q.GGUF_TYPE_Q8_0},
}
SERVED = ("fp32", "gptq-w4", "awq-w4")


def jobs(model: Path, work: Path) -> dict:
    """Runs every format through the services; returns per format its folder and numbers."""
    home = work / "home"
    env = {**os.environ, "FORGELINE_HOME": str(home), "FORGELINE_CACHE_DIR": str(work / "cache")}
    registry_proc = start_service("registry", env, work / "registry.log")
    env["FORGELINE_REGISTRY_ADDRESS"] = registry_proc.address
    quantizer_proc = start_service("quantizer", env, work / "quantizer.log")
    out = {}
    try:
        options = ChannelOptions()
        with (
            RegistryClient(registry_proc.address, options) as registry,
            QuantizerClient(quantizer_proc.address, options) as quantizer,
        ):
            push_folder(registry, model, "smol", registry_pb2.VERSION_KIND_BASE)
            cache = VersionCache(registry, work / "pulled")
            for name, fields in FORMATS.items():
                started = time.perf_counter()
                job = quantizer.submit(q.QuantizeJobSpec(source=parse_ref("smol:1"), **fields))
                final = quantizer.wait(job.id)
                seconds = time.perf_counter() - started
                assert final.state == common_pb2.JOB_STATE_SUCCEEDED, final.error
                version = registry.get_version(final.outputs[0])
                out[name] = {
                    "folder": cache.pull(final.outputs[0]).path,
                    "job_seconds": seconds,
                    "metrics": dict(version.metrics),
                }
    finally:
        quantizer_proc.stop()
        registry_proc.stop()
    return out


def direct_autoround(model: Path, out: Path, method: str, texts: list[str]) -> float:
    """auto-round's own API on the same model, texts and settings; returns seconds."""
    from auto_round import AutoRound
    from transformers import AutoModelForCausalLM, AutoTokenizer

    samples, seqlen, iters = CPU_CALIBRATION
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(model)
    fp32 = AutoModelForCausalLM.from_pretrained(model, dtype="float32")
    rounder = AutoRound(
        fp32,
        tokenizer,
        bits=4,
        group_size=64,
        sym=method == "gptq",
        dataset=calibration_samples(tokenizer, texts, samples, seqlen),
        iters=iters,
        nsamples=samples,
        seqlen=seqlen,
        batch_size=2,
        enable_torch_compile=False,
        device_map="cpu",
    )
    rounder.quantize_and_save(str(out), format="auto_gptq" if method == "gptq" else "auto_awq")
    return time.perf_counter() - started


def vllm_throughput(folder: Path, work: Path) -> float:
    """Output tokens/s of vLLM's own server on `folder`, driven by its benchmark client."""
    import serving

    args = argparse.Namespace(max_model_len=1024, kv_cache_bytes=512 * 1024**2, compile=False)
    scenario = serving.Scenario("throughput", 32, 128, 64, 8)
    tokenizer_dir = folder if (folder / "tokenizer.json").exists() else import_bundled()
    with serving.vllm_server(folder, args, work) as url:
        result = serving.run_client("vllm", url, "/v1/completions", tokenizer_dir, scenario)
    return float(result["output_throughput"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--no-serving", action="store_true", help="Skip the vLLM throughput.")
    args = parser.parse_args()
    model = import_bundled()
    calibration, heldout = split_heldout(default_texts(), 0.1, seed=0)
    heldout = heldout[:HELDOUT_TEXTS]
    work = Path(tempfile.mkdtemp(prefix="forgeline-bench-quant-"))
    rows = {}
    try:
        results = jobs(model, work)
        anchors = {
            m: direct_autoround(model, work / f"direct-{m}", m, calibration)
            for m in ("gptq", "awq")
        }
        source_ppl = perplexity(model, heldout, WINDOW, WINDOW)
        source_bytes = folder_bytes(model)
        rows["fp32"] = {"size_bytes": source_bytes, "perplexity": source_ppl}
        for name, r in results.items():
            folder = r["folder"]
            if name.startswith("gguf"):
                ppl = _gguf_perplexity(folder, heldout)
            else:
                ppl = perplexity(folder, heldout, WINDOW, WINDOW)
            m = r["metrics"]
            row = {
                "size_bytes": folder_bytes(folder),
                "size_ratio": folder_bytes(folder) / source_bytes,
                "perplexity": ppl,
                "perplexity_increase": ppl / source_ppl - 1,
                "job_seconds": round(r["job_seconds"], 1),
            }
            if m.get("source_layer_bytes"):
                row["layer_ratio"] = m["quantized_layer_bytes"] / m["source_layer_bytes"]
            method = name.split("-")[0]
            if method in anchors:
                row["direct_autoround_seconds"] = round(anchors[method], 1)
                row["job_overhead"] = r["job_seconds"] / anchors[method]
            rows[name] = row
        if not args.no_serving:
            for name in SERVED:
                folder = model if name == "fp32" else results[name]["folder"]
                rows[name]["vllm_output_tok_s"] = vllm_throughput(folder, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "calibration": dict(
            zip(("samples", "seq_length", "tuning_steps"), CPU_CALIBRATION, strict=True)
        ),
        "rows": rows,
        "targets": {
            "layer_ratio": "<= 0.35",
            "perplexity_increase": "<= 0.10",
            "job_overhead": "<= 1.15",
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quantization.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    lines = [
        "# Quantization of SmolLM2-135M-Instruct (CPU)",
        "",
        "| format | size MiB | size ratio | layer ratio | perplexity | increase | job s "
        "| direct auto-round s | job overhead | vLLM out tok/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['size_bytes'] / 2**20:.1f} | {_cell(r, 'size_ratio')} "
            f"| {_cell(r, 'layer_ratio')} | {r['perplexity']:.3f} "
            f"| {_cell(r, 'perplexity_increase', '{:+.1%}')} | {_cell(r, 'job_seconds', '{}')} "
            f"| {_cell(r, 'direct_autoround_seconds', '{}')} "
            f"| {_cell(r, 'job_overhead', '{:.2f}x')} | {_cell(r, 'vllm_output_tok_s', '{:.1f}')} |"
        )
    lines += [
        "",
        "Targets: GPTQ/AWQ W4 layer ratio <= 0.35x, perplexity increase <= 10%, "
        "job overhead <= 1.15x of auto-round called directly.",
    ]
    (args.out / "quantization.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _cell(row: dict, key: str, fmt: str = "{:.3f}") -> str:
    return fmt.format(row[key]) if key in row else ""


def _gguf_perplexity(folder: Path, texts: list[str]) -> float:
    """Perplexity of a GGUF file as transformers loads it back (dequantized)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    (gguf,) = folder.glob("*.gguf")

    def load(_):
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf.name, dtype="float32")
        return model.eval(), tokenizer

    return perplexity(folder, texts, WINDOW, WINDOW, loader=load)


if __name__ == "__main__":
    main()
