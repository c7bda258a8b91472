"""The committed stubs are exactly what `make protos` generates from protos/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
GENERATED = ROOT / "clients/python/forgeline/v1"


def test_committed_stubs_match_a_fresh_generation(tmp_path):
    protos = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "protos").rglob("*.proto"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I",
            "protos",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            *protos,
        ],
        cwd=ROOT,
        check=True,
    )
    fresh = {p.name: p.read_bytes() for p in (tmp_path / "forgeline/v1").iterdir()}
    committed = {
        p.name: p.read_bytes()
        for p in GENERATED.iterdir()
        if p.name != "__init__.py" and p.suffix in {".py", ".pyi"}
    }
    stale = sorted(n for n in fresh.keys() | committed.keys() if fresh.get(n) != committed.get(n))
    assert not stale, f"stubs out of date, run `make protos`: {stale}"


def test_every_service_is_in_package_forgeline_v1():
    from forgeline.v1 import (
        evaluator_pb2,
        inference_pb2,
        quantizer_pb2,
        registry_pb2,
        trainer_pb2,
    )

    for module in (registry_pb2, trainer_pb2, quantizer_pb2, evaluator_pb2, inference_pb2):
        assert module.DESCRIPTOR.package == "forgeline.v1"
        assert len(module.DESCRIPTOR.services_by_name) == 1
