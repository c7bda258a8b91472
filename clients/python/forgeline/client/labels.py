"""Short labels of the contracts' enums: `VERSION_KIND_ADAPTER` <-> `ADAPTER` / `adapter`.

Every enum in `forgeline.v1` prefixes its values with its own name (buf's rule), and its
zero value is `<PREFIX>UNSPECIFIED`; the label is the value's name without that prefix.
"""

from __future__ import annotations

from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper


def _prefix(enum: EnumTypeWrapper) -> str:
    return enum.Name(0).removesuffix("UNSPECIFIED")


def label(enum: EnumTypeWrapper, value: int) -> str:
    """The value's name without its enum's prefix, e.g. ``"ADAPTER"``.

    Unknown numbers (from a newer server) come back as their number.
    """
    try:
        return enum.Name(value).removeprefix(_prefix(enum))
    except ValueError:
        return str(value)


def labels(enum: EnumTypeWrapper) -> dict[str, int]:
    """Every specified value by its lower-case label, e.g. ``{"base": 1, "adapter": 2}``."""
    prefix = _prefix(enum)
    return {name.removeprefix(prefix).lower(): v for name, v in enum.items() if v}


def from_label(enum: EnumTypeWrapper, text: str) -> int:
    """The value whose label is `text` (any case).

    Raises:
        ValueError: no value has that label; the message lists the ones there are.
    """
    choices = labels(enum)
    try:
        return choices[text.strip().lower()]
    except KeyError:
        raise ValueError(f"{text!r} is not one of {', '.join(choices)}") from None
