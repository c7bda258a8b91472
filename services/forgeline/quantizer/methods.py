"""Weight quantization of a model folder: GPTQ and AWQ (auto-round), NF4 and INT8 (bitsandbytes).

`quantize_autoround` tunes the rounding of every decoder-block linear layer with auto-round's
SignRound on calibration text and exports the result as a GPTQ or AWQ checkpoint that vLLM
serves (`quantization_config.quant_method` is `gptq` or `awq`). `quantize_bnb` writes a
serialized bitsandbytes checkpoint that transformers loads back as it is. Both write into a
temporary folder beside the target and rename it into place when complete.

Layer widths, the group size and byte accounting live in `layers` and are re-exported here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgeline.client import exceptions
from forgeline.quantizer.calibration import calibration_samples
from forgeline.quantizer.layers import (
    PER_CHANNEL,
    choose_group_size,
    float32_layer_bytes,
    folder_bytes,
    layer_bytes,
    quantized_linear_widths,
)
from forgeline.quantizer.merge import TOKENIZER_FILES

log = logging.getLogger(__name__)

__all__ = [
    "PER_CHANNEL",
    "QuantizeResult",
    "choose_group_size",
    "default_symmetric",
    "float32_layer_bytes",
    "folder_bytes",
    "layer_bytes",
    "quantize_autoround",
    "quantize_bnb",
    "quantized_linear_widths",
    "supported_bits",
]

# Bits each method writes in a form vLLM serves. auto-round's GPTQ exporter also writes 2 and
# 3 bits, but vLLM's GPTQ kernels take 4 and 8 bits only; its AWQ kernels take 4 bits.
_BITS = {"gptq": (4, 8), "awq": (4,), "nf4": (4,), "int8": (8,)}
# auto-round's exporter per method.
_FORMATS = {"gptq": "auto_gptq", "awq": "auto_awq"}
# Symmetric GPTQ is what vLLM's GPTQ kernels serve; AWQ keeps zero points, as AutoAWQ does.
_SYMMETRIC = {"gptq": True, "awq": False}
# bitsandbytes' NF4 block size (absmax scales per 64 weights); INT8 scales each row.
_NF4_BLOCK = 64
# Progress reporting goes through auto-round's module-level progress bar: one run at a time.
_PROGRESS_LOCK = threading.Lock()


@dataclass(frozen=True)
class QuantizeResult:
    """What a quantization wrote.

    Attributes:
        path: The quantized model folder.
        method: ``gptq``, ``awq``, ``nf4`` or ``int8``.
        bits: Bits per quantized weight.
        group_size: Input columns sharing one scale (-1: per output channel; bitsandbytes:
            its block size).
        symmetric: Whether the integer grid has no zero point (None for bitsandbytes).
        size_bytes: Bytes of every file in the folder.
        quantized_layers: How many linear layers were quantized.
        quantized_layer_bytes: Bytes those layers take in the folder (with scales, zeros...).
        source_layer_bytes: Bytes the same layers take in float32.
        seconds: Wall time of the quantization and save.
        calibration_samples: Calibration sequences used (0 for bitsandbytes).
        calibration_tokens: Tokens in them.
        iters: SignRound iterations per block (0: rounding to nearest, no tuning).
    """

    path: Path
    method: str
    bits: int
    group_size: int
    symmetric: bool | None
    size_bytes: int
    quantized_layers: int
    quantized_layer_bytes: int
    source_layer_bytes: int
    seconds: float
    calibration_samples: int = 0
    calibration_tokens: int = 0
    iters: int = 0

    @property
    def layer_ratio(self) -> float:
        """Quantized layers' bytes over their float32 bytes."""
        return self.quantized_layer_bytes / self.source_layer_bytes


def supported_bits(method: str) -> tuple[int, ...]:
    """Bits `method` (gptq, awq, nf4, int8) writes in a form vLLM or transformers loads.

    Raises:
        InvalidArgument: `spec.method` is not one of them.
    """
    if method not in _BITS:
        raise exceptions.InvalidArgument(
            "spec.method", f"unknown method {method!r}; use one of {', '.join(_BITS)}"
        )
    return _BITS[method]


def default_symmetric(method: str) -> bool:
    """Whether `method` (gptq or awq) quantizes symmetrically when the spec does not say."""
    return _SYMMETRIC[method]


