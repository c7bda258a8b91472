"""`forgeline merge | quantize | export`: the quantizer from the command line.

Each submits a job to the quantizer service, follows it with a progress bar, and prints
the version it registered; `export --out` also downloads the exported file.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer

from forgeline.cli.choices import choice_option
from forgeline.cli.context import (
    console,
    err_console,
    push_dataset_file,
    quantizer_client,
    registry_client,
    transfer_progress,
)
from forgeline.cli.jobs import follow
from forgeline.client.cache import VersionCache
from forgeline.client.refs import parse_ref
from forgeline.common.settings import cache_dir
from forgeline.quantizer.spec import METHODS, Method
from forgeline.v1 import common_pb2, quantizer_pb2

QuantizerOption = Annotated[
    str | None, typer.Option("--quantizer", help="Quantizer address [FORGELINE_QUANTIZER_ADDRESS].")
]
RegistryOption = Annotated[
    str | None, typer.Option("--registry", help="Registry address [FORGELINE_REGISTRY_ADDRESS].")
]
NameOption = Annotated[
    str, typer.Option("--name", help="Register the result under this model name.")
]
# Methods `quantize` offers; GGUF is `export`'s.
QUANTIZE_METHODS = {m.value for m in Method} - {Method.NONE.value, Method.GGUF.value}


def submit_and_follow(spec: quantizer_pb2.QuantizeJobSpec, quantizer: str | None) -> common_pb2.Job:
    """Submits a quantizer job and follows it to its end; returns the SUCCEEDED job.

    Raises:
        typer.Exit: the job did not succeed (its error was printed).
    """
    with quantizer_client(quantizer) as client:
        job = client.submit(spec)
        console.print(f"submitted {job.id}")
        job = follow(client, job.id)
    if job.state != common_pb2.JOB_STATE_SUCCEEDED:
        raise typer.Exit(1)
    return job


def upload_calibration(path: Path, registry: str | None) -> str:
    """Checks a local calibration file and uploads it as a DATASET version.

    Raises:
        typer.Exit: the file has no usable text (the problem is printed).
    """
    from forgeline.client import exceptions

    try:
        from forgeline.quantizer.calibration import texts_from_dataset
    except ImportError:  # a client-only install: the quantizer checks it on submission
        texts_from_dataset = None
    if texts_from_dataset is not None:
        try:
            texts_from_dataset(path, 1)
        except exceptions.InvalidArgument as exc:
            err_console.print(f"[red]error:[/] {path} holds no calibration text")
            for violation in exc.violations:
                err_console.print(f"  {violation.description}")
            raise typer.Exit(2) from None
    name = f"{path.stem.lower().replace('_', '-')}-calibration"[:128]
    return push_dataset_file(path, name, "calibration", registry)


def merge(
    ref: Annotated[str, typer.Argument(help="The ADAPTER version to merge into its base.")],
    name: NameOption = "",
    quantizer: QuantizerOption = None,
) -> None:
    """Merge an adapter into its full-precision base; registers a MERGED version."""
    spec = quantizer_pb2.QuantizeJobSpec(
        source=parse_ref(ref),
        operation=quantizer_pb2.QUANTIZE_OPERATION_MERGE,
        output_name=name,
    )
    submit_and_follow(spec, quantizer)


def quantize(
    ref: Annotated[str, typer.Argument(help="BASE, MERGED or ADAPTER version (merged first).")],
    method: Annotated[str, typer.Option(help="gptq, awq, nf4, int8 or fp8 (GPU only).")],
    bits: Annotated[int, typer.Option(help="Bits per weight (GPTQ 4 or 8, AWQ 4).")] = 0,
    group_size: Annotated[
        int, typer.Option(help="Weights per scale; 0 picks 128/64/32, -1 per channel.")
    ] = 0,
    calibration: Annotated[
        str | None,
        typer.Option(help="Calibration text: a local file (uploaded) or a DATASET version."),
    ] = None,
    samples: Annotated[int, typer.Option(help="Calibration samples; 0: 128 (GPU), 8 (CPU).")] = 0,
    seq_length: Annotated[int, typer.Option(help="Tokens per calibration sample.")] = 0,
    name: NameOption = "",
    quantizer: QuantizerOption = None,
    registry: RegistryOption = None,
) -> None:
    """Quantize a version (GPTQ/AWQ with auto-round, or bitsandbytes); registers QUANTIZED."""
    if method.lower() not in QUANTIZE_METHODS:
        raise typer.BadParameter(
            f"use one of {', '.join(sorted(QUANTIZE_METHODS))}", param_hint="--method"
        )
    spec = quantizer_pb2.QuantizeJobSpec(
        source=parse_ref(ref),
        operation=quantizer_pb2.QUANTIZE_OPERATION_QUANTIZE,
        method=_method(method),
        bits=bits,
        group_size=group_size,
        num_calibration_samples=samples,
        calibration_max_seq_length=seq_length,
        output_name=name,
    )
    if calibration:
        local = Path(calibration)
        cal_ref = upload_calibration(local, registry) if local.is_file() else calibration
        spec.calibration_dataset.CopyFrom(parse_ref(cal_ref))
    submit_and_follow(spec, quantizer)


def export(
    ref: Annotated[str, typer.Argument(help="BASE, MERGED or ADAPTER version (merged first).")],
    format: Annotated[str, typer.Option("--format", help="Export format: gguf.")] = "gguf",
    type: Annotated[
        int, choice_option(quantizer_pb2.GgufType, "--type", help="Tensor type.")
    ] = "f16",
    out: Annotated[Path | None, typer.Option(help="Also download the file here.")] = None,
    name: NameOption = "",
    quantizer: QuantizerOption = None,
    registry: RegistryOption = None,
) -> None:
    """Export a version as a GGUF file (Llama-family models); registers it as QUANTIZED."""
    if format.lower() != "gguf":
        raise typer.BadParameter("gguf is the one export format", param_hint="--format")
    spec = quantizer_pb2.QuantizeJobSpec(
        source=parse_ref(ref),
        operation=quantizer_pb2.QUANTIZE_OPERATION_QUANTIZE,
        method=quantizer_pb2.QUANTIZE_METHOD_GGUF,
        gguf_type=type,
        output_name=name,
    )
    job = submit_and_follow(spec, quantizer)
    if out is not None:
        with registry_client(registry) as client, transfer_progress() as progress:
            pulled = VersionCache(client, cache_dir() / "versions").pull(job.outputs[0], progress)
        (gguf,) = pulled.path.glob("*.gguf")
        shutil.copyfile(gguf, out)
        console.print(f"wrote {out}")


def _method(text: str) -> int:
    return {m.value: number for number, m in METHODS.items()}[text.lower()]


def register(app: typer.Typer) -> None:
    """Adds `forgeline merge`, `quantize` and `export` to the CLI."""
    app.command()(merge)
    app.command()(quantize)
    app.command()(export)
