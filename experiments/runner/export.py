"""Export a results store as an aligned text table or CSV, filtered by `--where KEY=VALUE`, where
KEY is a store column (status, sweep, key, version, git_commit) or a config field such as
objective.method or hardware.pcm.drift_scale."""

from __future__ import annotations

import csv
import json
import tomllib
from typing import Any, TextIO

import numpy as np

from common.errors import ConfigError
from experiments.runner.store import STATUSES

FILTER_COLUMNS = ("status", "sweep", "key", "version", "git_commit")
CSV_COLUMNS = ("key", "sweep", "position", "status", "attempts", "test_accuracy", "train_accuracy",
               "epochs", "wall_s", "error", "version", "git_commit", "owner", "started", "finished",
               "overrides")
TABLE_METRICS = ("test_accuracy", "train_accuracy", "epochs", "wall_s")
ERROR_CHARS = 60


def flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"hardware": {"pcm": {"t0": 1}}} -> {"hardware.pcm.t0": 1}, in the table's order."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out


def parse_where(texts: list[str]) -> list[tuple[str, str, Any]]:
    """`key=value` -> (key, value text, value read as TOML; bare words stay strings)."""
    out = []
    for text in texts:
        name, sep, value_text = text.partition("=")
        name, value_text = name.strip(), value_text.strip()
        if not sep or not name:
            raise ConfigError(f"--where {text!r} must look like key=value, e.g. status=done or "
                              "objective.method=df")
        if name == "status" and value_text not in STATUSES:
            raise ConfigError(f"--where status={value_text} must be one of {', '.join(STATUSES)}")
        try:
            value = tomllib.loads(f"v = {value_text}")["v"]
        except tomllib.TOMLDecodeError:
            if value_text and value_text[0] in "[{\"'":
                raise ConfigError(f"--where {text!r}: {value_text} is not a valid TOML value (a list is "
                                  "[1, 2], a string \"x\" or a bare word)") from None
            value = value_text
        out.append((name, value_text, value))
    return out


def _matches(row: dict[str, Any], config: dict[str, Any], cond: tuple[str, str, Any]) -> bool:
    name, text, value = cond
    if name == "key":
        return row["key"].startswith(text)  # the table shows the first 12 characters
    if name in FILTER_COLUMNS:
        return str(row[name]) == text
    if name not in config:
        return False
    have = config[name]
    return have == value or str(have) == text