def quantize_autoround(
    model_dir: Path,
    out_dir: Path,
    method: str,
    bits: int,
    group_size: int,
    symmetric: bool | None,
    texts: list[str],
    nsamples: int,
    seqlen: int,
    progress: Callable[[int, int], None] | None = None,
    *,
    iters: int | None = None,
    batch_size: int = 8,
    device: str | None = None,
    seed: int = 42,
    torch_compile: bool | None = None,
) -> QuantizeResult:
    """Quantizes a model folder to GPTQ or AWQ with auto-round's SignRound.

    The calibration texts are joined (blank line between texts) and cut into sequences of
    `seqlen` tokens; `nsamples` of them, spread evenly over the whole text, calibrate.

    Args:
        model_dir: The model to quantize (a Hugging Face folder, any dtype).
        out_dir: Folder to create; must not exist yet.
        method: ``gptq`` or ``awq``: the checkpoint format written.
        bits: Bits per weight, one of `supported_bits(method)`.
        group_size: As for `choose_group_size`: 0 chooses, -1 is per channel.
        symmetric: Integer grid without zero point; None takes the method's default
            (GPTQ symmetric, AWQ with zero points).
        texts: Calibration texts (`calibration.default_texts` or `texts_from_dataset`).
        nsamples: Most calibration sequences.
        seqlen: Tokens per calibration sequence (capped at the model's context).
        progress: Called as `progress(done_blocks, total_blocks)` as decoder blocks finish;
            raising from it cancels the run.
        iters: SignRound iterations per block; None takes auto-round's default (200); 0
            skips tuning for auto-round's rounding to nearest (with its importance-weighted
            scale search, which is slower on CPU than a short tuning and less accurate).
        batch_size: Calibration sequences per tuning step.
        device: ``cpu``, ``cuda``...; None takes the first GPU if there is one.
        seed: Seed of the tuning.
        torch_compile: Compile the tuning step; None lets auto-round decide (it compiles,
            which costs about a minute up front on CPU and pays off over many iterations).

    Returns:
        Where and what was written, with the quantized layers' bytes.

    Raises:
        InvalidArgument: the bits, symmetry, group size or calibration text do not fit
            (field `spec.bits`, `spec.symmetric`, `spec.group_size` or
            `spec.calibration_dataset`).
        FailedPrecondition: `out_dir` exists, or the export is not a GPTQ/AWQ folder.
    """
    import torch
    from auto_round import AutoRound
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    widths = quantized_linear_widths(model_dir)
    group_size, symmetric = _check_autoround(method, bits, group_size, symmetric, widths)
    _check_new(out_dir)
    started = time.monotonic()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    context = getattr(model.config, "max_position_embeddings", None) or seqlen
    samples = calibration_samples(tokenizer, texts, nsamples, min(seqlen, context))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    kwargs: dict[str, Any] = {"enable_torch_compile": torch_compile}
    if iters is not None:
        kwargs["iters"] = iters
    tokens = sum(s.numel() for s in samples)
    log.info(
        "quantizing %s to %s W%d g%d %s on %d x %d calibration tokens (%s)",
        model_dir.name,
        method,
        bits,
        group_size,
        "sym" if symmetric else "asym",
        len(samples),
        samples[0].shape[1],
        device,
    )
    tmp = _temporary(out_dir)
    try:
        with _reporting_blocks(progress):
            rounder = AutoRound(
                model,
                tokenizer,
                bits=bits,
                group_size=group_size,
                sym=symmetric,
                dataset=samples,
                nsamples=len(samples),
                seqlen=samples[0].shape[1],
                batch_size=min(batch_size, len(samples)),
                device_map=device,
                seed=seed,
                **kwargs,
            )
            rounder.quantize()
        rounder.save_quantized(str(tmp), format=_FORMATS[method])
        _check_export(tmp, method)
        used_iters = int(getattr(rounder, "iters", iters if iters is not None else 0) or 0)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    result = _result(
        model_dir,
        out_dir,
        widths,
        method=method,
        bits=bits,
        group_size=group_size,
        symmetric=symmetric,
        seconds=time.monotonic() - started,
        calibration_samples=len(samples),
        calibration_tokens=tokens,
        iters=used_iters,
    )
    _log_result(result)
    return result


def _check_autoround(
    method: str, bits: int, group_size: int, symmetric: bool | None, widths: dict[str, int]
) -> tuple[int, bool]:
    """Validates a GPTQ/AWQ request; returns the settled group size and symmetry."""
    if method not in _FORMATS:
        raise exceptions.InvalidArgument(
            "spec.method", f"auto-round writes {' or '.join(_FORMATS)}, not {method!r}"
        )
    violations = exceptions.Violations()
    allowed = supported_bits(method)
    violations.check(
        bits in allowed,
        "spec.bits",
        f"{method.upper()} is served at {', '.join(map(str, allowed))} bits, not {bits}",
    )
    symmetric = _SYMMETRIC[method] if symmetric is None else symmetric
    violations.check(
        symmetric or method != "gptq",
        "spec.symmetric",
        "vLLM serves GPTQ checkpoints without zero points only; use symmetric, or AWQ",
    )
    try:
        group_size = choose_group_size(widths, group_size)
    except exceptions.InvalidArgument as exc:
        violations.extend(exc.violations)
    violations.raise_if_any()
    return group_size, symmetric


