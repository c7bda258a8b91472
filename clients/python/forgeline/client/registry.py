"""Typed client of the registry: one method per RPC of `forgeline.v1.RegistryService`.

Moving files in and out (content-addressed uploads, verified downloads) builds on these
methods in `forgeline.client.transfer`; `forgeline.client.cache` keeps pulled versions.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import grpc

from forgeline.client.base import BaseClient, RefLike, as_ref
from forgeline.client.channel import ChannelOptions
from forgeline.v1 import common_pb2, registry_pb2, registry_pb2_grpc


class RegistryClient(BaseClient):
    """Client of the registry service."""

    def __init__(self, target: str | grpc.Channel, options: ChannelOptions | None = None):
        super().__init__(target, options)
        self._stub = registry_pb2_grpc.RegistryServiceStub(self._channel)

    # -- models --------------------------------------------------------------------------

    def create_model(
        self, name: str, description: str = "", tags: Iterable[str] = ()
    ) -> registry_pb2.Model:
        """Creates a model (a named series of versions).

        Raises:
            AlreadyExists: a model has this name.
            InvalidArgument: the name is malformed.
        """
        request = registry_pb2.CreateModelRequest(
            name=name, description=description, tags=list(tags)
        )
        return self._unary(self._stub.CreateModel, request).model

    def get_model(self, name: str) -> registry_pb2.Model:
        """Returns a model by name.

        Raises:
            NotFound: no model has this name.
        """
        request = registry_pb2.GetModelRequest(name=name)
        return self._unary(self._stub.GetModel, request).model

    def list_models(self, tag: str = "", name_prefix: str = "") -> Iterator[registry_pb2.Model]:
        """Iterates over models, newest first, across pages."""
        token = ""
        while True:
            request = registry_pb2.ListModelsRequest(
                page=common_pb2.PageRequest(page_token=token), tag=tag, name_prefix=name_prefix
            )
            page = self._unary(self._stub.ListModels, request)
            yield from page.models
            token = page.next_page_token
            if not token:
                return

    # -- versions ------------------------------------------------------------------------

    def create_version(
        self,
        model: str,
        kind: int,
        *,
        parents: Iterable[RefLike] = (),
        lineage: registry_pb2.Lineage | None = None,
        metrics: Mapping[str, float] | None = None,
        metadata: Mapping[str, str] | None = None,
        description: str = "",
        create_model: bool = False,
    ) -> registry_pb2.Version:
        """Starts a new PENDING version.

        Raises:
            NotFound: the model (without `create_model`) or a parent does not exist.
            InvalidArgument: a malformed field, or a parent that is not READY.
        """
        request = registry_pb2.CreateVersionRequest(
            model=model,
            kind=kind,
            parents=[as_ref(p) for p in parents],
            lineage=lineage,
            metrics=dict(metrics or {}),
            metadata=dict(metadata or {}),
            description=description,
            create_model=create_model,
        )
        return self._unary(self._stub.CreateVersion, request).version

    def get_version(self, ref: RefLike) -> registry_pb2.Version:
        """Resolves a reference to a version.

        Raises:
            NotFound: unknown model, version or alias.
        """
        request = registry_pb2.GetVersionRequest(ref=as_ref(ref))
        return self._unary(self._stub.GetVersion, request).version

    def list_versions(
        self,
        *,
        model: str = "",
        kinds: Iterable[int] = (),
        states: Iterable[int] = (),
        tag: str = "",
        alias: str = "",
        job_id: str = "",
    ) -> Iterator[registry_pb2.Version]:
        """Iterates over versions matching the filters, newest first, across pages."""
        token = ""
        while True:
            request = registry_pb2.ListVersionsRequest(
                page=common_pb2.PageRequest(page_token=token),
                model=model,
                kinds=list(kinds),
                states=list(states),
                tag=tag,
                alias=alias,
                job_id=job_id,
            )
            page = self._unary(self._stub.ListVersions, request)
            yield from page.versions
            token = page.next_page_token
            if not token:
                return

    def commit_version(
        self,
        model: str,
        version: int,
        expected_paths: Iterable[str] = (),
        metrics: Mapping[str, float] | None = None,
    ) -> registry_pb2.Version:
        """Seals a PENDING version: verifies its manifest and makes it READY.

        Raises:
            FailedPrecondition: an expected path or a blob is missing, or it is not PENDING.
        """
        request = registry_pb2.CommitVersionRequest(
            model=model,
            version=version,
            expected_paths=list(expected_paths),
            metrics=dict(metrics or {}),
        )
        return self._unary(self._stub.CommitVersion, request).version

    def fail_version(self, model: str, version: int, reason: str) -> registry_pb2.Version:
        """Marks a PENDING version FAILED."""
        request = registry_pb2.FailVersionRequest(model=model, version=version, reason=reason)
        return self._unary(self._stub.FailVersion, request).version

    def archive_version(self, ref: RefLike) -> registry_pb2.Version:
        """Archives a version: kept for lineage, no longer aliasable, its blobs collectable."""
        request = registry_pb2.ArchiveVersionRequest(ref=as_ref(ref))
        return self._unary(self._stub.ArchiveVersion, request).version

    # -- files ---------------------------------------------------------------------------

    def stat_upload(self, sha256: str, size: int) -> registry_pb2.StatUploadResponse:
        """How much of a blob the store has: absent, a resumable prefix, or all of it."""
        request = registry_pb2.StatUploadRequest(sha256=sha256, size=size)
        return self._unary(self._stub.StatUpload, request)

    def upload_artifact(
        self, header: registry_pb2.UploadHeader, chunks: Iterable[bytes]
    ) -> registry_pb2.UploadArtifactResponse:
        """Uploads one file of a PENDING version: `header`, then `chunks` from its offset.

        Raises:
            InvalidArgument: size or digest mismatch, or a bad path.
            Unavailable: the connection broke; resume from `stat_upload`'s offset.
        """

        def messages() -> Iterator[registry_pb2.UploadArtifactRequest]:
            yield registry_pb2.UploadArtifactRequest(header=header)
            for chunk in chunks:
                yield registry_pb2.UploadArtifactRequest(chunk=chunk)

        return self._unary(self._stub.UploadArtifact, messages(), timeout=None)

    def link_artifact(
        self, model: str, version: int, entry: registry_pb2.ManifestEntry
    ) -> registry_pb2.ManifestEntry:
        """Adds an already-stored blob to a PENDING version's manifest without moving bytes."""
        request = registry_pb2.LinkArtifactRequest(model=model, version=version, entry=entry)
        return self._unary(self._stub.LinkArtifact, request).entry

    def download_artifact(
        self, ref: RefLike, path: str, offset: int = 0
    ) -> Iterator[registry_pb2.DownloadArtifactResponse]:
        """Streams one file of a READY version from `offset`.

        Raises:
            NotFound: no such version or file.
            Unavailable: the connection broke; resume from the bytes received.
        """
        request = registry_pb2.DownloadArtifactRequest(ref=as_ref(ref), path=path, offset=offset)
        return self._server_stream(self._stub.DownloadArtifact, request)

    def get_manifest(
        self, ref: RefLike, *, include_local_paths: bool = False
    ) -> registry_pb2.GetManifestResponse:
        """A READY version and its files (and where their blobs lie, when asked).

        Raises:
            NotFound: no such version.
            FailedPrecondition: the version is not READY.
        """
        request = registry_pb2.GetManifestRequest(
            ref=as_ref(ref), include_local_paths=include_local_paths
        )
        return self._unary(self._stub.GetManifest, request)

    # -- releases, evaluations, lineage ---------------------------------------------------

    def set_alias(
        self,
        model: str,
        alias: str,
        version: int,
        *,
        gate: registry_pb2.EvaluationGate | None = None,
        actor: str = "",
    ) -> registry_pb2.SetAliasResponse:
        """Points an alias at a READY version, only if `gate` passes when one is given.

        Raises:
            FailedPrecondition: the gate refused (both values in the message).
        """
        request = registry_pb2.SetAliasRequest(
            model=model, alias=alias, version=version, gate=gate, actor=actor
        )
        return self._unary(self._stub.SetAlias, request)

    def delete_alias(self, model: str, alias: str, actor: str = "") -> int:
        """Removes an alias; returns the version it pointed at."""
        request = registry_pb2.DeleteAliasRequest(model=model, alias=alias, actor=actor)
        return self._unary(self._stub.DeleteAlias, request).previous_version

    def alias_history(self, model: str, alias: str = "") -> list[registry_pb2.AliasEvent]:
        """Moves of one alias (or of every alias of the model), oldest first."""
        request = registry_pb2.ListAliasHistoryRequest(model=model, alias=alias)
        return list(self._unary(self._stub.ListAliasHistory, request).events)

    def add_evaluation(
        self, ref: RefLike, evaluation: registry_pb2.Evaluation
    ) -> registry_pb2.Evaluation:
        """Attaches an evaluation report to a READY version."""
        request = registry_pb2.AddEvaluationRequest(ref=as_ref(ref), evaluation=evaluation)
        return self._unary(self._stub.AddEvaluation, request).evaluation

    def list_evaluations(self, ref: RefLike, suite: str = "") -> list[registry_pb2.Evaluation]:
        """A version's evaluation reports, newest first."""
        request = registry_pb2.ListEvaluationsRequest(ref=as_ref(ref), suite=suite)
        return list(self._unary(self._stub.ListEvaluations, request).evaluations)

    def get_lineage(
        self,
        ref: RefLike,
        direction: int = registry_pb2.LINEAGE_DIRECTION_UNSPECIFIED,
        max_depth: int = 0,
    ) -> registry_pb2.GetLineageResponse:
        """The versions a version derives from and/or that derive from it, with edges."""
        request = registry_pb2.GetLineageRequest(
            ref=as_ref(ref), direction=direction, max_depth=max_depth
        )
        return self._unary(self._stub.GetLineage, request)

    def garbage_collect(self, dry_run: bool = False) -> registry_pb2.GarbageCollectResponse:
        """Deletes blobs no live version references (or reports what would go)."""
        request = registry_pb2.GarbageCollectRequest(dry_run=dry_run)
        return self._unary(self._stub.GarbageCollect, request, timeout=None)
