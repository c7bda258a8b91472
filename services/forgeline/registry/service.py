"""gRPC servicer of the registry: protobuf <-> the store and the blob store, nothing else."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter

from forgeline.client import exceptions
from forgeline.client.manifests import check_digest, check_path
from forgeline.client.refs import parse_ref
from forgeline.common.metrics import ServiceMetrics
from forgeline.common.server import ForgelineServer, Offloaded, Service, build_server
from forgeline.common.settings import Settings
from forgeline.registry.blobs import LocalBlobStore
from forgeline.registry.domain import Entry, Evaluation
from forgeline.registry.housekeeping import StoreLimits
from forgeline.registry.store import RegistryStore
from forgeline.v1 import registry_pb2, registry_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name


class TransferMetrics:
    """Artifact bytes moved by the registry (bytes a known blob did not need are not moved)."""

    def __init__(self, registry: CollectorRegistry):
        self.received = Counter(
            "forgeline_registry_received_bytes",
            "Artifact bytes received by UploadArtifact.",
            registry=registry,
        )
        self.sent = Counter(
            "forgeline_registry_sent_bytes",
            "Artifact bytes sent by DownloadArtifact.",
            registry=registry,
        )


class RegistryServicer(registry_pb2_grpc.RegistryServiceServicer):
    """Converts requests to store calls; SQL and blob bytes are handled in worker threads."""

    def __init__(self, store: RegistryStore, chunk_bytes: int, transfers: TransferMetrics):
        # Blob bytes and SQL run in pools of their own, off the event loop: a slow disk
        # never queues metadata calls behind it, nor a slow query a download.
        self._io = ThreadPoolExecutor(max_workers=8, thread_name_prefix="registry-io")
        self._sql = ThreadPoolExecutor(max_workers=4, thread_name_prefix="registry-sql")
        self.store = Offloaded(store, self._sql)
        self.blobs = store.blobs
        self.chunk_bytes = chunk_bytes
        self.transfers = transfers

    async def CreateModel(self, request, context):
        """Creates a model."""
        model = await self.store.create_model(request.name, request.description, request.tags)
        return registry_pb2.CreateModelResponse(model=model.to_pb())

    async def GetModel(self, request, context):
        """Returns a model."""
        return registry_pb2.GetModelResponse(
            model=(await self.store.get_model(request.name)).to_pb()
        )

    async def ListModels(self, request, context):
        """Lists models."""
        models, token = await self.store.list_models(
            tag=request.tag,
            name_prefix=request.name_prefix,
            page_size=request.page.page_size,
            page_token=request.page.page_token,
        )
        return registry_pb2.ListModelsResponse(
            models=[m.to_pb() for m in models], next_page_token=token
        )

    async def CreateVersion(self, request, context):
        """Starts a PENDING version."""
        version = await self.store.create_version(
            request.model,
            request.kind,
            parents=list(request.parents),
            job_id=request.lineage.job_id,
            dataset_digest=request.lineage.dataset_digest,
            spec_json=request.lineage.spec_json,
            metrics=dict(request.metrics),
            metadata=dict(request.metadata),
            description=request.description,
            create_model=request.create_model,
        )
        return registry_pb2.CreateVersionResponse(version=version.to_pb())

    async def GetVersion(self, request, context):
        """Resolves a reference."""
        return registry_pb2.GetVersionResponse(
            version=(await self.store.get_version(request.ref)).to_pb()
        )

    async def ListVersions(self, request, context):
        """Searches versions."""
        versions, token = await self.store.list_versions(
            model=request.model,
            kinds=request.kinds,
            states=request.states,
            tag=request.tag,
            alias=request.alias,
            job_id=request.job_id,
            page_size=request.page.page_size,
            page_token=request.page.page_token,
        )
        return registry_pb2.ListVersionsResponse(
            versions=[v.to_pb() for v in versions], next_page_token=token
        )

    async def StatUpload(self, request, context):
        """Says whether a blob is stored, partly uploaded, or absent."""
        check_digest(request.sha256)
        presence, offset = await self.store.stat_upload(request.sha256, request.size)
        return registry_pb2.StatUploadResponse(presence=presence, offset=offset)

    async def UploadArtifact(self, request_iterator, context):
        """Receives one file: header, then chunks; verifies and adds it to the manifest."""
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("part") != "header":
            raise exceptions.InvalidArgument("header", "the first message must be the header")
        h = first.header
        check_digest(h.sha256, "header.sha256")
        await self.store.check_upload(h.model, h.version, h.path, h.sha256, h.size)
        entry = Entry(h.path, h.sha256, h.size)
        received = 0
        if self.blobs.size_of(h.sha256) is None:
            writer = await asyncio.to_thread(self.blobs.writer, h.sha256, h.size, h.offset)
            loop = asyncio.get_running_loop()
            writing: asyncio.Future | None = None
            finished = False
            try:
                async for message in request_iterator:
                    if message.WhichOneof("part") != "chunk":
                        raise exceptions.InvalidArgument(
                            "chunk", "only chunks may follow the header"
                        )
                    # Write (and hash) one chunk while the next one is being received.
                    if writing is not None:
                        await writing
                    writing = loop.run_in_executor(self._io, writer.write, message.chunk)
                    received += len(message.chunk)
                    self.transfers.received.inc(len(message.chunk))
                if writing is not None:
                    await writing
                await loop.run_in_executor(self._io, writer.finish)
                finished = True
            finally:
                if not finished:
                    if writing is not None:
                        await asyncio.gather(writing, return_exceptions=True)
                    # Cancelled, failed or short: keep what arrived so the upload can resume.
                    await loop.run_in_executor(self._io, writer.suspend)
        await self.store.add_entry(h.model, h.version, entry, "header")
        return registry_pb2.UploadArtifactResponse(entry=entry.to_pb(), bytes_received=received)

    async def LinkArtifact(self, request, context):
        """Adds an already stored blob to a version without moving bytes."""
        e = request.entry
        check_digest(e.sha256, "entry.sha256")
        entry = await self.store.add_entry(
            request.model, request.version, Entry(e.path, e.sha256, e.size)
        )
        return registry_pb2.LinkArtifactResponse(entry=entry.to_pb())

    async def DownloadArtifact(self, request, context):
        """Streams one file of a READY version from an offset."""
        entry = await self.store.entry(request.ref, request.path)
        if request.offset > entry.size:
            raise exceptions.InvalidArgument(
                "offset", f"{request.offset} is beyond the file's {entry.size} bytes"
            )
        blob = self.blobs.open(entry.sha256)
        loop = asyncio.get_running_loop()
        try:
            offset = request.offset
            blob.seek(offset)
            # Read the next chunk while the current one is being sent.
            reading = loop.run_in_executor(self._io, blob.read, self.chunk_bytes)
            first = True
            while True:
                chunk = await reading
                if chunk:
                    reading = loop.run_in_executor(self._io, blob.read, self.chunk_bytes)
                elif not first:
                    return
                yield registry_pb2.DownloadArtifactResponse(
                    entry=entry.to_pb() if first else None, offset=offset, chunk=chunk
                )
                first = False
                offset += len(chunk)
                self.transfers.sent.inc(len(chunk))
                if not chunk:
                    return
        finally:
            blob.close()

    async def GetManifest(self, request, context):
        """Returns a READY version's files."""
        version, entries = await self.store.manifest(request.ref)
        local_paths = {}
        if request.include_local_paths:
            for e in entries:
                path = self.blobs.local_path(e.sha256)
                if path is not None:
                    local_paths[e.path] = str(path.resolve())
        return registry_pb2.GetManifestResponse(
            version=version.to_pb(), entries=[e.to_pb() for e in entries], local_paths=local_paths
        )

    async def CommitVersion(self, request, context):
        """Seals a PENDING version."""
        for i, path in enumerate(request.expected_paths):
            check_path(path, f"expected_paths[{i}]")
        version = await self.store.commit(
            request.model, request.version, request.expected_paths, dict(request.metrics)
        )
        return registry_pb2.CommitVersionResponse(version=version.to_pb())

    async def FailVersion(self, request, context):
        """Marks a PENDING version FAILED."""
        version = await self.store.fail(request.model, request.version, request.reason)
        return registry_pb2.FailVersionResponse(version=version.to_pb())

    async def ArchiveVersion(self, request, context):
        """Archives a version."""
        return registry_pb2.ArchiveVersionResponse(
            version=(await self.store.archive(request.ref)).to_pb()
        )

    async def SetAlias(self, request, context):
        """Moves an alias, through the optional gate."""
        version, previous = await self.store.set_alias(
            request.model,
            request.alias,
            request.version,
            gate=request.gate if request.HasField("gate") else None,
            actor=request.actor,
        )
        return registry_pb2.SetAliasResponse(version=version.to_pb(), previous_version=previous)

    async def DeleteAlias(self, request, context):
        """Removes an alias."""
        previous = await self.store.delete_alias(request.model, request.alias, request.actor)
        return registry_pb2.DeleteAliasResponse(previous_version=previous)

    async def ListAliasHistory(self, request, context):
        """Lists alias moves."""
        events = await self.store.alias_history(request.model, request.alias)
        return registry_pb2.ListAliasHistoryResponse(events=[e.to_pb() for e in events])

    async def AddEvaluation(self, request, context):
        """Attaches an evaluation report."""
        evaluation = await self.store.add_evaluation(
            request.ref, Evaluation.from_pb(request.evaluation)
        )
        return registry_pb2.AddEvaluationResponse(evaluation=evaluation.to_pb())

    async def ListEvaluations(self, request, context):
        """Lists a version's reports."""
        reports = await self.store.list_evaluations(request.ref, request.suite)
        return registry_pb2.ListEvaluationsResponse(evaluations=[r.to_pb() for r in reports])

    async def GetLineage(self, request, context):
        """Walks lineage."""
        root, versions, edges = await self.store.lineage(
            request.ref, request.direction, request.max_depth
        )
        return registry_pb2.GetLineageResponse(
            root=root.to_pb(),
            versions=[v.to_pb() for v in versions],
            edges=[
                registry_pb2.LineageEdge(parent=parse_ref(p), child=parse_ref(c)) for p, c in edges
            ],
        )

    async def GarbageCollect(self, request, context):
        """Deletes unreferenced blobs."""
        report = await self.store.garbage_collect(request.dry_run)
        return registry_pb2.GarbageCollectResponse(
            blobs_deleted=report.blobs_deleted,
            bytes_freed=report.bytes_freed,
            versions_expired=report.versions_expired,
            uploads_pruned=report.uploads_pruned,
        )


def blob_root(settings: Settings) -> Path:
    """Where a registry with these settings keeps its blobs (its own business: clients are
    told a blob's local path by GetManifest, never build one)."""
    return settings.service_dir / "blobs"


def create_server(settings: Settings) -> tuple[ForgelineServer, int]:
    """Builds and binds the registry server over its SQL store and local blob store."""
    limits = StoreLimits(
        max_file_bytes=settings.registry_max_file_bytes,
        quota_bytes=settings.registry_quota_bytes,
        gc_grace_seconds=settings.registry_gc_grace_seconds,
        pending_ttl_seconds=settings.registry_pending_ttl_seconds,
    )
    blobs = LocalBlobStore(blob_root(settings))
    store = RegistryStore(settings.database_url, blobs, limits)
    metrics = ServiceMetrics()
    servicer = RegistryServicer(store, settings.chunk_bytes, TransferMetrics(metrics.registry))
    server = build_server(
        settings,
        [
            Service(
                SERVICE_NAME,
                lambda s: registry_pb2_grpc.add_RegistryServiceServicer_to_server(servicer, s),
            )
        ],
        metrics,
    )

    async def close() -> None:
        store.close()

    server.on_stop.append(close)
    server.components["store"] = store
    return server, server.port
