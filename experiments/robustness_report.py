"""Robustness results read from the results store: robustness.csv (one row per method, noise model,
parameter, level and seed), robustness.md (mean ± std tables), robustness.png (accuracy vs level,
one panel per parameter) and drift.png (accuracy vs time after programming of the float-trained
models)."""

from __future__ import annotations

import csv
import io
import json
import textwrap
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from experiments.outdir import atomic_write_text, save_figure
from experiments.robustness_spec import FLOAT, Spec
from experiments.runner.store import Store
from experiments.runner.sweep import current_key

CSV_COLUMNS = ("method", "noise_model", "parameter", "level", "seed", "status", "test_accuracy",
               "train_accuracy", "train_time_s", "wall_s", "epochs", "weights_at_range_limit", "key", "error")
DRIFT = "time_after_programming_s"
DRIFT_COMPENSATED = "time_after_programming_s_compensated"


def csv_rows(spec: Spec, store_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per point of the spec (runs not in the store yet are `missing`), then one per
    (method, time, compensation, seed) of the drift evaluation of the float references (the mean
    over programming draws when [reference] draws > 1)."""
    by_key = {r["key"]: r for r in store_rows}
    for r in store_rows:  # rows stored by older code under another key for the same config
        current = current_key(r["config"])
        if current is not None:
            by_key.setdefault(current[0], r)
    rows, drift = [], []
    for p in spec.points:
        run = by_key.get(p.key)
        metrics = json.loads(run["metrics"]) if run and run["metrics"] else {}
        done = run is not None and run["status"] == "done"
        row = {"method": p.method, "noise_model": p.parameter.noise_model if p.parameter else "none",
               "parameter": p.parameter.name if p.parameter else FLOAT,
               "level": "" if p.parameter is None else p.level, "seed": p.seed,
               "status": run["status"] if run else "missing",
               "test_accuracy": run["test_accuracy"] if done else None,
               "train_accuracy": run["train_accuracy"] if done else None,
               "train_time_s": metrics.get("train_s") if done else None,
               "wall_s": run["wall_s"] if done else None, "epochs": run["epochs"] if done else None,
               "weights_at_range_limit": metrics.get("weights_at_range_limit") if done else None,
               "key": p.key, "error": (run["error"] or "") if run else ""}
        rows.append(row)
        if p.parameter is None and done and metrics.get("deploy"):
            groups = defaultdict(list)
            for d in metrics["deploy"]:
                groups[(d["compensation"], d["time_s"])].append(d["test_accuracy"])
            for (comp, t), accs in sorted(groups.items()):
                drift.append({**row, "noise_model": spec.deploy_preset,
                              "parameter": DRIFT_COMPENSATED if comp else DRIFT, "level": t,
                              "test_accuracy": float(np.mean(accs)), "train_accuracy": None,
                              "weights_at_range_limit": None})
    return rows + drift


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """Atomically (experiments.outdir.atomic_write_text)."""
    f = io.StringIO(newline="")
    writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)
    atomic_write_text(path, f.getvalue())


def curve(rows: list[dict[str, Any]], method: str, parameter: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(levels, mean, std over seeds, number of seeds missing or failed) of one method's curve."""
    acc = defaultdict(list)
    bad = 0
    for r in rows:
        if r["method"] == method and r["parameter"] == parameter:
            if r["test_accuracy"] is None:
                bad += 1
            else:
                acc[float(r["level"])].append(r["test_accuracy"])
    levels = np.array(sorted(acc))
    mean = np.array([np.mean(acc[v]) for v in levels])
    std = np.array([np.std(acc[v]) for v in levels])
    return levels, mean, std, bad


def _float_line(rows, method: str) -> float | None:
    accs = [r["test_accuracy"] for r in rows if r["method"] == method and r["parameter"] == FLOAT
            and r["test_accuracy"] is not None]
    return float(np.mean(accs)) if accs else None


def plot_robustness(spec: Spec, rows: list[dict[str, Any]], path: Path) -> None:
    """One panel per parameter: test accuracy vs level, mean ± std over seeds per method, the
    method's float-reference accuracy dashed; one legend under the panels (off the data); failed
    or missing runs are counted under each panel's title."""
    from experiments.plots import plt
    n = max(1, len(spec.parameters))
    ncols = min(3, n)
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.6 * nrows + 0.5), dpi=110,
                             squeeze=False)
    handles: dict[str, Any] = {}
    for ax, p in zip(axes.flat, spec.parameters):
        missing = []
        for i, method in enumerate(spec.methods):
            levels, mean, std, bad = curve(rows, method, p.name)
            if bad:
                missing.append(f"{method} {bad}")
            if len(levels):
                line, = ax.plot(levels, mean, "-o", ms=3, color=f"C{i}")
                ax.fill_between(levels, mean - std, mean + std, color=f"C{i}", alpha=0.2)
                handles.setdefault(f"{method} (mean ± std)", line)
            ref = _float_line(rows, method)
            if ref is not None:
                line = ax.axhline(ref, color=f"C{i}", ls="--", lw=1)
                handles.setdefault(f"{method} float reference", line)
        ax.set_xlabel(p.xlabel, fontsize=8)
        ax.set_ylabel("test accuracy")
        # wrapped to the panel's width (about 11 characters of a 9-point title per inch)
        title = textwrap.fill(p.title, 50) + ("\n" + textwrap.fill(f"runs failed/missing: {', '.join(missing)}", 50)
                                              if missing else "")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    # one legend column per method: its curve above its float reference
    handles = {k: handles[k] for m in spec.methods
               for k in (f"{m} (mean ± std)", f"{m} float reference") if k in handles}
    for ax in list(axes.flat)[len(spec.parameters):]:
        ax.axis("off")
    title = (f"{spec.name}: trained on the simulated hardware, mean ± std over {len(spec.seeds)} "
             "seeds")
    # about 12 characters of a 10-point title per inch: wrap so that a one-panel figure shows it whole
    fig.suptitle(textwrap.fill(title, width=int(12 * 4.6 * ncols)), fontsize=10)
    _legend_below(fig, handles, len(spec.methods))
    save_figure(fig, path)


