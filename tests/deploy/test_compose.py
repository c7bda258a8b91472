"""deploy/compose.yaml would work: one image build reused, every service health-checked,
addresses that reach the services, a GPU profile for inference, a gateway that does not
start without its keys file and a console that does not start without its token."""

from __future__ import annotations

import copy

import pytest
import yaml

from forgeline.common.settings import DEFAULT_PORTS, HTTP_SERVICES, ServiceName
from tests.deploy import rules
from tests.deploy.manifests import COMPOSE, Resource

TEXT = COMPOSE.read_text()
# `$$` is compose's escape for `$`: the shell, not compose, reads the variable.
COMPOSE_TLS_SWITCH = "$" + rules.TLS_SWITCH


@pytest.fixture
def compose() -> Resource:
    """compose.yaml, loaded (anchors and merge keys resolved)."""
    return yaml.safe_load(TEXT)


def served(service: Resource) -> ServiceName | None:
    """The Forgeline service a compose service runs, or None."""
    return rules.served({"args": service.get("command", [])})


def health_problems(compose: Resource) -> list[str]:
    """Services without a health check, or whose check asks another port or ignores TLS."""
    problems = []
    for name, service in compose["services"].items():
        test = service.get("healthcheck", {}).get("test", [])
        command = " ".join(test)
        if not test:
            problems.append(f"{name}: no healthcheck")
        elif served(service) in HTTP_SERVICES:
            if f"localhost:{DEFAULT_PORTS[served(service)]}/health" not in command:
                problems.append(f"{name}: checks another port than its own")
        else:
            if f"localhost:{DEFAULT_PORTS[served(service)]}" not in command:
                problems.append(f"{name}: checks another port than its own")
            if COMPOSE_TLS_SWITCH not in command:
                problems.append(f"{name}: does not switch to TLS")
    return problems


def address_problems(compose: Resource) -> list[str]:
    """FORGELINE_<SERVICE>_ADDRESS values that no running service answers at."""
    problems = []
    for name, service in compose["services"].items():
        for key, value in service.get("environment", {}).items():
            if key.startswith("FORGELINE_") and key not in rules.SETTINGS:
                problems.append(f"{name}: {key} is not a Forgeline setting")
                continue
            if not (key.endswith("_ADDRESS") and key.startswith("FORGELINE_")):
                continue
            target = ServiceName[key.removeprefix("FORGELINE_").removesuffix("_ADDRESS")]
            host, _, port = value.rpartition(":")
            answering = [
                n
                for n, s in compose["services"].items()
                if served(s) is target and host in {n, *_aliases(s)}
            ]
            if not answering or port != str(DEFAULT_PORTS[target]):
                problems.append(f"{name}: {key}={value} reaches no {target}")
    return problems


def _aliases(service: Resource) -> list[str]:
    networks = service.get("networks", {})
    return [a for n in networks.values() for a in (n or {}).get("aliases", [])]


def test_every_service_is_health_checked_on_its_own_port(compose):
    assert health_problems(compose) == []


def test_the_addresses_reach_the_services(compose):
    assert address_problems(compose) == []


def test_a_service_without_a_healthcheck_is_caught(compose):
    broken = copy.deepcopy(compose)
    del broken["services"]["evaluator"]["healthcheck"]
    broken["services"]["trainer"]["healthcheck"]["test"] = ["CMD", "forgeline", "health", "x"]
    console = broken["services"]["console"]["healthcheck"]
    console["test"] = [t.replace("localhost:8080", "localhost:8000") for t in console["test"]]
    problems = health_problems(broken)
    assert "evaluator: no healthcheck" in problems
    assert "trainer: checks another port than its own" in problems
    assert "console: checks another port than its own" in problems


def test_a_wrong_address_is_caught(compose):
    broken = copy.deepcopy(compose)
    broken["services"]["registry"]["environment"]["FORGELINE_TRAINER_ADDRESS"] = "trainer:5052"
    broken["services"]["registry"]["environment"]["FORGELINE_TRAINR_ADDRESS"] = "trainer:50052"
    problems = address_problems(broken)
    assert "registry: FORGELINE_TRAINER_ADDRESS=trainer:5052 reaches no trainer" in problems
    assert "registry: FORGELINE_TRAINR_ADDRESS is not a Forgeline setting" in problems


def test_one_build_definition_serves_every_service(compose):
    assert TEXT.count("dockerfile:") == 1
    builds = [s["build"] for s in compose["services"].values()]
    assert len(builds) == len(compose["services"])
    assert {(b["context"], b["dockerfile"]) for b in builds} == {("..", "deploy/Dockerfile")}


def test_the_gpu_profile_runs_inference_on_a_gpu_under_the_same_name(compose):
    services = compose["services"]
    by_profile = {tuple(s.get("profiles", ())): n for n, s in services.items() if "profiles" in s}
    assert set(by_profile) == {("cpu",), ("gpu",)}
    cpu, gpu = services[by_profile[("cpu",)]], services[by_profile[("gpu",)]]
    assert served(cpu) is served(gpu) is ServiceName.INFERENCE
    assert gpu["build"]["args"] == {"DEVICE": "gpu"}
    assert gpu["image"] == "forgeline:gpu"
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"]
    assert "inference" in _aliases(gpu)
    # The gateway waits for whichever of the two runs.
    depends = services["gateway"]["depends_on"]
    assert {n for n, d in depends.items() if d["required"] is False} == {
        by_profile[("cpu",)],
        by_profile[("gpu",)],
    }


def test_the_gateway_starts_only_with_a_keys_file(compose):
    gateway = compose["services"]["gateway"]
    assert gateway["secrets"] == ["gateway-keys"]
    assert gateway["environment"]["FORGELINE_GATEWAY_KEYS_FILE"] == "/run/secrets/gateway-keys"
    assert "FORGELINE_GATEWAY_API_KEYS" not in gateway["environment"]
    # `${NAME:?message}`: compose refuses to run while the variable is unset or empty.
    assert compose["secrets"]["gateway-keys"]["file"].startswith("${FORGELINE_GATEWAY_KEYS:?")
    assert compose["x-service"]["environment"]["FORGELINE_TOKEN"].startswith("${FORGELINE_TOKEN:?")


def test_the_job_services_wait_for_a_healthy_registry(compose):
    for name in ("trainer", "quantizer", "evaluator", "inference", "inference-gpu"):
        depends = compose["services"][name]["depends_on"]
        assert depends["registry"] == {"condition": "service_healthy"}, name


def test_the_console_starts_only_with_its_token_and_reaches_the_gateway(compose):
    console = compose["services"]["console"]
    assert served(console) is ServiceName.CONSOLE
    # Published beyond loopback, the console refuses to start without a token; compose
    # refuses first, naming the variable.
    assert console["environment"]["FORGELINE_CONSOLE_TOKEN"].startswith(
        "${FORGELINE_CONSOLE_TOKEN:?"
    )
    assert console["ports"] == ["${FORGELINE_CONSOLE_PORT:-8080}:8080"]
    assert console["depends_on"]["registry"] == {"condition": "service_healthy"}
