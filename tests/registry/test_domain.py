"""Artifact path and name validation, and manifest digests."""

from __future__ import annotations

import pytest

from forgeline.client import exceptions
from forgeline.registry.domain import Entry, check_model_name, check_path, manifest_digest


@pytest.mark.parametrize(
    "path", ["model.safetensors", "a/b/c.json", "tokenizer/vocab.txt", "x" * 1024, "é.txt"]
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
        ("x" * 1025, "longer"),
    ],
)
def test_paths_that_could_escape_or_are_malformed_are_rejected(path, problem):
    with pytest.raises(exceptions.InvalidArgument) as info:
        check_path(path, "header.path")
    assert info.value.violations[0].field == "header.path"
    assert problem in info.value.violations[0].description


@pytest.mark.parametrize("name", ["Bad", "a b", "a/b", "", "-x", "x" * 129])
def test_bad_names_name_the_field(name):
    with pytest.raises(exceptions.InvalidArgument) as info:
        check_model_name(name, "model")
    assert info.value.violations[0].field == "model"


def test_manifest_digest_ignores_order_and_sees_every_field():
    a, b = Entry("a", "1" * 64, 1), Entry("b", "2" * 64, 2)
    assert manifest_digest([a, b]) == manifest_digest([b, a])
    assert manifest_digest([a, b]) != manifest_digest([a, Entry("b", "2" * 64, 3)])
    assert manifest_digest([a, b]) != manifest_digest([a, Entry("c", "2" * 64, 2)])
