"""Sweep files: parse a sweep TOML (base config, fixed overrides, variants, grid, seeds), expand it
into runs, and key each run by the sha256 of its fully resolved config (canonical JSON)."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onchip_ff import config
from onchip_ff.config import Config
from common.errors import ConfigError
from common.tomlfile import read_toml

TABLES = ("sweep", "fixed", "variants", "grid")
SWEEP_KEYS = ("name", "base", "seeds")
EXAMPLE = "experiments/configs/sweep_example.toml"


@dataclass(frozen=True)
class Run:
    key: str  # sha256 hex digest of config_json
    position: int  # order within the sweep: seed-major, then variants, then the grid
    overrides: tuple[str, ...]  # `section.key=value` strings applied to the base config
    config_json: str  # canonical JSON of config.to_dict(cfg): sorted keys, no spaces
    label: str = ""  # what sets this run apart: its variant, grid point and seed overrides


@dataclass(frozen=True)
class Sweep:
    name: str
    path: Path
    base: Path
    runs: tuple[Run, ...]
    duplicates: int  # expanded runs whose resolved config equals an earlier run's (dropped)
    task: str = "experiments.runner.worker:execute_run"  # "module:function(config_json, threads)"


def canonical_json(cfg: Config) -> str:
    """The fully resolved config as JSON with sorted keys and no whitespace: equal configs give
    equal text."""
    return json.dumps(config.to_dict(cfg), sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def config_key(cfg: Config) -> str:
    """sha256 hex digest of canonical_json(cfg): the identity of a run in the store."""
    return hashlib.sha256(canonical_json(cfg).encode()).hexdigest()


def config_from_json(text: str) -> Config:
    return config.from_dict(json.loads(text), "stored run config", stored=True)


def current_key(config_json: str) -> tuple[str, str] | None:
    """(key, canonical JSON) the current code gives a stored run config; None when the text is not
    a valid train config any more (a removed field) or not one at all (e.g. a memory point)."""
    try:
        raw = json.loads(config_json)
        if not isinstance(raw, dict) or not raw.keys() <= set(config.SECTIONS):
            return None
        cfg = config.from_dict(raw, "stored run config", stored=True)
    except (ConfigError, ValueError, TypeError):
        return None
    return config_key(cfg), canonical_json(cfg)


def as_current(row: dict[str, Any]) -> tuple[str, str]:
    """(key, config JSON) of a stored run as the current code computes them (what rekey would
    write), or the row's own when its config is no longer a valid train config."""
    now = current_key(row["config"])
    return now if now is not None else (row["key"], row["config"])


def toml_value(value: Any, name: str) -> str:
    """One-line TOML text of a scalar or list, the form `--set name=VALUE` reads back."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v, name) for v in value) + "]"
    raise ConfigError(f"{name} = {value!r}: sweep values must be numbers, strings, booleans or lists")


def _flatten(table: dict[str, Any], where: str, prefix: str = "") -> dict[str, Any]:
    """{"train": {"lr": x}} and {"train.lr": x} both become {"train.lr": x}; checks the key shape."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            out.update(_flatten(value, where, name))
            continue
        parts = name.split(".")
        if not (len(parts) == 2 or (len(parts) == 3 and parts[0] == "hardware")) or not all(parts):
            raise ConfigError(f"{where}: key {name!r} must be section.key (e.g. \"train.lr\") or "
                              "hardware.<noise model>.key")
        out[name] = value
    return out


def _table(raw: dict[str, Any], name: str, path: Path) -> dict[str, Any]:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: [{name}] must be a table of key = value lines")
    return value