@contextlib.contextmanager
def _reporting_blocks(progress: Callable[[int, int], None] | None) -> Iterator[None]:
    """Reports auto-round's per-block progress bar to `progress` while the block runs.

    auto-round has no progress callback; its block loop advances one module-level `tqdm`
    per decoder block, so that class is swapped for one that also reports.
    """
    if progress is None:
        yield
        return
    from auto_round.compressors import orchestrator

    original = orchestrator.tqdm

    class _Reporting(original):  # type: ignore[misc, valid-type]
        def update(self, n: float | None = 1) -> bool | None:
            shown = super().update(n)
            if self.total:
                progress(min(int(self.n), int(self.total)), int(self.total))
            return shown

    with _PROGRESS_LOCK:
        orchestrator.tqdm = _Reporting
        try:
            yield
        finally:
            orchestrator.tqdm = original


def _check_export(folder: Path, method: str) -> None:
    """Checks that an export is what vLLM reads as `method`."""
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    found = config.get("quantization_config", {}).get("quant_method")
    if found != method:
        raise exceptions.FailedPrecondition(
            f"the {method} export wrote quant_method {found!r}; vLLM would not load it as {method}"
        )


def quantize_bnb(
    model_dir: Path,
    out_dir: Path,
    method: str,
    *,
    compute_dtype: str | None = None,
) -> QuantizeResult:
    """Quantizes a model folder with bitsandbytes and saves the serialized checkpoint.

    NF4 uses double quantization (the block scales are quantized too). The folder loads
    back quantized with a plain `AutoModelForCausalLM.from_pretrained(out_dir)`.

    Args:
        model_dir: The model to quantize.
        out_dir: Folder to create; must not exist yet.
        method: ``nf4`` (4-bit NormalFloat) or ``int8`` (LLM.int8()).
        compute_dtype: dtype NF4 layers compute in and the unquantized weights are kept in;
            None takes bfloat16 on a GPU and float32 on CPU, where bfloat16 matmuls are slow.

    Returns:
        Where and what was written, with the quantized layers' bytes.

    Raises:
        InvalidArgument: `spec.method` is not nf4 or int8.
        FailedPrecondition: `out_dir` exists.
    """
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    if method not in ("nf4", "int8"):
        raise exceptions.InvalidArgument(
            "spec.method", f"bitsandbytes writes nf4 or int8, not {method!r}"
        )
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    widths = quantized_linear_widths(model_dir)
    _check_new(out_dir)
    started = time.monotonic()
    on_gpu = torch.cuda.is_available()
    dtype = getattr(torch, compute_dtype or ("bfloat16" if on_gpu else "float32"))
    if method == "nf4":
        config = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        )
    else:
        config = BitsAndBytesConfig(load_in_8bit=True)
    model = AutoModelForCausalLM.from_pretrained(
        model_dir,
        quantization_config=config,
        dtype=dtype,
        device_map={"": 0 if on_gpu else "cpu"},
    )
    tmp = _temporary(out_dir)
    try:
        model.save_pretrained(tmp)
        for name in TOKENIZER_FILES:
            if (model_dir / name).is_file():
                shutil.copyfile(model_dir / name, tmp / name)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    result = _result(
        model_dir,
        out_dir,
        widths,
        method=method,
        bits=4 if method == "nf4" else 8,
        group_size=_NF4_BLOCK if method == "nf4" else PER_CHANNEL,
        symmetric=None,
        seconds=time.monotonic() - started,
    )
    _log_result(result)
    return result


def _check_new(out_dir: Path) -> None:
    if out_dir.exists():
        raise exceptions.FailedPrecondition(f"{out_dir} already exists; write into a new folder")


def _temporary(out_dir: Path) -> Path:
    """A fresh temporary folder beside `out_dir`, renamed onto it once complete."""
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def _result(
    model_dir: Path, out_dir: Path, widths: dict[str, int], **fields: Any
) -> QuantizeResult:
    return QuantizeResult(
        path=out_dir,
        size_bytes=folder_bytes(out_dir),
        quantized_layers=len(widths),
        quantized_layer_bytes=layer_bytes(out_dir, widths),
        source_layer_bytes=float32_layer_bytes(model_dir, widths),
        **fields,
    )


def _log_result(result: QuantizeResult) -> None:
    log.info(
        "%s W%d: %d bytes; %d quantized layers take %d bytes, %.3f of float32; %.1f s",
        result.method,
        result.bits,
        result.size_bytes,
        result.quantized_layers,
        result.quantized_layer_bytes,
        result.layer_ratio,
        result.seconds,
    )
