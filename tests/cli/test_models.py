"""`forgeline models ...` against a real registry process."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.helpers import FORGELINE, start_service

pytestmark = pytest.mark.e2e


@pytest.fixture
def cli(tmp_path, bundled_model):
    env = {
        **os.environ,
        "FORGELINE_HOME": str(tmp_path / "home"),
        "FORGELINE_TOKEN": "tok",
        "COLUMNS": "200",
    }
    proc = start_service("registry", env)
    env["FORGELINE_REGISTRY_ADDRESS"] = proc.address

    def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [*FORGELINE, "models", *args], env=env, capture_output=True, text=True, timeout=120
        )
        assert (result.returncode == 0) == ok, result.stdout + result.stderr
        return result

    yield run
    proc.kill()


def test_models_commands_end_to_end(cli, tmp_path):
    first = cli("import-bundled")
    assert "registered smollm2-135m-instruct:1" in first.stdout
    again = cli("import-bundled")
    assert "registered smollm2-135m-instruct:1" in again.stdout  # identical content, same version
    data = tmp_path / "facts.jsonl"
    data.write_text('{"text": "hello"}\n')
    cli("push", str(data), "--name", "facts", "--kind", "dataset")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    pushed = cli(
        "push",
        str(adapter),
        "--name",
        "law",
        "--kind",
        "adapter",
        "--parent",
        "smollm2-135m-instruct:1",
        "--parent",
        "facts:1",
    )
    assert "registered law:1" in pushed.stdout
    listing = cli("list").stdout
    for expected in ("smollm2-135m-instruct:1", "BASE", "facts:1", "DATASET", "law:1", "ADAPTER"):
        assert expected in listing
    assert "law:1" in cli("list", "--kind", "adapter").stdout
    assert "facts:1" not in cli("list", "--kind", "adapter").stdout
    tree = cli("lineage", "law:1").stdout
    assert "smollm2-135m-instruct:1" in tree and "facts:1" in tree
    assert "law:1" in cli("lineage", "smollm2-135m-instruct", "--descendants").stdout
    cli("promote", "law:1", "production")
    shown = cli("show", "law@production").stdout
    assert "production" in shown and "adapter_config.json" in shown
    pulled = cli("pull", "law@production", str(tmp_path / "out")).stdout.strip()
    assert (tmp_path / "out" / "law" / "1" / "adapter_config.json").exists(), pulled


def test_bad_input_is_reported_clearly(cli, tmp_path):
    missing = cli("show", "ghost:3", ok=False)
    assert "ghost" in missing.stderr and "not found" in missing.stderr
    malformed = cli("show", "Bad:Ref", ok=False)
    assert "invalid" in malformed.stderr and "Traceback" not in malformed.stderr
    gated = cli("push", str(tmp_path), "--name", "x", "--kind", "nonsense", ok=False)
    assert "--kind" in gated.stderr
