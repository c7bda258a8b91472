"""Model name validation and manifest digests (paths: tests/client/test_manifests.py)."""

from __future__ import annotations

import pytest

from forgeline.client import exceptions
from forgeline.registry.domain import Entry, check_model_name, manifest_digest


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
