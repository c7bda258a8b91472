"""One quantize job's work, as it runs in a Ray worker: pull, merge, quantize, measure, register.

The worker pulls its inputs through the version cache of its own machine and registers
the result in the registry itself, so nothing but references crosses between the service
and the worker, whichever node the worker runs on. It reports progress and log lines
through the job's event sink; what it returns is the registered version and the job's
final metrics.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from forgeline.client.cache import CacheConfig, VersionCache
from forgeline.client.refs import format_ref, pinned
from forgeline.client.transfer import push_folder
from forgeline.quantizer.spec import Method, QuantizeConfig
from forgeline.v1 import quantizer_pb2, registry_pb2

log = logging.getLogger(__name__)

# Calibration texts held out for measuring perplexity before and after (at most
# HELDOUT_TEXTS of them, in windows of PERPLEXITY_WINDOW tokens: ~2k tokens for the bundled
# sample, scored in seconds).
HELDOUT_FRACTION = 0.1
HELDOUT_TEXTS = 16
PERPLEXITY_WINDOW = 512


@dataclass(frozen=True)
class JobInput:
    """What the service hands the worker (picklable)."""

    job_id: str
    spec: bytes
    cache: CacheConfig
    labels: dict[str, str]


class Reporter:
    """Progress and log lines to the job's event sink (a Ray actor), never blocking the work."""

    def __init__(self, sink: Any):
        self.sink = sink

    def log(self, message: str) -> None:
        """One line of the job's log."""
        log.info("%s", message)
        self.sink.put.remote(("log", message))

    def progress(self, done: int, total: int, stage: str) -> None:
        """`done` of `total` units of `stage` (layers, tensors, steps)."""
        self.sink.put.remote(("progress", done, total, stage))


def run_job(job: JobInput, sink: Any) -> dict[str, Any]:
    """The Ray task: does the job and returns {"output": "name:N", "metrics": {...}}."""
    report = Reporter(sink)
    spec = quantizer_pb2.QuantizeJobSpec.FromString(job.spec)
    cfg = QuantizeConfig.from_pb(spec)
    started = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix=f"forgeline-{job.job_id}-"))
    try:
        with VersionCache.open(job.cache) as cache:
            source = cache.pull(cfg.source)
            report.log(f"pulled {source.ref}")
            model_dir, parents = source.path, [source.ref]
            if source.version.kind == registry_pb2.VERSION_KIND_ADAPTER:
                model_dir = _merge(cache, source, scratch / "merged", report)
                parents = [format_ref(source.version.parents[0]), source.ref]
            if cfg.merge_only:
                out, kind, metrics, metadata = model_dir, registry_pb2.VERSION_KIND_MERGED, {}, {}
                metadata["format"] = "transformers"
            else:
                out, metrics, metadata, calibration = _quantize(
                    cache, cfg, model_dir, scratch / "out", report
                )
                kind = registry_pb2.VERSION_KIND_QUANTIZED
                if calibration is not None:
                    parents.append(calibration.ref)
                    metadata["calibration"] = calibration.ref
            metrics["wall_seconds"] = time.monotonic() - started
            metadata.update({"source": source.ref, "job": job.job_id, **job.labels})
            report.log(f"registering the result as the next version of {cfg.output_name}")
            version = push_folder(
                cache.registry,
                out,
                cfg.output_name,
                kind,
                parents=parents,
                lineage=registry_pb2.Lineage(
                    job_id=job.job_id,
                    dataset_digest=metadata.get("calibration_digest", ""),
                    spec_json=json_format.MessageToJson(spec, indent=None, sort_keys=True),
                ),
                metadata={k: str(v) for k, v in metadata.items()},
                metrics=metrics,
                description=_describe(cfg, source.ref),
            )
            report.log(f"registered {pinned(version)}")
            return {"output": pinned(version), "metrics": metrics}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _merge(cache: VersionCache, adapter, out: Path, report: Reporter) -> Path:
    from forgeline.quantizer.merge import merge_adapter

    base = cache.pull(format_ref(adapter.version.parents[0]))
    report.log(f"merging {adapter.ref} into {base.ref} (full precision)")
    merge_adapter(base.path, adapter.path, out)
    return out


