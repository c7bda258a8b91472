"""Starting a local Ray: always a new one of our own, and a failed start is tried again."""

from __future__ import annotations

import pytest

from forgeline.common import ray_cluster
from forgeline.common.ray_cluster import RayCluster


class _Ray:
    """Stands in for the `ray` module's init/shutdown to count attempts (no Ray starts)."""

    def __init__(self, failures: int):
        self.failures = failures
        self.calls: list[dict] = []
        self.shutdowns = 0

    def is_initialized(self) -> bool:
        return False

    def init(self, **kwargs) -> None:
        self.calls.append(kwargs)
        if len(self.calls) <= self.failures:
            raise ConnectionError("GCS did not bind")

    def shutdown(self) -> None:
        self.shutdowns += 1


@pytest.fixture
def fake_ray(monkeypatch):
    def install(failures: int) -> _Ray:
        import ray

        fake = _Ray(failures)
        for name in ("is_initialized", "init", "shutdown"):
            monkeypatch.setattr(ray, name, getattr(fake, name))
        return fake

    return install


def test_a_local_start_never_joins_a_cluster_left_running(fake_ray):
    fake = fake_ray(failures=0)
    RayCluster("").ensure_started()
    assert [c["address"] for c in fake.calls] == ["local"]


def test_a_failed_local_start_is_tried_again(fake_ray):
    fake = fake_ray(failures=1)
    cluster = RayCluster("")
    cluster.ensure_started()
    assert len(fake.calls) == 2 and fake.shutdowns == 1
    assert cluster._started_here


def test_a_start_that_keeps_failing_raises(fake_ray):
    fake = fake_ray(failures=ray_cluster.LOCAL_START_ATTEMPTS)
    with pytest.raises(ConnectionError, match="GCS did not bind"):
        RayCluster("").ensure_started()
    assert len(fake.calls) == ray_cluster.LOCAL_START_ATTEMPTS


def test_a_given_address_is_joined_as_given(fake_ray):
    fake = fake_ray(failures=0)
    RayCluster("10.0.0.5:6379").ensure_started()
    assert fake.calls[0]["address"] == "10.0.0.5:6379"


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1:50051", True),
        ("localhost:50051", True),
        ("[::1]:50051", True),
        ("10.0.0.7:50051", False),
        ("registry.forgeline.svc:50051", False),
    ],
)
def test_loopback_addresses_are_told_apart(address, loopback):
    assert ray_cluster.loopback_host(address) is loopback


def test_other_hosts_are_the_live_nodes_on_other_machines(fake_ray, monkeypatch):
    import ray

    fake_ray(failures=0)
    nodes = [
        {"NodeManagerAddress": "10.0.0.5", "Alive": True},  # this machine (two nodes here)
        {"NodeManagerAddress": "10.0.0.5", "Alive": True},
        {"NodeManagerAddress": "10.0.0.6", "Alive": True},
        {"NodeManagerAddress": "10.0.0.7", "Alive": False},
    ]
    monkeypatch.setattr(ray, "nodes", lambda: nodes)
    monkeypatch.setattr(ray.util, "get_node_ip_address", lambda: "10.0.0.5")
    assert RayCluster("10.0.0.5:6379").other_hosts() == ["10.0.0.6"]
