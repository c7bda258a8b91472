"""The inputs of a training command: local dataset files checked and uploaded, a base model
imported on first use, an adapter merged for `--stack`.
"""

import re
from pathlib import Path

import typer

from forgeline.cli.context import (
    console,
    err_console,
    push_dataset_file,
    registry_client,
    transfer_progress,
)
from forgeline.cli.quantize import submit_and_follow
from forgeline.client.exceptions import NotFound
from forgeline.client.labels import label
from forgeline.client.refs import RefError, format_ref, parse_ref, pinned
from forgeline.v1 import quantizer_pb2, registry_pb2


def dataset_model_name(path: Path) -> str:
    """A registry model name for a dataset file: its stem, lower-cased and cleaned."""
    name = re.sub(r"[^a-z0-9._-]+", "-", path.stem.lower()).strip("-._") or "dataset"
    return name[:128]


def upload_dataset(path: Path, task: str, fmt: str, registry: str | None) -> str:
    """Checks a local dataset file, uploads it as a DATASET version, returns its reference.

    Raises:
        typer.Exit: the file has problems (each printed with its line and field).
    """

    try:
        from forgeline.trainer.config import DataFormat, Task
        from forgeline.trainer.data import load_dataset
    except ImportError:  # a client-only install: the trainer checks it on submission
        load_dataset = None
    if load_dataset is not None:
        loaded = load_dataset(path, Task(task), DataFormat(fmt))
        if not loaded.ok:
            err_console.print(f"[red]error:[/] {path} is not a valid {task} dataset")
            for line in loaded.describe_problems():
                err_console.print(f"  {line}")
            raise typer.Exit(2)
    return push_dataset_file(path, dataset_model_name(path), "dataset", registry)


def resolve_dataset(value: str, task: str, fmt: str, registry: str | None) -> str:
    """A local dataset file uploaded (see `upload_dataset`), or a DATASET reference kept."""
    path = Path(value)
    if path.exists():
        return upload_dataset(path, task, fmt, registry)
    parse_ref(value)  # a registry reference; RefError explains a typo'd path too
    return value


def resolve_base_model(value: str, registry: str | None) -> str:
    """The `--model` reference; a Hub id, ModelScope id or local model is imported on first use.

    A registry reference is kept as it is. A Hub or ModelScope id imported before resolves
    to that import; a local model is imported again (identical content reuses its version).

    Raises:
        InvalidArgument, FailedPrecondition, Unavailable, NotFound: the import failed (see
            `forgeline.common.intake.import_model`); nothing was registered.
    """
    from forgeline.common import intake

    if not intake.looks_importable(value):
        return value
    with registry_client(registry) as client:
        try:
            client.get_version(value)
            return value  # a registry model that is also the name of a local path
        except (RefError, NotFound):
            pass
        version = intake.find_imported(client, value)
        if version is None:
            console.print(f"importing {value} as {intake.default_name(value)} (first use)")
            with transfer_progress() as progress:
                version = intake.import_model(client, value, progress=progress)
        else:
            console.print(f"{value} was imported as {pinned(version)}")
    return pinned(version)


def stacked_base(ref: str, registry: str | None, quantizer: str | None) -> str:
    """Merges the ADAPTER `ref` into its base (a quantizer MERGE job); returns the MERGED
    version a new adapter is then trained on.

    Raises:
        typer.BadParameter: `ref` is not an ADAPTER.
        typer.Exit: the merge failed (its job's error is printed).
    """
    with registry_client(registry) as client:
        version = client.get_version(ref)
    if version.kind != registry_pb2.VERSION_KIND_ADAPTER:
        kind = label(registry_pb2.VersionKind, version.kind)
        raise typer.BadParameter(
            f"{ref} is a {kind} version; --stack trains a new adapter on a base merged with "
            "an ADAPTER",
            param_hint="--stack",
        )
    console.print(f"merging {ref} into its base, to train a new adapter on top")
    spec = quantizer_pb2.QuantizeJobSpec(
        source=parse_ref(ref), operation=quantizer_pb2.QUANTIZE_OPERATION_MERGE
    )
    return format_ref(submit_and_follow(spec, quantizer).outputs[0])
