"""Local files the CLI uploads as DATASET versions: training data and calibration text."""

from __future__ import annotations

import json

import pytest
import typer

from forgeline.cli.quantize import upload_calibration
from forgeline.cli.training_inputs import upload_dataset
from forgeline.v1 import registry_pb2
from tests.trainer.datasets import facts_rows, write_jsonl


def test_a_dataset_file_is_uploaded_once(registry_server, registry_client, tmp_path):
    path = write_jsonl(tmp_path / "Law QA.jsonl", facts_rows())
    first = upload_dataset(path, "sft", "auto", registry_server.address)
    again = upload_dataset(path, "sft", "auto", registry_server.address)
    assert first == again == "law-qa:1"
    version = registry_client.get_version(first)
    assert version.kind == registry_pb2.VERSION_KIND_DATASET
    assert version.description == "dataset uploaded from Law QA.jsonl"


def test_calibration_text_is_uploaded_and_an_empty_file_is_refused(
    registry_server, registry_client, tmp_path
):
    good = tmp_path / "legal_notes.jsonl"
    good.write_text(json.dumps({"text": "A contract binds its parties."}) + "\n")
    ref = upload_calibration(good, registry_server.address)
    assert ref == "legal-notes-calibration:1"
    assert registry_client.get_version(ref).kind == registry_pb2.VERSION_KIND_DATASET

    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"text": "   "}) + "\n")
    with pytest.raises(typer.Exit) as info:
        upload_calibration(empty, registry_server.address)
    assert info.value.exit_code == 2
    assert [v.model for v in registry_client.list_versions()] == ["legal-notes-calibration"]
