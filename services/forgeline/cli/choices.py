"""Enum-valued command-line options: the contracts' enums as `--flag` choices.

An option takes the short label of an enum value (`forgeline.client.labels`), in any case
and with `-` or `_` between words: `--lr-scheduler cosine-with-restarts` and
`--lr-scheduler COSINE_WITH_RESTARTS` name the same value. Help texts list the choices
from the enum itself, so a value added to a contract shows up in `--help` by itself.
"""

from __future__ import annotations

import typer
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from forgeline.client.labels import from_label, labels


def choices(enum: EnumTypeWrapper) -> list[str]:
    """The enum's specified values as option spellings, e.g. ``["linear", "cosine", ...]``."""
    return [name.replace("_", "-") for name in labels(enum)]


def choices_help(enum: EnumTypeWrapper) -> str:
    """The choices of an option, comma-separated, for its help text."""
    return ", ".join(choices(enum))


def parse_choice(enum: EnumTypeWrapper, text: str, flag: str) -> int:
    """The enum value an option's text names.

    Args:
        enum: The protobuf enum the option selects from.
        text: What the user typed (any case, `-` or `_` between words).
        flag: The option, named in the error.

    Raises:
        typer.BadParameter: no value has that label; the message lists the choices.
    """
    try:
        return from_label(enum, text.replace("-", "_"))
    except ValueError:
        raise typer.BadParameter(f"use one of {choices_help(enum)}", param_hint=flag) from None
