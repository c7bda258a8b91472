"""`forgeline models import` and importing a base model on first use in `forgeline sft`."""

from __future__ import annotations

import pytest

from forgeline.client import exceptions
from forgeline.v1 import common_pb2
from tests.model_sources import add_to_hf_cache, write_tiny_model

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A Hugging Face cache holding `acme/Tiny-Chat`; the Hub is off."""
    cache = tmp_path / "hf" / "hub"
    add_to_hf_cache(cache, "acme/Tiny-Chat", write_tiny_model(tmp_path / "tiny"), commit=COMMIT)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def sft(run_cli, registry_server, model: str):
    return run_cli(
        "sft",
        "--model",
        model,
        "--dataset",
        "facts:1",
        "--plan",
        "--registry",
        registry_server.address,
    )


def test_models_import_prints_the_version_and_its_metadata(
    run_cli, registry_server, registry_client, tmp_path
):
    model = write_tiny_model(tmp_path / "Tiny")

    run = run_cli("models", "import", str(model), "--registry", registry_server.address)

    assert run.exit_code == 0, run.output
    assert "registered tiny:1" in run.output
    for line in ("source: " + str(model), "license: mit", "format: hf", "revision: sha256:"):
        assert line in run.output
    assert registry_client.get_version("tiny:1").metadata["architecture"] == "LlamaForCausalLM"


def test_models_import_takes_a_name_and_a_revision(run_cli, registry_server, registry_client, hub):
    run = run_cli(
        "models",
        "import",
        "acme/Tiny-Chat",
        "--name",
        "chat",
        "--revision",
        COMMIT,
        "--registry",
        registry_server.address,
    )

    assert run.exit_code == 0, run.output
    assert "registered chat:1" in run.output and f"revision: {COMMIT}" in run.output
    assert registry_client.get_version("chat:1").metadata["source"] == "acme/Tiny-Chat"


def test_sft_imports_a_hub_model_on_first_use_and_trains_on_that_version(
    run_cli, registry_server, registry_client, trainer, hub
):
    first = sft(run_cli, registry_server, "acme/Tiny-Chat")

    assert first.exit_code == 0, first.output
    assert "importing acme/Tiny-Chat as tiny-chat (first use)" in first.output
    assert trainer.planned[0].base_model == common_pb2.ModelRef(name="tiny-chat", version=1)
    assert registry_client.get_version("tiny-chat:1").metadata["revision"] == COMMIT

    second = sft(run_cli, registry_server, "acme/Tiny-Chat")

    assert second.exit_code == 0, second.output
    assert "first use" not in second.output
    assert trainer.planned[1].base_model == common_pb2.ModelRef(name="tiny-chat", version=1)
    assert len(list(registry_client.list_versions())) == 1


def test_sft_imports_a_local_folder_on_first_use(
    run_cli, registry_server, registry_client, trainer, tmp_path
):
    model = write_tiny_model(tmp_path / "my-base")

    run = sft(run_cli, registry_server, str(model))

    assert run.exit_code == 0, run.output
    assert f"importing {model} as my-base (first use)" in run.output
    assert trainer.planned[0].base_model == common_pb2.ModelRef(name="my-base", version=1)


def test_sft_keeps_a_registry_model_named_like_a_local_folder(
    run_cli, registry_server, registry_client, trainer, tmp_path
):
    write_tiny_model(tmp_path / "tiny")  # run_cli works in tmp_path, so "tiny" is a path too
    run_cli("models", "import", str(tmp_path / "tiny"), "--registry", registry_server.address)

    run = sft(run_cli, registry_server, "tiny")

    assert run.exit_code == 0, run.output
    assert "importing" not in run.output
    assert trainer.planned[0].base_model == common_pb2.ModelRef(name="tiny")


def test_sft_on_a_model_neither_registered_nor_cached_registers_and_submits_nothing(
    run_cli, registry_server, registry_client, trainer, hub
):
    run = sft(run_cli, registry_server, "acme/not-downloaded")

    assert run.exit_code != 0
    assert isinstance(run.exception, exceptions.Unavailable)
    assert "acme/not-downloaded" in run.exception.message
    assert trainer.planned == [] and trainer.submitted == []
    assert list(registry_client.list_versions()) == []


def test_stack_merges_an_adapter_first_and_trains_on_the_merged_version(
    run_cli, registry_server, registry_client, trainer, tmp_path, monkeypatch
):
    from forgeline.client.refs import parse_ref
    from forgeline.client.transfer import push_folder
    from forgeline.v1 import quantizer_pb2, registry_pb2

    base = push_folder(
        registry_client, write_tiny_model(tmp_path / "tiny"), "tiny", registry_pb2.VERSION_KIND_BASE
    )
    adapter_dir = tmp_path / "adapter"
    adapter_dir.mkdir()
    (adapter_dir / "adapter_config.json").write_text('{"r": 4}')
    push_folder(
        registry_client, adapter_dir, "law", registry_pb2.VERSION_KIND_ADAPTER, parents=["tiny:1"]
    )
    merges: list[quantizer_pb2.QuantizeJobSpec] = []

    def merged(spec, quantizer):
        merges.append(spec)
        return common_pb2.Job(
            state=common_pb2.JOB_STATE_SUCCEEDED, outputs=[parse_ref("law-merged:1")]
        )

    monkeypatch.setattr("forgeline.cli.training_inputs.submit_and_follow", merged)

    run = run_cli(
        "sft", "--model", "law:1", "--stack", "--dataset", "facts:1", "--plan",
        "--registry", registry_server.address,
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    assert [(m.source.name, m.source.version, m.operation) for m in merges] == [
        ("law", 1, quantizer_pb2.QUANTIZE_OPERATION_MERGE)
    ]
    (planned,) = trainer.planned
    assert (planned.base_model.name, planned.base_model.version) == ("law-merged", 1)

    # --stack on anything but an adapter is refused before any job.
    run = run_cli(
        "sft", "--model", "tiny:1", "--stack", "--dataset", "facts:1", "--plan",
        "--registry", registry_server.address,
    )  # fmt: skip
    assert run.exit_code == 2
    assert "tiny:1 is a BASE version" in run.output and len(merges) == 1
    assert base.number == 1
