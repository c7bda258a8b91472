"""Enum-valued command-line options: the contracts' enums as `--flag` choices.

An option takes the short label of an enum value (`forgeline.client.labels`), in any case
and with `-` or `_` between words: `--lr-scheduler cosine-with-restarts` and
`--lr-scheduler COSINE_WITH_RESTARTS` name the same value, and the command receives the
enum's number. `--help` shows the choices and shell completion offers them, both taken
from the enum itself, so a value added to a contract shows up by itself.
"""

from __future__ import annotations

from collections.abc import Mapping

import typer
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from forgeline.client.labels import labels


def choices(enum: EnumTypeWrapper) -> list[str]:
    """The enum's specified values as option spellings, e.g. ``["linear", "cosine", ...]``."""
    return [name.replace("_", "-") for name in labels(enum)]


def enum_value(enum: EnumTypeWrapper, text: str) -> int:
    """The enum value `text` names: its label in any case with `-` or `_` between words
    (``cosine-with-restarts``), or its full name (``LR_SCHEDULER_COSINE_WITH_RESTARTS``).

    Raises:
        ValueError: no specified value has that name; the message lists the choices.
    """
    key = text.strip().lower().replace("_", "-")
    by_spelling = dict(zip(choices(enum), labels(enum).values(), strict=True))
    for name, value in enum.items():
        if value:
            by_spelling[name.lower().replace("_", "-")] = value
    if key not in by_spelling:
        raise ValueError(f"{text!r} is not one of {', '.join(choices(enum))}")
    return by_spelling[key]


class _ChoiceParser:
    """Turns an option's text into the enum value it names, for typer's `parser=`."""

    def __init__(self, enum: EnumTypeWrapper, hints: Mapping[str, str]) -> None:
        self.enum = enum
        self.hints = hints

    def __call__(self, text: str) -> int:
        try:
            return enum_value(self.enum, text)
        except ValueError as exc:
            hint = self.hints.get(text.strip().lower().replace("_", "-"))
            raise typer.BadParameter(f"{exc}{f'; {hint}' if hint else ''}") from None


def choice_option(
    enum: EnumTypeWrapper,
    *param_decls: str,
    help: str,
    hints: Mapping[str, str] | None = None,
    **options: object,
):
    """A typer option choosing a value of a contract enum (see the module docstring).

    Args:
        enum: The protobuf enum the option selects from.
        *param_decls: The option's names, as for `typer.Option`.
        help: The option's help text; the choices are shown beside it.
        hints: What to say when a value of another trainer is given that has no
            equivalent here, by its spelling (lower case, `-` between words).
        **options: Anything else `typer.Option` takes.
    """
    spellings = choices(enum)

    def complete(incomplete: str) -> list[str]:
        return [c for c in spellings if c.startswith(incomplete)]

    return typer.Option(
        *param_decls,
        help=help,
        parser=_ChoiceParser(enum, hints or {}),
        metavar=f"[{'|'.join(spellings)}]",
        autocompletion=complete,
        **options,
    )
