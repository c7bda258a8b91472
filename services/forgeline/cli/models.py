"""`forgeline models ...`: the registry from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.tree import Tree

from forgeline.cli.choices import choice_option
from forgeline.cli.context import (
    console,
    human_bytes,
    message_dict,
    print_json,
    registry_client,
    transfer_progress,
)
from forgeline.client.cache import VersionCache
from forgeline.client.labels import label
from forgeline.client.refs import format_ref, pinned
from forgeline.client.transfer import push_file, push_folder
from forgeline.v1 import registry_pb2

app = typer.Typer(help="Models in the registry: import, push, pull, promote.", no_args_is_help=True)

RegistryOption = Annotated[
    str | None, typer.Option("--registry", help="Registry address [FORGELINE_REGISTRY_ADDRESS].")
]


@app.command("list")
def list_versions(
    model: Annotated[str, typer.Option(help="Only this model.")] = "",
    kind: Annotated[
        int | None, choice_option(registry_pb2.VersionKind, help="Only this kind.")
    ] = None,
    tag: Annotated[str, typer.Option(help="Only models with this tag.")] = "",
    alias: Annotated[str, typer.Option(help="Only versions holding this alias.")] = "",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the versions as a JSON list, nothing else.")
    ] = False,
    registry: RegistryOption = None,
) -> None:
    """List versions, newest first."""
    filters = {"model": model, "tag": tag, "alias": alias}
    if kind is not None:
        filters["kinds"] = [kind]
    with registry_client(registry) as client:
        versions = list(client.list_versions(**filters))
    if as_json:
        print_json([message_dict(v) for v in versions])
        return
    table = Table("version", "kind", "state", "aliases", "files", "size", "created")
    for v in versions:
        table.add_row(
            f"{v.model}:{v.number}",
            label(registry_pb2.VersionKind, v.kind),
            label(registry_pb2.VersionState, v.state),
            ", ".join(v.aliases),
            str(v.file_count),
            human_bytes(v.total_bytes),
            v.create_time.ToDatetime().strftime("%Y-%m-%d %H:%M"),
        )
    console.print(table)


@app.command()
def show(
    ref: Annotated[str, typer.Argument(help="name, name:VERSION or name@ALIAS.")],
    registry: RegistryOption = None,
) -> None:
    """Show a version: lineage fields, metrics, files and evaluations."""
    with registry_client(registry) as client:
        v = client.get_version(ref)
        kind = label(registry_pb2.VersionKind, v.kind)
        state = label(registry_pb2.VersionState, v.state)
        console.print(f"[bold]{pinned(v)}[/] {kind} {state}")
        for field_name, value in (
            ("aliases", ", ".join(v.aliases)),
            ("parents", ", ".join(format_ref(p) for p in v.parents)),
            ("job", v.lineage.job_id),
            ("dataset", v.lineage.dataset_digest),
            ("description", v.description),
            ("failure", v.failure_reason),
            ("metrics", ", ".join(f"{k}={val:.4g}" for k, val in sorted(v.metrics.items()))),
            ("metadata", ", ".join(f"{k}={val}" for k, val in sorted(v.metadata.items()))),
        ):
            if value:
                console.print(f"  {field_name}: {value}")
        if v.state == registry_pb2.VERSION_STATE_READY:
            manifest = client.get_manifest(pinned(v))
            files = Table("file", "size", "sha256")
            for e in manifest.entries:
                files.add_row(e.path, human_bytes(e.size), e.sha256[:16])
            console.print(files)
        evaluations = client.list_evaluations(pinned(v))
        if evaluations:
            table = Table("suite", "metrics", "samples", "job")
            for e in evaluations:
                metrics = ", ".join(f"{k}={val:.4f}" for k, val in sorted(e.metrics.items()))
                table.add_row(e.suite, metrics, str(e.num_samples), e.job_id)
            console.print(table)


@app.command()
def lineage(
    ref: Annotated[str, typer.Argument(help="Version to start from.")],
    descendants: Annotated[bool, typer.Option(help="Walk to children instead of parents.")] = False,
    registry: RegistryOption = None,
) -> None:
    """Print where a version came from (or what was derived from it) as a tree."""
    direction = (
        registry_pb2.LINEAGE_DIRECTION_DESCENDANTS
        if descendants
        else registry_pb2.LINEAGE_DIRECTION_ANCESTORS
    )
    with registry_client(registry) as client:
        resp = client.get_lineage(ref, direction)
    kinds = {
        f"{v.model}:{v.number}": label(registry_pb2.VersionKind, v.kind)
        for v in [resp.root, *resp.versions]
    }
    links: dict[str, list[str]] = {}
    for e in resp.edges:
        parent, child = format_ref(e.parent), format_ref(e.child)
        src, dst = (parent, child) if descendants else (child, parent)
        links.setdefault(src, []).append(dst)

    def grow(node: Tree, key: str, seen: set[str]) -> None:
        for nxt in links.get(key, []):
            branch = node.add(f"{nxt} [dim]{kinds.get(nxt, '')}[/]")
            if nxt not in seen:
                grow(branch, nxt, seen | {nxt})

    root_key = f"{resp.root.model}:{resp.root.number}"
    tree = Tree(f"[bold]{root_key}[/] [dim]{kinds[root_key]}[/]")
    grow(tree, root_key, {root_key})
    console.print(tree)


@app.command()
def promote(
    ref: Annotated[str, typer.Argument(help="Version to promote, e.g. law-qa:3.")],
    alias: Annotated[str, typer.Argument(help="Alias to move, e.g. production.")],
    gate_suite: Annotated[str, typer.Option(help="Require a report of this suite.")] = "",
    gate_metric: Annotated[str, typer.Option(help="Metric the gate compares.")] = "accuracy",
    tolerance: Annotated[float, typer.Option(help="Allowed drop vs the current holder.")] = 0.0,
    minimum: Annotated[float | None, typer.Option(help="Floor the metric must reach.")] = None,
    actor: Annotated[str, typer.Option(help="Recorded in the alias history.")] = "cli",
    registry: RegistryOption = None,
) -> None:
    """Point an alias at a version, optionally only if it evaluates at least as well."""
    gate = None
    if gate_suite:
        gate = registry_pb2.EvaluationGate(
            suite=gate_suite, metric=gate_metric, tolerance=tolerance, minimum=minimum
        )
    with registry_client(registry) as client:
        version = client.get_version(ref)
        resp = client.set_alias(version.model, alias, version.number, gate=gate, actor=actor)
    before = f" (was {resp.previous_version})" if resp.previous_version else ""
    console.print(f"{version.model}@{alias} -> {version.number}{before}")


@app.command()
def push(
    path: Annotated[Path, typer.Argument(help="A folder or a file.", exists=True)],
    name: Annotated[str, typer.Option("--name", help="Model name to register under.")],
    kind: Annotated[int, choice_option(registry_pb2.VersionKind, help="What it holds.")] = "base",
    parent: Annotated[list[str] | None, typer.Option(help="Parent version (repeatable).")] = None,
    description: Annotated[str, typer.Option(help="Free text.")] = "",
    registry: RegistryOption = None,
) -> None:
    """Upload a folder (or file) as a new version; known content moves no bytes."""
    with registry_client(registry) as client, transfer_progress() as progress:
        options = {"parents": parent or [], "description": description, "progress": progress}
        if path.is_dir():
            version = push_folder(client, path, name, kind, **options)
        else:
            version = push_file(client, path, name, kind, **options)
    console.print(
        f"registered {version.model}:{version.number} "
        f"({version.file_count} files, {human_bytes(version.total_bytes)})"
    )


@app.command()
def pull(
    ref: Annotated[str, typer.Argument(help="Version to download.")],
    dest: Annotated[Path, typer.Argument(help="Folder to download into.")],
    registry: RegistryOption = None,
) -> None:
    """Download a version into DEST/<model>/<version>: verified, resumable, read-only."""
    with registry_client(registry) as client, transfer_progress() as progress:
        folder = VersionCache(client, dest).pull(ref, progress=progress).path
    console.print(str(folder))


@app.command()
def archive(
    ref: Annotated[str, typer.Argument(help="Version to archive.")],
    registry: RegistryOption = None,
) -> None:
    """Archive a version (its blobs become collectable)."""
    with registry_client(registry) as client:
        version = client.archive_version(ref)
    console.print(f"archived {pinned(version)}")


@app.command()
def gc(
    dry_run: Annotated[bool, typer.Option(help="Only report what would be freed.")] = False,
    registry: RegistryOption = None,
) -> None:
    """Retire abandoned PENDING versions; delete blobs and partial uploads nothing uses.

    Only what nobody touched for the registry's grace period goes (see
    FORGELINE_REGISTRY_GC_GRACE_SECONDS), so uploads in flight are safe.
    """
    with registry_client(registry) as client:
        r = client.garbage_collect(dry_run)
    verb = "would free" if dry_run else "freed"
    console.print(
        f"{verb} {r.blobs_deleted} blobs, {human_bytes(r.bytes_freed)}; "
        f"{r.versions_expired} abandoned PENDING versions failed, "
        f"{r.uploads_pruned} stale partial uploads removed"
    )


@app.command("import")
def import_cmd(
    source: Annotated[
        str,
        typer.Argument(
            help="A Hugging Face Hub id (org/name), modelscope://org/name, a local Hugging "
            "Face folder or a .gguf file."
        ),
    ],
    name: Annotated[
        str | None,
        typer.Option("--name", help="Model name to register under (default: from SOURCE)."),
    ] = None,
    revision: Annotated[
        str | None, typer.Option(help="Branch, tag or commit of a hub model (default: main).")
    ] = None,
    registry: RegistryOption = None,
) -> None:
    """Register any model as a BASE version; importing identical content again reuses it.

    Hub models come from the Hugging Face cache first, then from the Hub (not with
    HF_HUB_OFFLINE=1). Everything is checked before anything is uploaded.
    """
    from forgeline.common.intake import import_model

    with registry_client(registry) as client, transfer_progress() as progress:
        version = import_model(client, source, name=name, revision=revision, progress=progress)
    _print_registered(version)


@app.command("import-bundled")
def import_bundled_cmd(
    force: Annotated[bool, typer.Option(help="Convert again even if done.")] = False,
    register: Annotated[
        bool, typer.Option(help="Also register it in the registry as a BASE version.")
    ] = True,
    registry: RegistryOption = None,
) -> None:
    """Convert the bundled SmolLM2-135M-Instruct and register it as smollm2-135m-instruct."""
    from forgeline.common.bundled import import_bundled
    from forgeline.common.intake import import_bundled_model

    path = import_bundled(force=force)
    console.print(f"bundled model ready at {path}")
    if not register:
        return
    with registry_client(registry) as client, transfer_progress() as progress:
        version = import_bundled_model(client, progress=progress)
    _print_registered(version)


def _print_registered(version: registry_pb2.Version) -> None:
    console.print(
        f"registered {pinned(version)} "
        f"({version.file_count} files, {human_bytes(version.total_bytes)})"
    )
    for key, value in sorted(version.metadata.items()):
        console.print(f"  {key}: {value}")
