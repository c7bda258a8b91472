"""Commands whose options also answer to the spellings other trainers use.

`forgeline sft --learning_rate 2e-4` and `forgeline sft --lr 2e-4` give the same option:
`AliasedCommand` registers each option's extra spellings with the parser and lists them
in the option's help line. An option given under two spellings with different values
(`--lr 1e-4 --learning-rate 2e-4`) is refused, naming both; the parser alone would keep
the last one without a word. The same value twice is fine.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import typer
from typer.core import TyperCommand

# (option, spelling, what the spelling stores when it takes no value, or None when it does)
_Spelling = tuple[Any, str, Any]


class AliasedCommand(TyperCommand):
    """A typer command whose options have extra spellings.

    Subclasses set `aliases`, option name -> spellings that take the option's value (or,
    for an on/off flag, turn it on), and `flag_aliases`, option name -> {flag: the value
    it stands for}, e.g. `--bf16` for `--precision bf16`, `--no-packing` for False.

    Raises:
        ValueError: an alias names an option the command does not have.
    """

    aliases: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    flag_aliases: ClassVar[Mapping[str, Mapping[str, Any]]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        by_name = {p.name: p for p in self.params}
        unknown = (set(self.aliases) | set(self.flag_aliases)) - set(by_name)
        if unknown:
            raise ValueError(f"{self.name} has no option {', '.join(sorted(unknown))}")
        for name, param in by_name.items():
            extra = [*self.aliases.get(name, ())]
            for flag, value in self.flag_aliases.get(name, {}).items():
                extra.append(f"{flag} (off)" if value is False else f"{flag} ({value})")
            if extra:
                param.help = f"{param.help} Also {', '.join(extra)}."

    def make_parser(self, ctx: typer.Context):
        """The usual parser, with every extra spelling registered too."""
        parser = super().make_parser(ctx)
        for param, spelling, const in self._spellings(extra_only=True):
            _register(parser, param, spelling, param.name, const)
        return parser

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        """Parses as usual after refusing an option given different values.

        Raises:
            typer.BadParameter: a value cannot be read (as the usual parse would say).
            UsageError: two spellings of one option carry different values (`ctx.fail`).
        """
        if not ctx.resilient_parsing:
            self._refuse_disagreements(ctx, args)
        return super().parse_args(ctx, args)

    def _spellings(self, extra_only: bool) -> Iterator[_Spelling]:
        for param in self.params:
            if param.name not in self.aliases and param.name not in self.flag_aliases:
                continue
            on = True if param.is_flag else None
            if not extra_only:
                yield from ((param, s, on) for s in param.opts)
                yield from ((param, s, False) for s in param.secondary_opts)
            yield from ((param, s, on) for s in self.aliases.get(param.name, ()))
            yield from ((param, s, v) for s, v in self.flag_aliases.get(param.name, {}).items())

    def _refuse_disagreements(self, ctx: typer.Context, args: list[str]) -> None:
        # A second parse of the same arguments in which each spelling keeps its own (last)
        # value; a spelling repeated overrides itself as usual.
        parser = self.make_parser(ctx)
        spellings = list(self._spellings(extra_only=False))
        for i, (param, spelling, const) in enumerate(spellings):
            _register(parser, param, spelling, f"\0{i}", const)
        opts, _, _ = parser.parse_args(args=list(args))
        given: dict[str, dict[Any, str]] = {}  # option -> {value: how it was given}
        for i, (param, spelling, const) in enumerate(spellings):
            if f"\0{i}" in opts:
                raw = opts[f"\0{i}"]
                shown = spelling if const is not None else f"{spelling} {raw}"
                given.setdefault(param.name, {}).setdefault(_processed(ctx, param, raw), shown)
        for values in given.values():
            if len(values) > 1:
                first, second = list(values.values())[:2]
                ctx.fail(f"{first} and {second} give one option different values; keep one")


def _processed(ctx: typer.Context, param: Any, raw: Any) -> Any:
    """The value `raw` becomes for `param`, the way the usual parse would read it."""
    try:
        return param.process_value(ctx, raw)
    except typer.BadParameter as exc:
        exc.ctx, exc.param = exc.ctx or ctx, exc.param or param
        raise


def _register(parser, param, spelling: str, dest: str, const: Any) -> None:
    """Registers one spelling of `param` with `parser`, its value stored under `dest`."""
    if const is None:
        parser.add_option(obj=param, opts=[spelling], dest=dest, action="store", nargs=param.nargs)
    else:
        parser.add_option(obj=param, opts=[spelling], dest=dest, action="store_const", const=const)
