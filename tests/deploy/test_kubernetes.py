"""The Kubernetes manifests would work: each rule of `rules` holds for them, and each rule
catches the regression it is there for, shown on a broken copy."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest

from tests.deploy import rules
from tests.deploy.manifests import Resource, env_value, find, resources, the


@pytest.fixture(scope="module")
def objects() -> list[Resource]:
    """The objects of deploy/kubernetes (do not modify; copy)."""
    return resources()


@pytest.mark.parametrize("rule", rules.RULES, ids=lambda rule: rule.__name__)
def test_the_manifests_follow(rule, objects):
    assert rule(objects) == []


def deployment(objects: list[Resource], name: str) -> Resource:
    """The Deployment `name`."""
    return the(objects, "Deployment", name)


def container(objects: list[Resource], name: str) -> Resource:
    """The first container of Deployment `name`."""
    return deployment(objects, name)["spec"]["template"]["spec"]["containers"][0]


def env(objects: list[Resource], name: str) -> list[Resource]:
    """The `env` list of Deployment `name`'s container."""
    return container(objects, name)["env"]


def ray(objects: list[Resource]) -> Resource:
    """The spec of the RayCluster."""
    return the(objects, "RayCluster", "forgeline-ray")["spec"]


def ray_worker(objects: list[Resource]) -> Resource:
    """The container of the RayCluster's first worker group."""
    return ray(objects)["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]


def policy(objects: list[Resource]) -> Resource:
    """The spec of the Ray cluster's NetworkPolicy."""
    return the(objects, "NetworkPolicy", "forgeline-ray")["spec"]


def _drop_service(objects: list[Resource]) -> None:
    objects.remove(the(objects, "Service", "evaluator"))


BREAKAGES: list[tuple[Callable[[list[Resource]], None], Callable, str]] = [
    (_drop_service, rules.services_deployed, "evaluator: no Service named evaluator"),
    (
        lambda o: container(o, "inference")["resources"]["requests"].pop("cpu"),
        rules.resource_requests,
        "Deployment inference container inference: no cpu request",
    ),
    (
        lambda o: ray_worker(o)["resources"]["requests"].pop(rules.GPU),
        rules.resource_requests,
        "nvidia.com/gpu requests and limits differ",
    ),
    (
        lambda o: deployment(o, "inference")["spec"].update(strategy={"type": "RollingUpdate"}),
        rules.single_gpu_recreate,
        "Deployment inference: not Recreate",
    ),
    (
        lambda o: deployment(o, "trainer")["spec"]["template"]["spec"]["volumes"][0].pop(
            "persistentVolumeClaim"
        ),
        rules.persistent_homes,
        "Deployment trainer container trainer: FORGELINE_HOME ('/data') is not on a claim",
    ),
    (
        lambda o: env(o, "trainer").append({"name": "FORGELINE_TRAIN_STORAGES", "value": "/x"}),
        rules.setting_names,
        "FORGELINE_TRAIN_STORAGES is not a Forgeline setting",
    ),
    (
        lambda o: the(o, "ConfigMap", "forgeline")["data"].update(
            FORGELINE_QUANTIZER_ADDRESS="quantiser:50053"
        ),
        rules.addresses_match_services,
        "no Service 'quantiser' for quantizer",
    ),
    (
        lambda o: the(o, "Service", "registry")["spec"]["ports"][0].update(targetPort=8080),
        rules.addresses_match_services,
        "Service registry port 50051 does not reach registry's port",
    ),
    (
        lambda o: env(o, "gateway").append({"name": "FORGELINE_GATEWAY_API_KEYS", "value": "k"}),
        rules.secrets,
        "keys in FORGELINE_GATEWAY_API_KEYS",
    ),
    (
        lambda o: env(o, "evaluator")[0].pop("valueFrom"),
        rules.secrets,
        "evaluator: FORGELINE_TOKEN is not from a Secret",
    ),
    (
        lambda o: deployment(o, "gateway")["spec"]["template"]["spec"]["volumes"][0][
            "secret"
        ].update(optional=True),
        rules.secrets,
        "the keys Secret is optional",
    ),
    (
        lambda o: container(o, "registry").update(readinessProbe={"grpc": {"port": 50051}}),
        rules.probes,
        "readinessProbe fails once TLS is on",
    ),
    (
        lambda o: container(o, "trainer")["livenessProbe"]["exec"].update(
            command=["forgeline", "health", "localhost:50052"]
        ),
        rules.probes,
        "livenessProbe does not switch to TLS",
    ),
    (
        lambda o: container(o, "quantizer").pop("livenessProbe"),
        rules.probes,
        "quantizer: no livenessProbe",
    ),
    (
        lambda o: ray_worker(o).update(command=["ray", "start", "--block"]),
        rules.ray_cluster,
        "overrides KubeRay's `ray start`",
    ),
    (
        lambda o: ray(o)["headGroupSpec"]["rayStartParams"].pop("num-cpus"),
        rules.ray_cluster,
        "the head must have num-cpus '0'",
    ),
    (
        lambda o: ray(o).pop("enableInTreeAutoscaling"),
        rules.ray_cluster,
        "min 1 != max 4 without the autoscaler",
    ),
    (
        lambda o: ray(o)["workerGroupSpecs"][0].update(minReplicas=0),
        rules.ray_cluster,
        "GPU group may scale to zero",
    ),
    (
        lambda o: the(o, "ConfigMap", "forgeline")["data"].update(
            FORGELINE_RAY_ADDRESS="forgeline-ray-head-svc:6379"
        ),
        rules.ray_cluster,
        "FORGELINE_RAY_ADDRESS is not ray://forgeline-ray-head-svc:10001",
    ),
    (
        lambda o: ray_worker(o)["volumeMounts"][1].update(mountPath="/mnt/train"),
        rules.train_storage,
        "group gpu container ray-worker: does not mount forgeline-train-storage",
    ),
    (
        lambda o: the(o, "PersistentVolumeClaim", "forgeline-train-storage")["spec"].update(
            accessModes=["ReadWriteOnce"]
        ),
        rules.train_storage,
        "claim forgeline-train-storage: not ReadWriteMany",
    ),
    (
        lambda o: env_value(container(o, "trainer"), "FORGELINE_TRAIN_STORAGE").update(
            value="s3://bucket/prefix"
        ),
        rules.train_storage,
        "FORGELINE_TRAIN_STORAGE ('s3://bucket/prefix') is not a mounted claim",
    ),
    (
        lambda o: policy(o)["ingress"][1].pop("ports"),
        rules.network_policy,
        "reaches ports all",
    ),
    (
        lambda o: policy(o)["ingress"][1]["from"][0]["podSelector"]["matchExpressions"][0][
            "values"
        ].append("gateway"),
        rules.network_policy,
        "reaches ports",
    ),
    (
        lambda o: policy(o)["ingress"].append({"from": [], "ports": [{"port": 8265}]}),
        rules.network_policy,
        "admits every source",
    ),
    (
        lambda o: policy(o)["ingress"][1]["ports"].pop(0),
        rules.network_policy,
        "cannot reach the Ray client port",
    ),
    (
        lambda o: deployment(o, "gateway")["spec"]["template"]["spec"]["securityContext"].pop(
            "runAsNonRoot"
        ),
        rules.non_root,
        "Deployment gateway: runAsNonRoot is not set",
    ),
    (
        lambda o: container(o, "gateway")["env"].remove(
            env_value(container(o, "gateway"), "FORGELINE_GATEWAY_REDIS_URL")
        ),
        rules.shared_rate_limits,
        "count limits apart (no Redis)",
    ),
    (
        lambda o: the(o, "Service", "gateway-redis")["spec"].update(selector={"app": "x"}),
        rules.shared_rate_limits,
        "selects no Redis pod",
    ),
    (
        lambda o: deployment(o, "trainer")["spec"]["template"]["metadata"].pop("annotations"),
        rules.metrics_scraped,
        "Deployment trainer: not marked for scraping",
    ),
]


@pytest.mark.parametrize(
    ("break_it", "rule", "expected"),
    BREAKAGES,
    ids=[f"{rule.__name__}-{i}" for i, (_, rule, _) in enumerate(BREAKAGES)],
)
def test_a_broken_copy_breaks_the_rule(objects, break_it, rule, expected):
    broken = copy.deepcopy(objects)
    break_it(broken)
    problems = rule(broken)
    assert any(expected in p for p in problems), problems


def test_every_rule_is_shown_to_catch_a_breakage():
    assert {rule for _, rule, _ in BREAKAGES} == set(rules.RULES)


def test_the_job_services_share_the_ray_pods_image(objects):
    images = {
        c["image"]
        for d in find(objects, "Deployment")
        for c in d["spec"]["template"]["spec"]["containers"]
        if rules.served(c) in rules.JOB_SERVICES
    }
    assert images == {ray_worker(objects)["image"]}
