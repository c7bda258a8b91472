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
