"""What every client command needs: addresses, the token, clients, progress, JSON output."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from google.protobuf import json_format
from google.protobuf.message import Message
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TransferSpeedColumn,
)

from forgeline.client.channel import ChannelOptions
from forgeline.client.jobs import QuantizerClient, TrainerClient
from forgeline.client.registry import RegistryClient
from forgeline.common.settings import ServiceName, Settings
from forgeline.v1 import registry_pb2

console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # messages stay whole lines


def client_options() -> ChannelOptions:
    """Channel options from the environment (token, TLS CA)."""
    return Settings.load(ServiceName.REGISTRY).channel_options()


def address_of(service: ServiceName, override: str | None = None) -> str:
    """The address of a service: the flag, else FORGELINE_<SERVICE>_ADDRESS, else the default."""
    return override or Settings.load(service).addresses[service]


def registry_client(address: str | None = None) -> RegistryClient:
    """A registry client for the configured (or given) address."""
    return RegistryClient(address_of(ServiceName.REGISTRY, address), client_options())


def trainer_client(address: str | None = None) -> TrainerClient:
    """A trainer client for the configured (or given) address."""
    return TrainerClient(address_of(ServiceName.TRAINER, address), client_options())


def quantizer_client(address: str | None = None) -> QuantizerClient:
    """A quantizer client for the configured (or given) address."""
    return QuantizerClient(address_of(ServiceName.QUANTIZER, address), client_options())


def push_dataset_file(path: Path, name: str, what: str, registry: str | None) -> str:
    """Uploads a checked local file as a DATASET version (content-addressed: the same file
    again reuses its version) and prints `<what> <file> -> <reference>`; returns the
    reference."""
    from forgeline.client.transfer import push_file

    with registry_client(registry) as client:
        version = push_file(
            client,
            path,
            name,
            registry_pb2.VERSION_KIND_DATASET,
            reuse_identical=True,
            description=f"{what} uploaded from {path.name}",
        )
    ref = f"{version.model}:{version.number}"
    console.print(f"{what} {path.name} -> {ref}")
    return ref


@contextlib.contextmanager
def transfer_progress() -> Iterator:
    """A rich progress display and a transfer callback `(path, done, total)` feeding it."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err_console,
        transient=False,
    ) as progress:
        tasks: dict[str, int] = {}

        def update(path: str, done: int, total: int) -> None:
            if path not in tasks:
                tasks[path] = progress.add_task(path, total=total or 1)
            progress.update(tasks[path], completed=done if total else 1)

        yield update


def human_bytes(n: int) -> str:
    """1536 -> '1.5 KiB'."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def message_dict(message: Message) -> dict:
    """A protobuf message as `--json` prints it: the contract's field names, every field
    (zero values too), enums by name, 64-bit integers as numbers."""
    return json_format.MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
        unquote_int64_if_possible=True,
    )


def print_json(value: object) -> None:
    """Writes `value` to standard output as indented JSON, and nothing else."""
    sys.stdout.write(json.dumps(value, indent=2) + "\n")
