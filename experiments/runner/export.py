"""Export a results store as an aligned text table or CSV, filtered by `--where KEY=VALUE`, where
KEY is a store column (status, sweep, key, version, git_commit) or a config field such as
objective.method or hardware.pcm.drift_scale."""

from __future__ import annotations

import csv
import json
import tomllib
from typing import Any, TextIO

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
    union: dict[str, None] = {}
    for _, cfg in selected:
        union.update(dict.fromkeys(cfg))
    # a field shows when its value differs between the runs that have it (a key of one method
    # only, e.g. objective.scale next to a bp run, is not a difference: objective.method shows it)
    fields = [f for f in union if len({_text(cfg[f]) for _, cfg in selected if f in cfg}) > 1]
    header = ["key", "status", *fields, *TABLE_METRICS, "error"]
    lines = []
    for row, cfg in selected:
        error = row["error"] or ""
        if len(error) > ERROR_CHARS:
            error = error[:ERROR_CHARS - 3] + "..."
        lines.append([row["key"][:12], row["status"], *(_text(cfg.get(f)) for f in fields),
                      *(_metric(m, row[m]) for m in TABLE_METRICS), error])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    for line in [header, *lines]:
        out.write("  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip() + "\n")
