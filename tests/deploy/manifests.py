"""Reading and validating the deployment files under deploy/.

Kubernetes objects are checked against the Kubernetes schemas `kubernetes-validate` ships
(offline, strict: unknown fields are errors), the RayCluster against the schema of KubeRay's
fields in `raycluster_schema.py`, and the compose file against the compose specification
bundled with `check-jsonschema`.
"""

from __future__ import annotations

import copy
import functools
import importlib.resources
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import referencing
import yaml
from kubernetes_validate import utils as kv_utils

from tests.deploy.raycluster_schema import RAYCLUSTER

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
COMPOSE = DEPLOY / "compose.yaml"
KUSTOMIZATION = "kustomization.yaml"

# The oldest Kubernetes the manifests are meant for, and the newest the schemas know.
KUBERNETES_VERSIONS = ("1.30", kv_utils.major_minor(kubernetes_validate.latest_version()))

Resource = dict[str, Any]


def load_yaml_documents(path: Path) -> list[Resource]:
    """The non-empty YAML documents of a file."""
    with open(path) as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


def manifest_files(directory: Path = KUBERNETES) -> list[Path]:
    """The Kubernetes manifests of a directory (the kustomization is not one)."""
    return sorted(p for p in directory.glob("*.yaml") if p.name != KUSTOMIZATION)


def resources(directory: Path = KUBERNETES) -> list[Resource]:
    """Every Kubernetes object the manifests of `directory` declare."""
    return [doc for path in manifest_files(directory) for doc in load_yaml_documents(path)]


def find(objects: list[Resource], kind: str, name: str | None = None) -> list[Resource]:
    """The objects of a kind (and name, when given)."""
    return [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]


def the(objects: list[Resource], kind: str, name: str) -> Resource:
    """The one object of a kind and name.

    Raises:
        AssertionError: there is none, or more than one.
    """
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind} {name!r}, found {len(found)}"
    return found[0]


def pod_templates(obj: Resource) -> Iterator[tuple[str, Resource]]:
    """The pod templates of a Deployment or RayCluster, each with where it is."""
    name = obj["metadata"]["name"]
    if obj["kind"] == "Deployment":
        yield f"Deployment {name}", obj["spec"]["template"]
    elif obj["kind"] == "RayCluster":
        yield f"RayCluster {name} head", obj["spec"]["headGroupSpec"]["template"]
        for group in obj["spec"].get("workerGroupSpecs", []):
            yield f"RayCluster {name} group {group['groupName']}", group["template"]


def containers(obj: Resource) -> Iterator[tuple[str, Resource, Resource]]:
    """(where, container, pod spec) for each container of each pod template of `obj`."""
    for where, template in pod_templates(obj):
        spec = template["spec"]
        for container in spec["containers"]:
            yield f"{where} container {container['name']}", container, spec


def env_names(container: Resource) -> list[str]:
    """The names of the variables a container sets itself."""
    return [e["name"] for e in container.get("env", [])]


def env_value(container: Resource, name: str) -> Resource | None:
    """A container's `env` entry for `name`, or None."""
    return next((e for e in container.get("env", []) if e["name"] == name), None)


def mounts(container: Resource, spec: Resource) -> dict[str, Resource]:
    """A container's mounts by path, each with the pod volume it mounts."""
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    return {m["mountPath"]: volumes[m["name"]] for m in container.get("volumeMounts", [])}


@functools.cache
def _kubernetes_definitions(version: str) -> referencing.Registry:
    folder = f"v{version}.0-local-strict"
    path = f"kubernetes-json-schema/{folder}/_definitions.json"
    definitions = kv_utils.schema_contents(path, version)
    return referencing.Resource.from_contents(definitions) @ referencing.Registry()


def _closed(schema: Any) -> Any:
    """`schema` with every object that lists its properties closed to others."""
    if isinstance(schema, dict):
        schema = {k: _closed(v) for k, v in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    return schema


@functools.cache
def _kuberay_schema() -> dict:
    return _closed(RAYCLUSTER)


def schema_errors(obj: Resource, version: str) -> list[str]:
    """What is wrong with a Kubernetes object, against the schemas of `version` (strict).

    A RayCluster is checked against the schema of KubeRay's fields, its pod templates against the
    Kubernetes schemas of `version`.

    Raises:
        kubernetes_validate.SchemaNotFoundError: no schema knows the object's kind.
    """
    if obj.get("kind") == "RayCluster" and obj.get("apiVersion") == "ray.io/v1":
        validator = jsonschema.Draft202012Validator(
            _kuberay_schema(), registry=_kubernetes_definitions(version)
        )
        return [
            f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in validator.iter_errors(obj)
        ]
    try:
        kubernetes_validate.validate(copy.deepcopy(obj), version, strict=True)
    except kubernetes_validate.ValidationError as err:
        return [f"{'.'.join(map(str, err.absolute_path)) or '<root>'}: {err.message}"]
    return []


@functools.cache
def _compose_schema() -> dict:
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads((vendor / "compose-spec.json").read_text())


def compose_errors(document: Resource) -> list[str]:
    """What is wrong with a compose file's content, against the compose specification."""
    validator = jsonschema.Draft202012Validator(_compose_schema())
    return [
        f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(document)
    ]
