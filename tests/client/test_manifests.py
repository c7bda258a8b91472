"""The manifest rules the registry and every client enforce: paths, digests, collisions."""

from __future__ import annotations

import pytest

from forgeline.client import exceptions
from forgeline.client.manifests import check_manifest, check_path, path_conflicts

SHA = "a" * 64


@pytest.mark.parametrize(
    "path",
    ["model.safetensors", "a/b/c.json", "tokenizer/vocab.txt", "/".join(["x" * 255] * 4), "é.txt"],
)
def test_good_paths(path):
    assert check_path(path) == path


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("", "empty"),
        ("../etc/passwd", "'..'"),
        ("a/../../b", "'..'"),
        ("a/..", "'..'"),
        ("/etc/passwd", "relative"),
        ("a//b", "empty segments"),
        ("./a", "'.'"),
        ("a/", "empty segments"),
        ("a\\..\\b", "backslash"),
        ("a\x00b", "control"),
        ("x/" * 512 + "x", "longer"),
        ("x" * 256, "segment longer than 255 bytes"),
        ("é" * 128, "segment longer than 255 bytes"),
        ("e\u0301.txt", "normal form C"),
        (".forgeline-complete", "reserved prefix"),
        ("a/.forgeline-1.lock", "reserved prefix"),
        ("a\x7fb", "control"),
    ],
)
def test_paths_that_could_escape_or_are_malformed_are_rejected(path, problem):
    with pytest.raises(exceptions.InvalidArgument) as info:
        check_path(path, "header.path")
    assert info.value.violations[0].field == "header.path"
    assert problem in info.value.violations[0].description


def test_a_file_cannot_also_be_a_folder():
    assert path_conflicts(["a", "a/b", "c/d", "c/e"]) == [("a", "a/b")]
    assert path_conflicts(["a/b/c", "a/b"]) == [("a/b", "a/b/c")]
    assert path_conflicts(["ab", "a/b"]) == []


def test_a_manifest_from_a_registry_is_checked_entry_by_entry():
    check_manifest([("config.json", SHA, 3), ("w/model.bin", SHA, 0)])
    with pytest.raises(exceptions.InvalidArgument) as info:
        check_manifest(
            [
                ("../outside", SHA, 1),
                ("ok", "not-a-digest", 1),
                ("dup", SHA, 1),
                ("dup", SHA, 1),
                ("dup/inner", SHA, 1),
                ("neg", SHA, -1),
            ]
        )
    fields = [v.field for v in info.value.violations]
    assert fields == [
        "entries[0].path",
        "entries[1].sha256",
        "entries[3].path",
        "entries[5].size",
        "entries",
    ]
