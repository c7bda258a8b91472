"""Checks a quantize spec against the registry before any work starts, and resolves it.

Everything a user can get wrong is found here, at submission, with the field named: an
unknown or wrong-kind source, an adapter whose base is gone, calibration data with no
usable text, a group size that does not divide a layer's input width (with the widths
that forbid it), bits the method cannot do, an architecture the GGUF writer does not
know, a job that would not fit in the worker's memory. The resolved spec pins every
reference to a version number and writes every default, so the stored spec says
exactly what runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from forgeline.client import exceptions
from forgeline.client.cache import VersionCache
from forgeline.client.labels import label
from forgeline.client.refs import format_ref, pinned
from forgeline.quantizer.spec import METHODS, Method, QuantizeConfig, check_spec, fill_defaults
from forgeline.v1 import common_pb2, quantizer_pb2, registry_pb2

log = logging.getLogger(__name__)

SOURCE_KINDS = (
    registry_pb2.VERSION_KIND_BASE,
    registry_pb2.VERSION_KIND_MERGED,
    registry_pb2.VERSION_KIND_ADAPTER,
)
# Peak memory of each operation, in multiples of the source's weights (measured on
# SmolLM2 in fp32: the model, its merged or quantized copy, and save buffers), plus a
# floor for the libraries themselves.
MEMORY_FACTOR = {
    Method.NONE: 2.5,
    Method.BNB_NF4: 2.0,
    Method.BNB_INT8: 2.0,
    Method.GPTQ: 3.5,
    Method.AWQ: 3.5,
    Method.FP8: 2.0,
    Method.GGUF: 2.0,
}
BASE_MEMORY = 1024**3


@dataclass
class Sources:
    """The versions a job reads, pinned: the source, its base (for an adapter), the data."""

    source: registry_pb2.Version
    base: registry_pb2.Version | None = None
    calibration: registry_pb2.Version | None = None

    @property
    def model(self) -> registry_pb2.Version:
        """The full model the job loads: the adapter's base, or the source itself."""
        return self.base or self.source


class QuantizePlanner:
    """Validates specs against the registry and the cluster.

    Args:
        cache: The registry and this machine's version cache.
        gpus_available: Whether the cluster has GPUs (FP8 needs one).
        memory_per_worker: Bytes a worker may use when the spec does not say (0: unknown).
    """

    def __init__(
        self, cache: VersionCache, *, gpus_available: bool = False, memory_per_worker: int = 0
    ):
        self.cache = cache
        self.gpus_available = gpus_available
        self.memory_per_worker = memory_per_worker

    def validate(self, spec: quantizer_pb2.QuantizeJobSpec) -> quantizer_pb2.QuantizeJobSpec:
        """Returns the spec to store: references pinned, defaults written.

        Raises:
            InvalidArgument: every problem, each naming its field.
            FailedPrecondition: FP8 on a cluster without a GPU.
        """
        resolved = fill_defaults(spec)
        v = check_spec(resolved)
        if METHODS.get(resolved.method) is Method.FP8 and not self.gpus_available:
            raise exceptions.FailedPrecondition(
                "FP8 quantization needs a GPU and this cluster has none; use GPTQ or AWQ",
                subject="spec.method",
                type="NO_GPU",
            )
        sources = self._sources(resolved, v)
        if sources is not None and not v:
            self._check_model(resolved, sources, v)
        v.raise_if_any()
        return resolved

    def _resolve(self, ref: common_pb2.ModelRef, field: str, v: exceptions.Violations):
        try:
            return self.cache.resolve(ref)
        except (exceptions.NotFound, exceptions.FailedPrecondition) as exc:
            v.add(field, f"{format_ref(ref)}: {exc.message}")
        except exceptions.InvalidArgument as exc:
            v.extend(exceptions.FieldViolation(field, x.description) for x in exc.violations)
        return None

    def _sources(self, spec: quantizer_pb2.QuantizeJobSpec, v: exceptions.Violations):
        if not spec.source.name:
            return None
        source = self._resolve(spec.source, "spec.source", v)
        if source is None:
            return None
        kind = label(registry_pb2.VersionKind, source.kind)
        if source.kind not in SOURCE_KINDS:
            v.add(
                "spec.source",
                f"{pinned(source)} is a {kind} version; expected BASE, MERGED or ADAPTER",
            )
            return None
        merge = spec.operation == quantizer_pb2.QUANTIZE_OPERATION_MERGE
        if merge and source.kind != registry_pb2.VERSION_KIND_ADAPTER:
            v.add("spec.source", f"{pinned(source)} is a {kind} version; only an ADAPTER merges")
        spec.source.CopyFrom(common_pb2.ModelRef(name=source.model, version=source.number))
        found = Sources(source)
        if source.kind == registry_pb2.VERSION_KIND_ADAPTER:
            if not source.parents:
                v.add("spec.source", f"{pinned(source)} names no base version to merge into")
                return None
            try:
                found.base = self.cache.resolve(source.parents[0])
            except (exceptions.NotFound, exceptions.FailedPrecondition) as exc:
                v.add(
                    "spec.source",
                    f"the base of {pinned(source)}, {format_ref(source.parents[0])}, is gone: "
                    f"{exc.message}",
                )
                return None
        if spec.calibration_dataset.name:
            data = self._resolve(spec.calibration_dataset, "spec.calibration_dataset", v)
            if data is not None and data.kind != registry_pb2.VERSION_KIND_DATASET:
                v.add(
                    "spec.calibration_dataset",
                    f"{pinned(data)} is a {label(registry_pb2.VersionKind, data.kind)} version; "
                    "expected DATASET",
                )
            elif data is not None:
                spec.calibration_dataset.CopyFrom(
                    common_pb2.ModelRef(name=data.model, version=data.number)
                )
                found.calibration = data
        return found

    def _check_model(
        self, spec: quantizer_pb2.QuantizeJobSpec, sources: Sources, v: exceptions.Violations
    ) -> None:
        cfg = QuantizeConfig.from_pb(spec)
        model_dir = self.cache.pull(pinned(sources.model)).path
        if cfg.method is Method.GGUF:
            from forgeline.quantizer.gguf_export import gguf_unsupported

            reason = gguf_unsupported(model_dir)
            if reason:
                v.add("spec.source", reason)
        if cfg.method.calibrated:
            from forgeline.quantizer.layers import choose_group_size, quantized_linear_widths

            try:
                spec.group_size = choose_group_size(
                    quantized_linear_widths(model_dir), spec.group_size
                )
            except exceptions.InvalidArgument as exc:
                v.extend(exc.violations)
            if sources.calibration is not None:
                from forgeline.quantizer.calibration import texts_from_dataset

                folder = self.cache.pull(pinned(sources.calibration)).path
                try:
                    texts_from_dataset(folder, 1)
                except exceptions.InvalidArgument as exc:
                    v.extend(exc.violations)
        self._check_memory(cfg, sources, v)

    def _check_memory(
        self, cfg: QuantizeConfig, sources: Sources, v: exceptions.Violations
    ) -> None:
        weights = sources.model.total_bytes + (
            sources.source.total_bytes if sources.base is not None else 0
        )
        needed = int(weights * MEMORY_FACTOR[cfg.method]) + BASE_MEMORY
        available = cfg.memory_bytes or self.memory_per_worker
        if available and needed > available:
            gib = 1024**3
            v.add(
                "spec.resources.memory_bytes_per_worker",
                f"this job needs about {needed / gib:.1f} GiB and a worker has "
                f"{available / gib:.1f} GiB; give it more memory",
            )
