"""Where served models come from: registry versions, fetched into the local cache.

The core resolves every reference through one `ModelResolver.resolve_model_dir(ref)`,
which returns the local folder of the version and the version itself (kind, parents,
metadata); `resolve_version(ref)` only says which version a reference names now, which is
how a model loaded with `follow` watches its alias. `RegistryResolver` is the real one: it
pins the reference to a version number and pulls that version through the SDK's
`VersionCache` (verified, once per machine, read-only, hard-linked when the registry's
blob store is on this machine).
`LocalResolver` serves folders already on disk, for tests and tools.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from forgeline.client.cache import VersionCache
from forgeline.client.exceptions import InvalidArgument, NotFound
from forgeline.client.refs import RefError, format_ref, parse_ref
from forgeline.common.settings import Settings
from forgeline.v1 import common_pb2, registry_pb2

log = logging.getLogger(__name__)


class ModelResolver(Protocol):
    """Turns a registry reference into a local folder and the version it resolved to."""

    def resolve_model_dir(self, ref: str) -> tuple[Path, registry_pb2.Version]:
        """Fetches the version `ref` names (if needed) and returns its folder and metadata.

        Raises:
            NotFound: no such model, version or alias.
            FailedPrecondition: the version is not READY.
        """
        ...

    def resolve_version(self, ref: str) -> registry_pb2.Version:
        """The version `ref` names now, without fetching its files (to follow an alias).

        Raises:
            NotFound: no such model, version or alias.
            FailedPrecondition: the version is not READY.
        """
        ...

    def close(self) -> None:
        """Releases connections."""
        ...


def pin(version: registry_pb2.Version) -> str:
    """The reference of exactly this version (`name:number`)."""
    return f"{version.model}:{version.number}"


# Versions with weights of their own, which get an engine (adapters run on one).
LOADABLE_KINDS = frozenset(
    {
        registry_pb2.VERSION_KIND_BASE,
        registry_pb2.VERSION_KIND_MERGED,
        registry_pb2.VERSION_KIND_QUANTIZED,
    }
)


def check_loadable(version: registry_pb2.Version) -> None:
    """Checks that `version` can be served by an engine of its own.

    Raises:
        InvalidArgument: on `ref`, it is an adapter (or of no known kind).
    """
    if version.kind not in LOADABLE_KINDS:
        kind = registry_pb2.VersionKind.Name(version.kind)
        hint = "; load it with LoadAdapter" if kind.endswith("ADAPTER") else ""
        raise InvalidArgument("ref", f"{pin(version)} is a {kind} version{hint}")


def check_ref(ref: str, field: str = "ref") -> str:
    """Returns `ref` in canonical form.

    Raises:
        InvalidArgument: it is not a valid reference; names `field`.
    """
    try:
        return format_ref(parse_ref(ref))
    except RefError as exc:
        raise InvalidArgument(field, str(exc)) from None


class RegistryResolver:
    """Resolves references against the registry and pulls versions through the version cache.

    Thread-safe; the core calls it from worker threads so downloads never block serving.
    """

    def __init__(self, cache: VersionCache):
        self.cache = cache

    @classmethod
    def from_settings(cls, settings: Settings) -> RegistryResolver:
        """The registry and cache of a service's settings."""
        return cls(VersionCache.open(settings.cache_config()))

    def resolve_model_dir(self, ref: str) -> tuple[Path, registry_pb2.Version]:
        """Pins `ref` to one version and makes its files available locally.

        Raises:
            NotFound: no such model, version or alias.
            FailedPrecondition: the version is not READY.
            Unavailable: the registry cannot be reached.
        """
        pulled = self.cache.pull(ref)
        log.info("%s resolved to %s at %s", ref, pulled.ref, pulled.path)
        return pulled.path, pulled.version

    def resolve_version(self, ref: str) -> registry_pb2.Version:
        """The READY version `ref` names now (one registry call, nothing downloaded).

        Raises:
            NotFound: no such model, version or alias.
            FailedPrecondition: the version is not READY.
            Unavailable: the registry cannot be reached.
        """
        return self.cache.resolve(ref)

    def close(self) -> None:
        """Closes the registry channel."""
        self.cache.close()


@dataclass(frozen=True)
class LocalModel:
    """A folder on disk served as if it were registry version 1 of `name`."""

    path: Path
    kind: int = registry_pb2.VERSION_KIND_BASE
    parents: Sequence[str] = ()


class LocalResolver:
    """Serves folders on disk by model name, without a registry (tests, tools)."""

    def __init__(self, models: Mapping[str, Path | LocalModel]):
        self.models = {
            name: m if isinstance(m, LocalModel) else LocalModel(Path(m))
            for name, m in models.items()
        }

    def _model(self, ref: str) -> tuple[str, LocalModel]:
        name = parse_ref(ref).name
        model = self.models.get(name)
        if model is None:
            raise NotFound("model", name)
        return name, model

    def resolve_model_dir(self, ref: str) -> tuple[Path, registry_pb2.Version]:
        """Returns the folder registered under the reference's model name.

        Raises:
            NotFound: no folder is registered under that name.
        """
        return self._model(ref)[1].path, self.resolve_version(ref)

    def resolve_version(self, ref: str) -> registry_pb2.Version:
        """Version 1 of the model the reference names.

        Raises:
            NotFound: no folder is registered under that name.
        """
        name, model = self._model(ref)
        return registry_pb2.Version(
            model=name,
            number=1,
            kind=model.kind,
            state=registry_pb2.VERSION_STATE_READY,
            parents=[_pinned(p) for p in model.parents],
        )

    def close(self) -> None:
        """Nothing to release."""


def _pinned(ref: str) -> common_pb2.ModelRef:
    parsed = parse_ref(ref)
    if parsed.WhichOneof("selector") is None:
        parsed.version = 1
    return parsed
