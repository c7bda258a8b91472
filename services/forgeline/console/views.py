"""Protobuf messages as the JSON the console's pages read: the contract's field names,
every field, enums by short lower-case label, references as `name:number` text."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from forgeline.client.labels import label
from forgeline.client.refs import format_ref
from forgeline.v1 import common_pb2, registry_pb2


def message_dict(message: Message) -> dict:
    """Every field of a message under the contract's names, 64-bit integers as numbers."""
    return json_format.MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
        unquote_int64_if_possible=True,
    )


def _time(ts) -> str:
    return ts.ToJsonString() if ts.seconds or ts.nanos else ""


def job_view(job: common_pb2.Job, kind: str) -> dict[str, Any]:
    """A job as the job pages show it."""
    return {
        "id": job.id,
        "kind": kind,
        "state": label(common_pb2.JobState, job.state).lower(),
        "progress": job.progress,
        "metrics": dict(job.metrics),
        "labels": dict(job.labels),
        "error": job.error,
        "outputs": [format_ref(o) for o in job.outputs],
        "create_time": _time(job.create_time),
        "start_time": _time(job.start_time),
        "end_time": _time(job.end_time),
        "last_event_seq": job.last_event_seq,
        "attempt": job.attempt,
    }


def event_view(event: common_pb2.JobEvent) -> dict[str, Any]:
    """One job event as the live job page reads it."""
    kind = event.WhichOneof("payload")
    out: dict[str, Any] = {"seq": event.seq, "time": _time(event.time), "type": kind}
    if kind == "state":
        out["state"] = label(common_pb2.JobState, event.state.state).lower()
        out["reason"] = event.state.reason
    elif kind == "progress":
        p = event.progress
        out.update(fraction=p.fraction, step=p.step, total_steps=p.total_steps)
        out["eta_seconds"] = p.eta_seconds
    elif kind == "metrics":
        out.update(step=event.metrics.step, values=dict(event.metrics.values))
    elif kind == "log":
        out["level"] = label(common_pb2.LogLevel, event.log.level).lower()
        out["message"] = event.log.message
    return out


def version_view(v: registry_pb2.Version) -> dict[str, Any]:
    """A registry version as the registry pages show it."""
    return {
        "ref": f"{v.model}:{v.number}",
        "model": v.model,
        "number": v.number,
        "kind": label(registry_pb2.VersionKind, v.kind).lower(),
        "state": label(registry_pb2.VersionState, v.state).lower(),
        "parents": [format_ref(p) for p in v.parents],
        "job_id": v.lineage.job_id,
        "metrics": dict(v.metrics),
        "metadata": dict(v.metadata),
        "description": v.description,
        "aliases": list(v.aliases),
        "file_count": v.file_count,
        "total_bytes": v.total_bytes,
        "create_time": _time(v.create_time),
        "failure_reason": v.failure_reason,
    }


def model_view(m: registry_pb2.Model) -> dict[str, Any]:
    """A registry model as the models list shows it."""
    return {
        "name": m.name,
        "description": m.description,
        "tags": list(m.tags),
        "latest_version": m.latest_version,
        "aliases": dict(m.aliases),
        "create_time": _time(m.create_time),
    }


def evaluation_view(e: registry_pb2.Evaluation) -> dict[str, Any]:
    """An evaluation report."""
    return {
        "suite": e.suite,
        "metrics": dict(e.metrics),
        "subjects": dict(e.subjects),
        "subject_samples": dict(e.subject_samples),
        "job_id": e.job_id,
        "num_samples": e.num_samples,
        "create_time": _time(e.create_time),
    }


def alias_event_view(e: registry_pb2.AliasEvent) -> dict[str, Any]:
    """One move of an alias."""
    return {
        "alias": e.alias,
        "version": e.version,
        "previous_version": e.previous_version,
        "actor": e.actor,
        "time": _time(e.time),
    }
