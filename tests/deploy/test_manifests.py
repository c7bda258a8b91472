"""The deployment files are valid: every Kubernetes object against the Kubernetes schemas
(strict, offline), the RayCluster against KubeRay's CRD schema, compose.yaml against the
compose specification; and a broken copy of each is caught, naming what is wrong."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import yaml

from tests.deploy.manifests import (
    COMPOSE,
    KUBERNETES,
    KUBERNETES_VERSIONS,
    KUSTOMIZATION,
    compose_errors,
    load_yaml_documents,
    manifest_files,
    resources,
    schema_errors,
    the,
)


def directory_errors(directory: Path, version: str) -> list[str]:
    """Schema errors of every object of every manifest in `directory`, each naming its file."""
    return [
        f"{path.name}: {obj['kind']} {obj['metadata']['name']}: {error}"
        for path in manifest_files(directory)
        for obj in load_yaml_documents(path)
        for error in schema_errors(obj, version)
    ]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_kubernetes_object_matches_its_schema(version):
    assert directory_errors(KUBERNETES, version) == []


def test_the_manifests_declare_what_a_deployment_needs():
    kinds = {obj["kind"] for obj in resources()}
    assert {"ConfigMap", "PersistentVolumeClaim", "Deployment", "Service"} <= kinds
    assert {"RayCluster", "NetworkPolicy"} <= kinds


def test_the_kustomization_lists_every_manifest():
    (kustomization,) = load_yaml_documents(KUBERNETES / KUSTOMIZATION)
    assert sorted(kustomization["resources"]) == sorted(p.name for p in manifest_files())


def test_a_broken_manifest_on_disk_fails_naming_the_file_and_field(tmp_path):
    broken = tmp_path / "kubernetes"
    shutil.copytree(KUBERNETES, broken)
    registry = broken / "registry.yaml"
    text = registry.read_text()
    assert "containerPort: 50051" in text
    registry.write_text(text.replace("containerPort: 50051", "containerPort: grpc-port"))
    errors = directory_errors(broken, KUBERNETES_VERSIONS[0])
    assert len(errors) == 1
    assert errors[0].startswith("registry.yaml: Deployment registry: ")
    assert "spec.template.spec.containers.0.ports.0.containerPort" in errors[0]


@pytest.mark.parametrize(
    ("break_it", "expected"),
    [
        pytest.param(
            lambda rc: rc["spec"]["headGroupSpec"].update(rayStartParam={}),
            "spec.headGroupSpec: Additional properties are not allowed ('rayStartParam'",
            id="unknown-field",
        ),
        pytest.param(
            lambda rc: rc["spec"]["workerGroupSpecs"][0].pop("groupName"),
            "spec.workerGroupSpecs.0: 'groupName' is a required property",
            id="missing-group-name",
        ),
        pytest.param(
            lambda rc: rc["spec"]["autoscalerOptions"].update(upscalingMode="Fast"),
            "spec.autoscalerOptions.upscalingMode: 'Fast' is not one of",
            id="bad-enum",
        ),
        # The pod templates are checked too, against the Kubernetes schemas.
        pytest.param(
            lambda rc: rc["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0][
                "resources"
            ].update(request={"cpu": "1"}),
            "spec.workerGroupSpecs.0.template.spec.containers.0.resources: Additional "
            "properties are not allowed ('request'",
            id="pod-template",
        ),
    ],
)
def test_a_broken_ray_cluster_fails_against_the_kuberay_schema(break_it, expected):
    cluster = copy.deepcopy(the(resources(), "RayCluster", "forgeline-ray"))
    break_it(cluster)
    errors = schema_errors(cluster, KUBERNETES_VERSIONS[0])
    assert len(errors) == 1
    assert errors[0].startswith(expected)


def test_an_object_of_no_known_kind_is_refused():
    import kubernetes_validate

    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        schema_errors({"apiVersion": "v1", "kind": "Pdo", "metadata": {"name": "x"}}, "1.30")


def test_the_compose_file_matches_the_compose_specification():
    assert compose_errors(yaml.safe_load(COMPOSE.read_text())) == []


def test_a_broken_compose_file_fails_naming_the_field():
    compose = yaml.safe_load(COMPOSE.read_text())
    compose["services"]["registry"]["healthcheck"]["retries"] = [3]
    compose["services"]["trainer"]["depends_on"]["registry"]["condition"] = "service_ready"
    errors = compose_errors(compose)
    assert any(e.startswith("services.registry.healthcheck.retries:") for e in errors), errors
    assert any(e.startswith("services.trainer") for e in errors), errors
