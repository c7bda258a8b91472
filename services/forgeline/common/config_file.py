"""The TOML settings file of `forgeline up` (`--config`, FORGELINE_CONFIG): its keys are
the `FORGELINE_*` settings without the prefix, read into environment variables."""

from __future__ import annotations

import tomllib
from pathlib import Path

from forgeline.common.settings import ENVIRONMENT

KNOWN = frozenset(v.name for v in ENVIRONMENT)


def read_config_file(path: Path) -> dict[str, str]:
    """The settings of a TOML config file as environment variables.

    Keys are the `FORGELINE_*` names without the prefix, in lower case (`home`,
    `log_level`, `registry_address`, ...); values are strings, numbers or booleans.

    Raises:
        ValueError: the file is unreadable or not TOML (the message names the file and the
            line), or a key is not a setting or its value not a scalar (the file and key).
    """
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as err:
        raise ValueError(f"{path}: cannot read it: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path}: not valid TOML: {err}") from None
    env = {}
    for key, value in data.items():
        name = f"FORGELINE_{key.upper()}"
        if name not in KNOWN or name == "FORGELINE_CONFIG":
            raise ValueError(f"{path}: {key!r} is not a setting (see `forgeline env`)")
        if isinstance(value, bool):
            value = str(value).lower()
        elif not isinstance(value, str | int | float):
            raise ValueError(f"{path}: {key!r} must be a string, number or boolean")
        env[name] = str(value)
    return env
