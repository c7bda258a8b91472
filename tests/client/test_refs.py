"""Reference parsing: `name`, `name:N`, `name@alias`, and everything that is not."""

from __future__ import annotations

import pytest

from forgeline.client.refs import RefError, format_ref, parse_ref


@pytest.mark.parametrize(
    ("text", "selector", "value"),
    [
        ("smollm2-135m-instruct", None, None),
        ("law_qa.v2", None, None),
        ("m:1", "version", 1),
        ("m:42", "version", 42),
        ("m@production", "alias", "production"),
        ("  m@staging  ", "alias", "staging"),
        ("0day@v1.2_rc-3", "alias", "v1.2_rc-3"),
    ],
)
def test_good_references_parse_and_round_trip(text, selector, value):
    ref = parse_ref(text)
    assert ref.WhichOneof("selector") == selector
    if selector:
        assert getattr(ref, selector) == value
    assert parse_ref(format_ref(ref)) == ref


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "model name"),
        ("Model", "model name"),
        ("-m", "model name"),
        ("m/evil", "model name"),
        ("../m", "model name"),
        ("m:", "version"),
        ("m:0", "version"),
        ("m:-1", "version"),
        ("m:1.5", "version"),
        ("m:99999999999", "version"),
        ("m@", "alias"),
        ("m@Prod", "alias"),
        ("m@a:1", "invalid"),
        ("m:1@a", "invalid"),
        ("a" * 129, "model name"),
    ],
)
def test_bad_references_say_which_part_is_wrong(text, complaint):
    with pytest.raises(RefError) as info:
        parse_ref(text)
    assert complaint in str(info.value)