def select(rows: list[dict[str, Any]], where: list[str]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(row, flattened config) of the rows matching every condition."""
    conds = parse_where(where)
    flat = [(row, flatten(json.loads(row["config"]))) for row in rows]
    known = set().union(*(cfg.keys() for _, cfg in flat)) if flat else set()
    for name, _, _ in conds:
        if flat and name not in FILTER_COLUMNS and name not in known:
            raise ConfigError(f"--where {name}: no such field in this store; use "
                              f"{', '.join(FILTER_COLUMNS)} or a config field such as objective.method")
    return [(row, cfg) for row, cfg in flat if all(_matches(row, cfg, c) for c in conds)]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def write_csv(selected: list[tuple[dict[str, Any], dict[str, Any]]], out: TextIO) -> None:
    """Every store column (but the raw config and metrics JSON) and every config field."""
    fields: dict[str, None] = {}
    for _, cfg in selected:
        fields.update(dict.fromkeys(cfg))
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*CSV_COLUMNS, *fields])
    for row, cfg in selected:
        overrides = " ".join(json.loads(row["overrides"]))
        writer.writerow([_text(overrides if c == "overrides" else row[c]) for c in CSV_COLUMNS]
                        + [_text(cfg.get(f)) for f in fields])


def _metric(name: str, value: Any) -> str:
    if value is None:
        return ""
    if name.endswith("accuracy"):
        return f"{value:.4f}"
    return f"{value:.1f}" if name == "wall_s" else str(value)


def write_table(selected: list[tuple[dict[str, Any], dict[str, Any]]], out: TextIO) -> None:
    """One line per run: short key, status, the config fields that differ between the selected
    runs (among the runs that have the field), metrics, and the first characters of the error."""
    if not selected:
        out.write("(no runs)\n")
        return
    fields = _differing([cfg for _, cfg in selected])
    header = ["key", "status", *fields, *TABLE_METRICS, "error"]
    lines = []
    for row, cfg in selected:
        error = row["error"] or ""
        if len(error) > ERROR_CHARS:
            error = error[:ERROR_CHARS - 3] + "..."
        lines.append([row["key"][:12], row["status"], *(_text(cfg.get(f)) for f in fields),
                      *(_metric(m, row[m]) for m in TABLE_METRICS), error])
    _write_aligned(header, lines, out)


def _differing(cfgs: list[dict[str, Any]], skip: tuple[str, ...] = ()) -> list[str]:
    """The config fields (but skip) whose value differs between the configs that have them, in
    first-seen order: a key of one method only, e.g. objective.scale next to a bp run, is not a
    difference (objective.method shows it)."""
    union = dict.fromkeys(f for cfg in cfgs for f in cfg if f not in skip)
    return [f for f in union if len({_text(cfg[f]) for cfg in cfgs if f in cfg}) > 1]


def _write_aligned(header: list[str], lines: list[list[Any]], out: TextIO) -> None:
    """header and lines as columns padded to their widest cell, two spaces apart."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    for line in [header, *lines]:
        out.write("  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip() + "\n")


def _val(row: dict[str, Any]) -> float | None:
    """The run's val_accuracy (metrics JSON), None without a validation split."""
    metrics = json.loads(row["metrics"]) if row.get("metrics") else {}
    return metrics.get("val_accuracy")


def select_best(selected: list[tuple[dict[str, Any], dict[str, Any]]], by: list[str]) -> list[dict[str, Any]]:
    """Model selection on the validation split: finished runs are grouped into settings (every
    config field but train.seed equal), each setting scored by its mean val_accuracy over seeds;
    per group of the `by` fields the best setting, with its mean and std of val and test accuracy
    and `compared`, the number of settings it was chosen from.  The test accuracy is reported,
    never used to choose."""
    runs = [(row, cfg, _val(row)) for row, cfg in selected if row["status"] == "done"]
    runs = [r for r in runs if r[2] is not None]
    if not runs:
        raise ConfigError("no finished run has a val_accuracy; hold out a validation split with "
                          "data.val_fraction > 0 (or x_val, y_val in an npz file) and run the sweep again")
    for name in by:
        if not any(name in cfg for _, cfg, _ in runs):
            raise ConfigError(f"--by {name}: no such config field in these runs (e.g. objective.method)")
    settings: dict[str, list] = {}
    for row, cfg, val in runs:
        setting = json.dumps({k: v for k, v in cfg.items() if k != "train.seed"}, sort_keys=True)
        settings.setdefault(setting, []).append((row, cfg, val))
    varying = _differing([c for _, c, _ in runs], skip=("train.seed",))
    best: dict[tuple, dict[str, Any]] = {}
    compared: dict[tuple, int] = {}
    for members in settings.values():
        cfg = members[0][1]
        vals = np.array([v for _, _, v in members])
        tests = np.array([r["test_accuracy"] for r, _, _ in members], dtype=float)
        entry = {"group": tuple(_text(cfg.get(f)) for f in by), "setting": {f: cfg.get(f) for f in varying},
                 "seeds": len(members), "val_mean": float(vals.mean()), "val_std": float(vals.std()),
                 "test_mean": float(tests.mean()), "test_std": float(tests.std())}
        group = entry["group"]
        compared[group] = compared.get(group, 0) + 1
        if group not in best or entry["val_mean"] > best[group]["val_mean"]:
            best[group] = entry
    return [{**best[g], "compared": compared[g]} for g in sorted(best)]


def write_best(entries: list[dict[str, Any]], by: list[str], out: TextIO) -> None:
    """One line per group: the chosen setting's differing fields, seeds, val and test accuracy."""
    fields = list(dict.fromkeys(f for e in entries for f in e["setting"] if f not in by))
    header = [*by, *fields, "seeds", "val_accuracy", "test_accuracy"]
    lines = [[*e["group"], *(_text(e["setting"].get(f)) for f in fields), str(e["seeds"]),
              f"{e['val_mean']:.4f} ± {e['val_std']:.4f}", f"{e['test_mean']:.4f} ± {e['test_std']:.4f}"]
             for e in entries]
    _write_aligned(header, lines, out)