def _legend_below(fig, handles: dict[str, Any], ncol: int) -> None:
    """One figure legend in a strip under the panels, so that no entry covers data."""
    fig.tight_layout()
    if not handles:
        return
    rows = 2 if len(handles) > ncol else 1
    strip = (0.16 * rows + 0.1) / fig.get_figheight()
    fig.subplots_adjust(bottom=fig.subplotpars.bottom + strip)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=max(1, ncol),
               fontsize=7, frameon=False)


def plot_drift(spec: Spec, rows: list[dict[str, Any]], path: Path) -> None:
    """Accuracy vs time after programming (log axis) of each method's float-trained model deployed
    on spec.deploy_preset, with (solid) and without (dotted) global drift compensation; the legend
    sits to the right of the axes, off the data."""
    from experiments.plots import plt
    fig, ax = plt.subplots(figsize=(8.2, 4.2), dpi=120)
    for i, method in enumerate(spec.methods):
        for parameter, style, what in ((DRIFT, ":s", "no compensation"),
                                       (DRIFT_COMPENSATED, "-o", "drift compensation")):
            t, mean, std, _ = curve(rows, method, parameter)
            if len(t):
                ax.plot(t, mean, style, ms=3, color=f"C{i}", label=f"{method}, {what}")
                ax.fill_between(t, mean - std, mean + std, color=f"C{i}", alpha=0.15)
        ref = _float_line(rows, method)
        if ref is not None:
            ax.axhline(ref, color=f"C{i}", ls="--", lw=1, label=f"{method} float reference")
    ax.set_xscale("log")
    ax.set_xlabel("time after programming (s)")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{spec.name}: float-trained models deployed on {spec.deploy_preset},\nmean ± std "
                 f"over {len(spec.seeds)} seeds", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    fig.tight_layout()
    save_figure(fig, path)


def _cell(rows, method: str, parameter: str, level: float) -> str:
    accs = [r["test_accuracy"] for r in rows if r["method"] == method and r["parameter"] == parameter
            and r["level"] != "" and float(r["level"]) == level and r["test_accuracy"] is not None]
    missing = sum(1 for r in rows if r["method"] == method and r["parameter"] == parameter
                  and r["level"] != "" and float(r["level"]) == level and r["test_accuracy"] is None)
    text = f"{np.mean(accs):.4f} ± {np.std(accs):.4f}" if accs else "–"
    return text + (f" ({missing} missing)" if missing else "")


def markdown(spec: Spec, rows: list[dict[str, Any]]) -> str:
    """Tables of mean ± std test accuracy over seeds: one per parameter (methods x levels, the
    float reference and the change from the lowest to the highest level), and the drift table."""
    out = [f"# {spec.name}: test accuracy, mean ± std over seeds {list(spec.seeds)}\n"]
    for p in spec.parameters:
        out += [f"\n**{p.title}** (`{p.name}`; {p.xlabel})\n",
                "| method | float reference | " + " | ".join(f"{v:g}" for v in p.levels)
                + " | highest − lowest level |", "|---|---|" + "---|" * len(p.levels) + "---|"]
        for m in spec.methods:
            ref = _float_line(rows, m)
            levels, mean, _, _ = curve(rows, m, p.name)
            delta = f"{mean[-1] - mean[0]:+.4f}" if len(levels) > 1 else "–"
            out.append(f"| {m} | {'–' if ref is None else f'{ref:.4f}'} | "
                       + " | ".join(_cell(rows, m, p.name, float(v)) for v in p.levels) + f" | {delta} |")
    if spec.deploy_preset:
        times = sorted({float(r["level"]) for r in rows if r["parameter"] in (DRIFT, DRIFT_COMPENSATED)})
        out += [f"\n**float-trained models deployed on {spec.deploy_preset}** (time after programming, s)\n",
                "| method | compensation | " + " | ".join(f"{t:g}" for t in times) + " |",
                "|---|---|" + "---|" * len(times)]
        for m in spec.methods:
            for parameter, comp in ((DRIFT, "off"), (DRIFT_COMPENSATED, "on")):
                out.append(f"| {m} | {comp} | " + " | ".join(_cell(rows, m, parameter, t) for t in times) + " |")
    return "\n".join(out) + "\n"


def report(spec: Spec, store_path: Path, out: Path) -> list[dict[str, Any]]:
    """Read the store, write out/robustness.csv, robustness.md, robustness.png and (when the spec
    deploys) drift.png."""
    with Store(store_path, readonly=True) as store:
        rows = csv_rows(spec, store.rows())
    write_csv(rows, out / "robustness.csv")
    atomic_write_text(out / "robustness.md", markdown(spec, rows))
    plot_robustness(spec, rows, out / "robustness.png")
    if spec.deploy_preset:
        plot_drift(spec, rows, out / "drift.png")
    return rows
