"""The trainer service's start checks: what keeps workers on other machines from training."""

from __future__ import annotations

from forgeline.common.settings import ServiceName, Settings
from forgeline.trainer.service import _remote_node_warnings


def settings(tmp_path, registry: str, storage: str = "") -> Settings:
    return Settings.load(
        "trainer",
        home=tmp_path,
        addresses={ServiceName.REGISTRY: registry},
        train_storage=storage,
        ray_address="10.0.0.5:6379",
    )


def test_one_machine_needs_nothing(tmp_path):
    assert _remote_node_warnings([], settings(tmp_path, "127.0.0.1:50051")) == []


def test_other_machines_need_a_reachable_registry_and_shared_storage(tmp_path):
    warnings = _remote_node_warnings(["10.0.0.6"], settings(tmp_path, "127.0.0.1:50051"))
    assert len(warnings) == 2
    assert "10.0.0.6" in warnings[0] and "FORGELINE_REGISTRY_ADDRESS" in warnings[0]
    assert "FORGELINE_TRAIN_STORAGE" in warnings[1]


def test_a_reachable_registry_and_shared_storage_are_enough(tmp_path):
    ok = settings(tmp_path, "10.0.0.5:50051", "s3://bucket/train")
    assert _remote_node_warnings(["10.0.0.6"], ok) == []
