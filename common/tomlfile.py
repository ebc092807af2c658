"""Reading the project's TOML files — train configs, sweep, robustness and memory files — with one
set of one-line errors: the file itself (missing, a folder, not TOML), its top-level tables, and
typed tables whose keys are checked against a frozen dataclass's annotated fields (the dataclass's
__post_init__ then checks the ranges)."""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from pathlib import Path
from typing import Any

from common.coerce import coerce
from common.errors import ConfigError


def read_toml(path: str | Path, what: str, example: str, tables: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The parsed TOML file at path; `what` names the kind of file ("config", "sweep", ...) and
    `example` a shipped one for the error messages; with `tables`, any other top-level table is an
    error naming the valid ones."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} file {path} is a folder; pass the path of a .toml {what} file "
                          f"(example: {example})")
    if not path.is_file():
        raise ConfigError(f"{what} file {path} not found; pass the path of a .toml {what} file "
                          f"(example: {example})")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    if tables is not None:
        unknown = sorted(set(raw) - set(tables))
        if unknown:
            raise ConfigError(f"{path}: unknown table(s) {', '.join(unknown)}; a {what} file has "
                              + ", ".join(f"[{t}]" for t in tables) + f" (see {example})")
    return raw


def typed_fields(cls: type, values: dict[str, Any], prefix: str, source: str,
                 exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """values checked against the annotated fields of dataclass cls (but `exclude`): an unknown key
    or a value of the wrong type is a one-line error naming prefix.key."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name not in exclude]
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(f"unknown key {prefix}.{key} in {source}; valid keys of [{prefix}]: "
                              + (", ".join(names) or "none"))
        kwargs[key] = coerce(f"{prefix}.{key}", value, hints[key])
    return kwargs


def typed(cls: type, values: dict[str, Any], prefix: str, source: str, **given: Any):
    """cls(**given, **typed_fields(values)): a typed table as its dataclass (given: the fields the
    file does not set, e.g. a name taken from the table's header)."""
    return cls(**given, **typed_fields(cls, values, prefix, source, exclude=tuple(given)))
