"""Robustness files: methods x noise parameters x levels x seeds, expanded into runs for the results
store (experiments/runner). Every point of the curves is one run keyed by the hash of its resolved
config; points whose configs coincide share a run. Per method and seed one float-reference run (torch
backend) gives the dashed line and, with [reference] deploy_preset, the drift curves."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onchip_ff import config
from common.errors import ConfigError
from common.tomlfile import read_toml
from experiments.runner.sweep import Run, Sweep, _flatten, _seeds, canonical_json, config_key, toml_value

EXAMPLE = "experiments/configs/robustness_fmnist.toml"
TABLES = ("robustness", "methods", "fixed", "reference", "parameter")
HEAD_KEYS = ("name", "seeds")
REFERENCE_KEYS = ("deploy_preset", "times_s", "draws")
METHOD_KEYS = ("config", "set")
PARAMETER_KEYS = ("key", "noise_model", "levels", "xlabel", "title", "set", "harsher")
FLOAT = "float_reference"  # the `parameter` column of reference rows


@dataclass(frozen=True)
class Parameter:
    keys: tuple[str, ...]  # config fields set to the level (e.g. hardware.adc_bits)
    noise_model: str  # what the parameter belongs to, e.g. gaussian_weight, adc, fixed_point
    levels: tuple[Any, ...]
    xlabel: str  # x-axis label, with its unit
    title: str  # panel title
    overrides: tuple[str, ...]  # `section.key=value` that put the run on the right hardware
    harsher: str = "higher"  # which end of the levels has more hardware error ("lower" for bits)

    @property
    def name(self) -> str:  # the `parameter` column: the config field(s) swept
        return "+".join(self.keys)


@dataclass(frozen=True)
class Point:
    """One point of one curve: a run of `method` at `level` of `parameter` (or the float reference
    when parameter is None), with train.seed = seed."""

    method: str
    parameter: Parameter | None
    level: Any
    seed: int
    key: str  # store key of the run


@dataclass(frozen=True)
class Spec:
    name: str
    path: Path
    methods: dict[str, Path]  # method label -> base config
    parameters: tuple[Parameter, ...]
    seeds: tuple[int, ...]
    points: tuple[Point, ...]
    sweep: Sweep  # the distinct runs, for experiments.runner
    deploy_preset: str  # "" = no drift curves
    method_sets: dict[str, tuple[str, ...]] = None  # method label -> its own `section.key=value`

    def method_config(self, method: str) -> dict[str, Any]:
        """The resolved config (nested dict) of the method's float reference; {} when the study holds
        no run of it."""
        point = next((p for p in self.points if p.method == method and p.parameter is None), None)
        if point is None:
            return {}
        return json.loads(next(r.config_json for r in self.sweep.runs if r.key == point.key))

    def method_setting(self, method: str, key: str) -> Any:
        """The value of config field `key` (e.g. "train.epochs") in the method's float reference,
        or None when the study holds no run of it."""
        section, field = key.split(".", 1)
        return self.method_config(method).get(section, {}).get(field)


def _table(raw: dict[str, Any], name: str, path: Path, allowed: tuple[str, ...] | None = None) -> dict:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: [{name}] must be a table of key = value lines")
    if allowed is not None:
        bad = sorted(set(value) - set(allowed))
        if bad:
            raise ConfigError(f"{path}: unknown key(s) {name}.{', '.join(bad)}; valid: "
                              + ", ".join(f"{name}.{k}" for k in allowed))
    return value


def _overrides(table: dict[str, Any]) -> list[str]:
    return [f"{k}={toml_value(v, k)}" for k, v in table.items()]


def _parameter(raw: Any, i: int, path: Path) -> Parameter:
    where = f"{path} [[parameter]] #{i + 1}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table")
    bad = sorted(set(raw) - set(PARAMETER_KEYS))
    if bad:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(bad)}; valid: {', '.join(PARAMETER_KEYS)}")
    keys = raw.get("key")
    keys = [keys] if isinstance(keys, str) else keys
    if not isinstance(keys, list) or not keys or not all(isinstance(k, str) and k for k in keys):
        raise ConfigError(f"{where}: key must name the config field swept (e.g. \"hardware.adc_bits\"), "
                          "or a list of fields all set to the level")
    _flatten(dict.fromkeys(keys, 0), where)  # checks the section.key shape
    levels = raw.get("levels")
    if (not isinstance(levels, list) or not levels or len(set(map(repr, levels))) != len(levels)
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in levels)):
        raise ConfigError(f"{where}: levels must be a non-empty list of distinct numbers, got {levels!r}")
    noise_model = raw.get("noise_model")
    if not isinstance(noise_model, str) or not noise_model:
        raise ConfigError(f"{where}: noise_model must name what the parameter belongs to, e.g. "
                          "\"gaussian_weight\" or \"adc\"")
    xlabel = raw.get("xlabel", keys[0])
    title = raw.get("title", " + ".join(keys))
    if not isinstance(xlabel, str) or not isinstance(title, str):
        raise ConfigError(f"{where}: xlabel and title must be strings")
    sets = raw.get("set", {})
    if not isinstance(sets, dict):
        raise ConfigError(f"{where}: set must be a table of \"section.key\" = value (the hardware of "
                          "this curve), e.g. [parameter.set] \"hardware.backend\" = \"sim\"")
    sets = _flatten(sets, f"{where} set")
    clash = sorted(set(keys) & set(sets))
    if clash:
        raise ConfigError(f"{where}: {', '.join(clash)} is both swept and in set; keep one")
    harsher = raw.get("harsher", "higher")
    if harsher not in ("higher", "lower"):
        raise ConfigError(f"{where}: harsher must be \"higher\" (more error at higher levels, e.g. a "
                          f"noise std) or \"lower\" (e.g. bits), got {harsher!r}")
    return Parameter(tuple(keys), noise_model, tuple(sorted(levels)), xlabel, title,
                     tuple(_overrides(sets)), harsher)


def _method(entry: Any, label: str, path: Path) -> tuple[str, tuple[str, ...]]:
    """(base config, the method's own overrides) of one [methods] entry: a config path, or a table
    {config = "file.toml", set = {"section.key" = value, ...}} (e.g. a method's own epochs)."""
    if isinstance(entry, str) and entry:
        return entry, ()
    if not isinstance(entry, dict):
        raise ConfigError(f"{path}: methods.{label} must be the path of a config file, or a table "
                          "{config = \"file.toml\", set = {\"train.epochs\" = 10}}")
    bad = sorted(set(entry) - set(METHOD_KEYS))
    if bad:
        raise ConfigError(f"{path}: unknown key(s) methods.{label}.{', '.join(bad)}; valid: "
                          + ", ".join(METHOD_KEYS))
    base, sets = entry.get("config"), entry.get("set", {})
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{path}: methods.{label}.config must be the path of a config file")
    if not isinstance(sets, dict):
        raise ConfigError(f"{path}: methods.{label}.set must be a table of \"section.key\" = value")
    sets = _flatten(sets, f"{path} methods.{label}.set")
    if "train.seed" in sets:
        raise ConfigError(f"{path}: train.seed is set by robustness.seeds; remove it from "
                          f"methods.{label}.set")
    return base, tuple(_overrides(sets))


def load_spec(path: str | Path, extra_overrides: list[str] = ()) -> Spec:
    """Parse and expand a robustness file; every run's config is validated before anything runs.
    Precedence: method's base config < [fixed] < --set < the parameter's set < the method's own
    set < level < seed (a method's set, e.g. its epochs or weight headroom, holds on every curve;
    its hardware.* entries on the simulated points only, the float reference has no devices)."""
    path = Path(path)
    raw = read_toml(path, "robustness", EXAMPLE, TABLES)
    head = _table(raw, "robustness", path, HEAD_KEYS)
    name = head.get("name", path.stem)
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{path}: robustness.name must be a non-empty string, got {name!r}")
    seeds = _seeds(head, path)
    if seeds == [None]:
        raise ConfigError(f"{path}: robustness.seeds is required, e.g. seeds = [0, 1, 2]")
    methods_raw = _table(raw, "methods", path)
    if not methods_raw:
        raise ConfigError(f"{path}: [methods] must map each method label to its base config, e.g. "
                          "df = \"df_mlp_fmnist.toml\"")
    methods, method_sets = {}, {}
    for label, entry in methods_raw.items():
        base, sets = _method(entry, label, path)
        methods[label] = Path(base) if Path(base).is_absolute() else path.parent / base
        if not methods[label].is_file():
            raise ConfigError(f"{path}: methods.{label} = {base!r} not found (looked for "
                              f"{methods[label]}); the path is relative to the robustness file")
        method_sets[label] = sets
    fixed = _flatten(_table(raw, "fixed", path), f"{path} [fixed]")
    for text in extra_overrides:
        parts, value = config.parse_override(text)
        fixed[".".join(parts)] = value
    if "train.seed" in fixed:
        raise ConfigError(f"{path}: train.seed is set by robustness.seeds; remove it from [fixed]/--set")
    ref = _table(raw, "reference", path, REFERENCE_KEYS)
    deploy_preset = ref.get("deploy_preset", "")
    ref_overrides = ["hardware.backend=torch"]
    if deploy_preset:
        ref_overrides += [f"deploy.preset={toml_value(deploy_preset, 'deploy_preset')}"]
        ref_overrides += [f"deploy.{k}={toml_value(ref[k], k)}" for k in ("times_s", "draws") if k in ref]
    params_raw = raw.get("parameter", [])
    if not isinstance(params_raw, list):
        raise ConfigError(f"{path}: parameters are [[parameter]] tables")
    parameters = tuple(_parameter(p, i, path) for i, p in enumerate(params_raw))
    names = [p.name for p in parameters]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: a parameter is listed twice: {names}")
    for p in parameters:
        clash = sorted(set(p.keys) & set(fixed))
        if clash:
            raise ConfigError(f"{path}: {', '.join(clash)} is swept and also in [fixed]/--set; keep one")
        for label, sets in method_sets.items():
            clash = sorted(set(p.keys) & {o.split("=", 1)[0] for o in sets})
            if clash:
                raise ConfigError(f"{path}: {', '.join(clash)} is swept and also set by methods.{label}; "
                                  "keep one")

    runs: dict[str, Run] = {}
    points: list[Point] = []

    def add(method: str, overrides: list[str], label: str) -> str:
        overrides = _overrides(fixed) + overrides
        try:
            cfg = config.load(methods[method], overrides)
        except ConfigError as exc:
            raise ConfigError(f"robustness {path}, {method} {label}: {exc}") from None
        key = config_key(cfg)
        if key not in runs:
            runs[key] = Run(key, len(runs), tuple(overrides), canonical_json(cfg), f"{method} {label}")
        return key

    # method-major: a study that stops part-way (or is being extended) has whole methods, all seeds
    for method in methods:
        for seed in seeds:
            own = list(method_sets[method])
            seed_set = [f"train.seed={seed}"]
            own_float = [o for o in own if not o.startswith("hardware.")]  # the torch run has no devices
            key = add(method, ref_overrides + own_float + seed_set, f"float reference seed={seed}")
            points.append(Point(method, None, None, seed, key))
            for p in parameters:
                for level in p.levels:
                    sets = [f"{k}={toml_value(level, k)}" for k in p.keys]
                    key = add(method, list(p.overrides) + own + sets + seed_set,
                              f"{p.name}={level} seed={seed}")
                    points.append(Point(method, p, level, seed, key))
    sweep = Sweep(name.strip(), path, path, tuple(runs.values()), len(points) - len(runs))
    return Spec(name.strip(), path, methods, parameters, tuple(seeds), tuple(points), sweep,
                deploy_preset, method_sets)
