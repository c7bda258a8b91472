"""Model references: `name`, `name:3` (a version) and `name@alias`.

Names are 1-128 characters of lower-case letters, digits, '-', '_' and '.', starting with a
letter or digit; aliases follow the same rule. Services pass these references, never paths.
"""

from __future__ import annotations

import re

from forgeline.v1 import common_pb2

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")
_REF = re.compile(r"(?P<name>[^:@]*)(?::(?P<version>[^:@]*)|@(?P<alias>[^:@]*))?")


class RefError(ValueError):
    """A malformed reference; the message says what is wrong with which part."""


def check_name(value: str, what: str = "name") -> str:
    """Returns `value` if it is a valid model or alias name.

    Raises:
        RefError: it is not; the message names `what`.
    """
    if not NAME_PATTERN.fullmatch(value):
        raise RefError(
            f"{what} {value!r} is invalid: use 1-128 lower-case letters, digits, '.', '_' "
            "or '-', starting with a letter or digit"
        )
    return value


def name_from(text: str, fallback: str = "model") -> str:
    """A valid model name made from free text: lower-cased, other characters as '-'.

    `SmolLM2-135M-Instruct` becomes `smollm2-135m-instruct`; text with nothing usable
    becomes `fallback`.
    """
    name = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")[:128]
    return name or fallback


def parse_ref(text: str) -> common_pb2.ModelRef:
    """Parses `name`, `name:N` or `name@alias` into a `ModelRef`.

    Raises:
        RefError: the text is not a valid reference.
    """
    match = _REF.fullmatch(text.strip())
    if match is None:
        raise RefError(f"reference {text!r} is invalid: use name, name:VERSION or name@ALIAS")
    ref = common_pb2.ModelRef(name=check_name(match["name"], "model name"))
    if match["version"] is not None:
        version = match["version"]
        if not version.isdigit() or int(version) < 1 or int(version) > 2**32 - 1:
            raise RefError(f"reference {text!r} is invalid: version must be a positive integer")
        ref.version = int(version)
    elif match["alias"] is not None:
        ref.alias = check_name(match["alias"], "alias")
    return ref


def format_ref(ref: common_pb2.ModelRef) -> str:
    """Renders a `ModelRef` back to its text form."""
    selector = ref.WhichOneof("selector")
    if selector == "version":
        return f"{ref.name}:{ref.version}"
    if selector == "alias":
        return f"{ref.name}@{ref.alias}"
    return ref.name


def pinned(version) -> str:
    """The reference of exactly one version (`name:number`), from any message with both."""
    return f"{version.model}:{version.number}"