def _seeds(head: dict[str, Any], path: Path) -> list[int | None]:
    seeds = head.get("seeds")
    if seeds is None:
        return [None]  # keep the base config's train.seed
    if (not isinstance(seeds, list) or not seeds or len(set(seeds)) != len(seeds)
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
        raise ConfigError(f"{path}: sweep.seeds must be a non-empty list of distinct integers >= 0, "
                          f"got {seeds!r}")
    return seeds


def _config_path(text: Any, path: Path, where: str) -> Path:
    """A config file named relative to the sweep file (or absolute); must exist."""
    if not isinstance(text, str) or not text:
        raise ConfigError(f"{path}: {where} must name a config file, relative to the sweep file "
                          "(e.g. \"df_mlp_fmnist.toml\")")
    found = Path(text) if Path(text).is_absolute() else path.parent / text
    if not found.is_file():
        raise ConfigError(f"{path}: {where} {text!r} not found (looked for {found}); the path is "
                          "relative to the sweep file")
    return found


def _variants(raw: dict[str, Any], path: Path) -> list[tuple[Path | None, dict[str, Any]]]:
    """[(the variant's own base config or None, its overrides)]; `base = "file.toml"` in a variant
    replaces sweep.base for that variant's runs."""
    variants = raw.get("variants", [{}])
    if not isinstance(variants, list) or not variants or not all(isinstance(v, dict) for v in variants):
        raise ConfigError(f"{path}: variants must be [[variants]] tables of overrides")
    out = []
    for i, v in enumerate(variants):
        v = dict(v)
        where = f"[[variants]] #{i + 1}"
        base = _config_path(v.pop("base"), path, f"{where} base") if "base" in v else None
        out.append((base, _flatten(v, f"{path} {where}")))
    return out


def load_sweep(path: str | Path, extra_overrides: list[str] = ()) -> Sweep:
    """Parse and fully expand a sweep file; every run's config is validated here, before anything
    is written. extra_overrides (`section.key=value`, from `--set`) apply to every run like [fixed]
    entries and replace them. Precedence: base < [fixed] < --set < variant < grid point < seed."""
    path = Path(path)
    raw = read_toml(path, "sweep", EXAMPLE, TABLES)
    head = _table(raw, "sweep", path)
    bad = sorted(set(head) - set(SWEEP_KEYS))
    if bad:
        raise ConfigError(f"{path}: unknown key(s) sweep.{', sweep.'.join(bad)}; valid: "
                          + ", ".join(f"sweep.{k}" for k in SWEEP_KEYS))
    name = head.get("name", path.stem)
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{path}: sweep.name must be a non-empty string, got {name!r}")
    base = _config_path(head.get("base"), path, "sweep.base")
    seeds = _seeds(head, path)
    fixed = _flatten(_table(raw, "fixed", path), f"{path} [fixed]")
    for text in extra_overrides:  # --set replaces [fixed] values
        parts, value = config.parse_override(text)
        fixed[".".join(parts)] = value
    variants = _variants(raw, path)
    grid = _flatten(_table(raw, "grid", path), f"{path} [grid]")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{path}: grid.{key} must be a non-empty list of values; put single "
                              "values in [fixed]")
        if key in fixed:
            raise ConfigError(f"{path}: {key} is both in [grid] and in [fixed]/--set; keep one")
    if seeds != [None] and any("train.seed" in t for t in (fixed, grid, *(v for _, v in variants))):
        raise ConfigError(f"{path}: train.seed is set by sweep.seeds; remove it from the other tables")
    for i, (_, variant) in enumerate(variants):
        clash = sorted(set(variant) & set(grid))
        if clash:
            raise ConfigError(f"{path}: [[variants]] #{i + 1} sets {', '.join(clash)}, also in "
                              "[grid]; keep one")
    names = list(grid)
    combos = list(itertools.product(*(grid[n] for n in names)))
    runs: list[Run] = []
    seen: set[str] = set()
    duplicates = 0
    for seed in seeds:
        for variant_base, variant in variants:
            for combo in combos:
                chosen = {**variant, **dict(zip(names, combo))}
                if seed is not None:
                    chosen["train.seed"] = seed
                overrides = [f"{k}={toml_value(v, k)}" for k, v in {**fixed, **chosen}.items()]
                label = " ".join(([f"base={variant_base.name}"] if variant_base else [])
                                 + [f"{k}={toml_value(v, k)}" for k, v in chosen.items()])
                try:
                    cfg = config.load(variant_base or base, overrides)
                except ConfigError as exc:
                    raise ConfigError(f"sweep {path}, run {label or '(base)'}: {exc}") from None
                key = config_key(cfg)
                if key in seen:
                    duplicates += 1
                    continue
                seen.add(key)
                runs.append(Run(key, len(runs), tuple(overrides), canonical_json(cfg), label))
    return Sweep(name.strip(), path, base, tuple(runs), duplicates)
