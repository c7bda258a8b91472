"""What a quantize job does, as a domain type, with its defaults and the checks of the spec alone.

`QuantizeConfig.from_pb` reads a (resolved) `QuantizeJobSpec`; `fill_defaults` writes the
defaults into a spec before it is stored, so the stored spec says exactly what ran;
`check_spec` finds every problem the spec has on its own (the planner adds the ones that
need the registry: the source's kind, its layer widths, the calibration data).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from forgeline.client import exceptions
from forgeline.client.labels import label
from forgeline.client.refs import RefError, check_name, format_ref
from forgeline.v1 import quantizer_pb2

# Calibration defaults on a GPU and on CPU: (sequences, tokens each, tuning steps per block).
# On CPU, auto-round's own (128 x 2048, 200 steps) would take hours for even a small model;
# 8 x 256 with 25 steps kept SmolLM2's GPTQ and AWQ W4 within 6% of its perplexity.
GPU_CALIBRATION = (128, 2048, 200)
CPU_CALIBRATION = (8, 256, 25)
MAX_SAMPLES = 4096
MAX_SEQ_LENGTH = 32768


class Method(enum.StrEnum):
    """How a QUANTIZE job quantizes (MERGE jobs have none)."""

    NONE = "none"
    BNB_NF4 = "nf4"
    BNB_INT8 = "int8"
    GPTQ = "gptq"
    AWQ = "awq"
    FP8 = "fp8"
    GGUF = "gguf"

    @property
    def calibrated(self) -> bool:
        """Whether the method needs calibration text."""
        return self in (Method.GPTQ, Method.AWQ)


METHODS = {
    quantizer_pb2.QUANTIZE_METHOD_UNSPECIFIED: Method.NONE,
    quantizer_pb2.QUANTIZE_METHOD_BNB_NF4: Method.BNB_NF4,
    quantizer_pb2.QUANTIZE_METHOD_BNB_INT8: Method.BNB_INT8,
    quantizer_pb2.QUANTIZE_METHOD_GPTQ: Method.GPTQ,
    quantizer_pb2.QUANTIZE_METHOD_AWQ: Method.AWQ,
    quantizer_pb2.QUANTIZE_METHOD_FP8: Method.FP8,
    quantizer_pb2.QUANTIZE_METHOD_GGUF: Method.GGUF,
}
# Bits each method can produce; the first is its default.
BITS = {
    Method.GPTQ: (4, 8),
    Method.AWQ: (4,),
    Method.BNB_NF4: (4,),
    Method.BNB_INT8: (8,),
    Method.FP8: (8,),
}
GGUF_TYPES = {
    quantizer_pb2.GGUF_TYPE_UNSPECIFIED: "f16",
    quantizer_pb2.GGUF_TYPE_F16: "f16",
    quantizer_pb2.GGUF_TYPE_Q8_0: "q8_0",
}


@dataclass(frozen=True)
class QuantizeConfig:
    """A resolved quantize job."""

    source: str
    merge_only: bool
    method: Method
    bits: int
    group_size: int
    symmetric: bool | None
    calibration_dataset: str
    num_samples: int
    seq_length: int
    tuning_steps: int
    output_name: str
    gguf_type: str
    cpus: float
    gpus: float
    memory_bytes: int

    @classmethod
    def from_pb(cls, spec: quantizer_pb2.QuantizeJobSpec) -> QuantizeConfig:
        """Reads a resolved spec (defaults filled)."""
        merge_only = spec.operation == quantizer_pb2.QUANTIZE_OPERATION_MERGE
        return cls(
            source=format_ref(spec.source),
            merge_only=merge_only,
            method=Method.NONE if merge_only else METHODS[spec.method],
            bits=spec.bits,
            group_size=spec.group_size,
            symmetric=spec.symmetric if spec.HasField("symmetric") else None,
            calibration_dataset=(
                format_ref(spec.calibration_dataset) if spec.calibration_dataset.name else ""
            ),
            num_samples=spec.num_calibration_samples,
            seq_length=spec.calibration_max_seq_length,
            tuning_steps=spec.tuning_steps,
            output_name=spec.output_name,
            gguf_type=GGUF_TYPES[spec.gguf_type],
            cpus=spec.resources.cpus_per_worker,
            gpus=spec.resources.gpus_per_worker,
            memory_bytes=spec.resources.memory_bytes_per_worker,
        )


def default_output_name(spec: quantizer_pb2.QuantizeJobSpec) -> str:
    """`<source>-merged`, `<source>-gptq-w4`, `<source>-nf4`, `<source>-gguf-q8_0`, ..."""
    if spec.operation == quantizer_pb2.QUANTIZE_OPERATION_MERGE:
        suffix = "merged"
    else:
        method = METHODS[spec.method]
        if method is Method.GGUF:
            suffix = f"gguf-{GGUF_TYPES[spec.gguf_type]}"
        elif method in (Method.GPTQ, Method.AWQ):
            suffix = f"{method.value}-w{spec.bits or BITS[method][0]}"
        else:
            suffix = method.value
    return f"{spec.source.name}-{suffix}"[:128]


def fill_defaults(spec: quantizer_pb2.QuantizeJobSpec) -> quantizer_pb2.QuantizeJobSpec:
    """A copy of `spec` with every default written in (group size is the planner's)."""
    out = quantizer_pb2.QuantizeJobSpec()
    out.CopyFrom(spec)
    if out.operation == quantizer_pb2.QUANTIZE_OPERATION_UNSPECIFIED:
        out.operation = quantizer_pb2.QUANTIZE_OPERATION_QUANTIZE
    method = METHODS.get(out.method, Method.NONE)
    if out.operation == quantizer_pb2.QUANTIZE_OPERATION_QUANTIZE and method in BITS:
        out.bits = out.bits or BITS[method][0]
    if method.calibrated:
        samples, seq_length, steps = (
            GPU_CALIBRATION if out.resources.gpus_per_worker else CPU_CALIBRATION
        )
        out.num_calibration_samples = out.num_calibration_samples or samples
        out.calibration_max_seq_length = out.calibration_max_seq_length or seq_length
        out.tuning_steps = out.tuning_steps or steps
    if method is Method.GGUF and out.gguf_type == quantizer_pb2.GGUF_TYPE_UNSPECIFIED:
        out.gguf_type = quantizer_pb2.GGUF_TYPE_F16
    out.output_name = out.output_name or default_output_name(out)
    return out


def check_spec(spec: quantizer_pb2.QuantizeJobSpec) -> exceptions.Violations:
    """Every problem of a spec (defaults filled) that shows without the registry."""
    v = exceptions.Violations()
    v.check(bool(spec.source.name), "spec.source", "name the version to start from")
    merge = spec.operation == quantizer_pb2.QUANTIZE_OPERATION_MERGE
    method = METHODS.get(spec.method)
    if method is None:
        v.add("spec.method", f"unknown method {spec.method}")
        return v
    if merge:
        v.check(method is Method.NONE, "spec.method", "a MERGE job takes no method")
    elif method is Method.NONE:
        methods = ", ".join(label(quantizer_pb2.QuantizeMethod, m) for m in METHODS if m)
        v.add("spec.method", f"choose a method: {methods}")
    elif method is Method.GGUF:
        v.check(spec.bits == 0, "spec.bits", "GGUF takes its type from gguf_type, not bits")
    elif spec.bits not in BITS[method]:
        allowed = ", ".join(map(str, sorted(BITS[method])))
        v.add("spec.bits", f"{label(quantizer_pb2.QuantizeMethod, spec.method)} does {allowed}")
    if spec.gguf_type and method is not Method.GGUF:
        v.add("spec.gguf_type", "only a GGUF export takes a gguf_type")
    if spec.group_size and (merge or not method.calibrated):
        v.add("spec.group_size", "only GPTQ and AWQ take a group size")
    v.check(spec.group_size >= -1, "spec.group_size", "use -1 (per channel), 0 (auto) or a size")
    if spec.calibration_dataset.name and not method.calibrated:
        v.add("spec.calibration_dataset", "only GPTQ and AWQ are calibrated")
    if spec.tuning_steps and not method.calibrated:
        v.add("spec.tuning_steps", "only GPTQ and AWQ are tuned")
    if method is Method.GPTQ and spec.HasField("symmetric") and not spec.symmetric:
        v.add("spec.symmetric", "vLLM serves symmetric GPTQ only; use AWQ for zero points")
    if spec.group_size > 0 and spec.group_size not in (32, 64, 128):
        v.add("spec.group_size", "use 32, 64 or 128 (what vLLM's kernels take), -1 or 0")
    v.check(
        spec.num_calibration_samples <= MAX_SAMPLES,
        "spec.num_calibration_samples",
        f"at most {MAX_SAMPLES}",
    )
    v.check(
        spec.calibration_max_seq_length <= MAX_SEQ_LENGTH,
        "spec.calibration_max_seq_length",
        f"at most {MAX_SEQ_LENGTH}",
    )
    try:
        check_name(spec.output_name, "output_name")
    except RefError as exc:
        v.add("spec.output_name", str(exc))
    r = spec.resources
    v.check(r.num_workers <= 1, "spec.resources.num_workers", "a quantize job runs on one worker")
    v.check(r.cpus_per_worker >= 0, "spec.resources.cpus_per_worker", "must not be negative")
    v.check(r.gpus_per_worker >= 0, "spec.resources.gpus_per_worker", "must not be negative")
    return v