def _quantize(
    cache: VersionCache, cfg: QuantizeConfig, model_dir: Path, out: Path, report: Reporter
) -> tuple[Path, dict[str, float], dict[str, object], Any]:
    """Quantizes `model_dir` into `out`; returns it, metrics, metadata, calibration version."""
    from forgeline.quantizer import calibration as calib
    from forgeline.quantizer import methods

    metadata: dict[str, object] = {"method": cfg.method.value}
    metrics: dict[str, float] = {}
    calibration = None
    heldout: list[str] = []
    if cfg.method is Method.GGUF:
        from forgeline.quantizer.gguf_export import GgufType, export_gguf

        out.mkdir(parents=True)
        target = out / f"{cfg.output_name}.{cfg.gguf_type}.gguf"
        report.log(f"writing GGUF ({cfg.gguf_type}) from {model_dir.name}")
        result = export_gguf(
            model_dir,
            target,
            GgufType(cfg.gguf_type),
            lambda done, total: report.progress(done, total, "tensors"),
        )
        metadata.update({"format": "gguf", "gguf_type": cfg.gguf_type})
        metrics["size_bytes"] = float(result.size_bytes)
    else:
        if cfg.method.calibrated:
            if cfg.calibration_dataset:
                calibration = cache.pull(cfg.calibration_dataset)
                texts = calib.texts_from_dataset(calibration.path, 4096)
                metadata["calibration_digest"] = calibration.version.manifest_digest
            else:
                texts = calib.default_texts()
                metadata["calibration_digest"] = calib.default_digest()
            texts, heldout = calib.split_heldout(texts, HELDOUT_FRACTION)
            report.log(
                f"quantizing with {cfg.method.value} W{cfg.bits} g{cfg.group_size} on "
                f"{min(len(texts), cfg.num_samples)} calibration texts"
            )
            result = methods.quantize_autoround(
                model_dir,
                out,
                cfg.method.value,
                cfg.bits,
                cfg.group_size,
                cfg.symmetric,
                texts,
                cfg.num_samples,
                cfg.seq_length,
                progress=lambda done, total: report.progress(done, total, "blocks"),
                iters=cfg.tuning_steps,
                # Small steps and no compilation pay off for short CPU runs (see spec.py).
                batch_size=2 if cfg.gpus == 0 else 8,
                torch_compile=None if cfg.gpus else False,
            )
            metadata["tuning_steps"] = cfg.tuning_steps
            metadata.update({"bits": cfg.bits, "group_size": cfg.group_size})
        else:
            report.log(f"quantizing with bitsandbytes {cfg.method.value}")
            result = methods.quantize_bnb(model_dir, out, cfg.method.value)
            metadata["bits"] = cfg.bits
        metadata["format"] = cfg.method.value
        metrics.update(
            size_bytes=float(methods.folder_bytes(out)),
            quantized_layer_bytes=float(result.quantized_layer_bytes),
            source_layer_bytes=float(result.source_layer_bytes),
        )
    source_bytes = methods.folder_bytes(model_dir)
    metrics["source_size_bytes"] = float(source_bytes)
    metrics["size_ratio"] = metrics["size_bytes"] / source_bytes if source_bytes else 0.0
    if heldout:
        metrics.update(_perplexities(model_dir, out, heldout[:HELDOUT_TEXTS], report))
    metadata["size_ratio"] = f"{metrics['size_ratio']:.3f}"
    return out, metrics, metadata, calibration


def _perplexities(source: Path, result: Path, texts: list[str], report: Reporter) -> dict:
    from forgeline.quantizer.perplexity import perplexity

    report.log(f"measuring perplexity on {len(texts)} held-out texts")
    before = perplexity(source, texts, PERPLEXITY_WINDOW, PERPLEXITY_WINDOW)
    after = perplexity(result, texts, PERPLEXITY_WINDOW, PERPLEXITY_WINDOW)
    report.log(f"perplexity {before:.3f} -> {after:.3f}")
    return {"perplexity_source": before, "perplexity": after}


def _describe(cfg: QuantizeConfig, source: str) -> str:
    if cfg.merge_only:
        return f"{source} merged into its base"
    if cfg.method is Method.GGUF:
        return f"GGUF {cfg.gguf_type} export of {source}"
    return f"{cfg.method.value} W{cfg.bits} of {source}" + (
        f" (group size {cfg.group_size})" if cfg.method.calibrated else ""
    )
