"""Checks of config values: types read from TOML against annotated dataclass field types (coerce),
and the range / choice checks every config dataclass runs in __post_init__ (check, choice)."""

from __future__ import annotations

import math
import typing
from typing import Any

from common.errors import ConfigError


def coerce(name: str, value: Any, type_: Any) -> Any:
    """Check `value` against the annotated field type; ints are accepted for floats."""
    origin = typing.get_origin(type_)
    if origin is tuple:
        (item_type, _) = typing.get_args(type_)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name} must be a list of {item_type.__name__}, got {value!r}")
        return tuple(coerce(f"{name}[{i}]", v, item_type) for i, v in enumerate(value))
    if type_ is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {value!r}")
        return value
    if type_ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        return value
    if type_ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{name} must be a finite number, got {value!r}")
        return float(value)
    if type_ is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string (quote it in TOML), got {value!r}")
        return value
    raise TypeError(f"unsupported field type {type_!r} for {name}")  # programming error


def check(ok: bool, name: str, rule: str, value: Any) -> None:
    """Raise ConfigError("<field> must be <rule>, got <value>") unless ok."""
    if not ok:
        raise ConfigError(f"{name} must be {rule}, got {value!r}")


def choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    """check that value is one of choices, naming them."""
    check(value in choices, name, "one of " + ", ".join(repr(c) for c in choices), value)
