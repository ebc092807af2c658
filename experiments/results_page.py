"""`onchip-ff results-page PAGE.toml --out docs`: one results page (OUT/results.md and its plots),
regenerated from the results stores — references (the best setting on validation, the papers'
figures beside), the epochs each method needs (convergence runs), and the robustness studies
(plots, mean ± std tables, plain-language answers). It runs nothing: a store not there yet is a
line saying which command fills it."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.coerce import check
from common.errors import ConfigError
from common.tomlfile import read_toml, typed
from experiments.runner.export import flatten

EXAMPLE = "experiments/configs/results_page.toml"
TABLES = ("page", "reference", "convergence", "robustness")


def _required(obj: Any, table: str, names: tuple[str, ...]) -> None:
    for name in names:
        check(bool(getattr(obj, name)), f"{table}.{name}", "a non-empty string", getattr(obj, name))


@dataclass(frozen=True)
class ReferenceTable:
    """[[reference]]: one table of accuracy references."""

    title: str = ""
    store: str = ""  # results store, a path from the repository root
    command: str = ""  # what fills the store
    by: str = "objective.method"  # config field grouping the runs (one line per value)
    paper: dict[str, str] | None = None  # group value -> the papers' figure, as text with its source

    def __post_init__(self) -> None:
        _required(self, "reference", ("title", "store", "command", "by"))


@dataclass(frozen=True)
class Convergence:
    """[convergence]: the long and shorter runs of each method."""

    store: str = ""
    command: str = ""
    within: float = 0.01  # accuracy (fraction) below the best validation accuracy that counts as converged

    def __post_init__(self) -> None:
        _required(self, "convergence", ("store", "command"))
        check(0 < self.within < 1, "convergence.within", "an accuracy difference in (0, 1), e.g. 0.01",
              self.within)


@dataclass(frozen=True)
class Study:
    """[[robustness]]: a robustness study on the page."""

    config: str = ""  # robustness file
    dir: str = ""  # its --out folder (store: DIR/robustness.sqlite)
    command: str = ""
    baseline: str = "bp"  # method the others are compared with

    def __post_init__(self) -> None:
        _required(self, "robustness", ("config", "dir", "command", "baseline"))


@dataclass(frozen=True)
class Page:
    title: str = "Results"
    intro: str = ""
    references: tuple[ReferenceTable, ...] = ()
    convergence: Convergence | None = None
    studies: tuple[Study, ...] = ()


def _tables(raw: dict[str, Any], name: str, path: Path) -> list[dict[str, Any]]:
    tables = raw.get(name, [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ConfigError(f"{path}: {name} entries are [[{name}]] tables")
    return tables


def load_page(path: str | Path) -> Page:
    """Parse a results-page file (typed tables, common/tomlfile.py); paths in it are relative to the
    working directory (the repository root), as the commands that fill the stores write them."""
    path = Path(path)
    raw = read_toml(path, "results page", EXAMPLE, TABLES)
    refs = []
    for t in _tables(raw, "reference", path):
        paper = t.get("paper", {})
        if not isinstance(paper, dict) or not all(isinstance(v, str) for v in paper.values()):
            raise ConfigError(f"{path}: reference.paper must map a group value to text, e.g. df = "
                              "\"93.89 (Wu et al. 2024)\"")
        refs.append(typed(ReferenceTable, {k: v for k, v in t.items() if k != "paper"}, "reference", str(path),
                          paper=dict(paper)))
    conv = typed(Convergence, raw["convergence"], "convergence", str(path)) if "convergence" in raw else None
    studies = tuple(typed(Study, t, "robustness", str(path)) for t in _tables(raw, "robustness", path))
    return typed(Page, raw.get("page", {}), "page", str(path), references=tuple(refs), convergence=conv,
                 studies=studies)


def _rows(store: str | Path) -> list[dict[str, Any]]:
    from experiments.runner.store import Store
    with Store(store, readonly=True) as s:
        return s.rows()


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    """A stored run's config flattened as the current code reads it (fields added since the run was
    stored at their defaults, so its signature matches the study's runs)."""
    from experiments.runner.sweep import as_current
    return flatten(json.loads(as_current(row)[1]))


def _signature(cfg: dict[str, Any]) -> str:
    """What makes two runs the same method on the same network (flattened config): the objective
    section, the architecture and the widths — the epochs, schedule, data split and seed aside."""
    keep = {k: v for k, v in cfg.items() if k.startswith("objective.") or k in ("model.arch", "model.hidden",
                                                                                  "model.channels")}
    return json.dumps(keep, sort_keys=True)


def _label(cfg: dict[str, Any]) -> str:
    """A run's method as the robustness studies name it: objective.method, DF-O for DF with blocks."""
    method = cfg.get("objective.method", "?")
    if method == "df" and cfg.get("objective.block_size", 1) > 1:
        return "dfo"
    return method


def _missing(store: str | Path, command: str) -> list[str]:
    return [f"Not run yet (no store at `{store}`): `{command}`", ""]


def reference_section(t: ReferenceTable) -> list[str]:
    """The best setting per group on the validation split, its test accuracy over seeds, and the
    papers' figure beside it."""
    from experiments.runner.export import select_best
    out = [f"### {t.title}", ""]
    if not Path(t.store).is_file():
        return out + _missing(t.store, t.command)
    selected = [(r, _flat(r)) for r in _rows(t.store)]
    best = select_best(selected, [t.by])
    out += [f"`{t.command}`; chosen on validation (`onchip-ff results {t.store} --best --by {t.by}`).", "",
            f"| {t.by} | chosen setting | seeds | val accuracy | test accuracy | papers |",
            "|---|---|---|---|---|---|"]
    for e in best:
        group = e["group"][0]
        setting = ", ".join(f"{k} = {v}" for k, v in e["setting"].items() if k != t.by) or "–"
        setting += f" (best of {e['compared']} finished)" if e["compared"] > 1 else " (the only one finished)"
        out.append(f"| {group} | {setting} | {e['seeds']} | {e['val_mean']:.4f} ± {e['val_std']:.4f} | "
                   f"**{e['test_mean']:.4f} ± {e['test_std']:.4f}** | {(t.paper or {}).get(group, '–')} |")
    return out + [""]


def best_val(history: list[dict[str, Any]]) -> tuple[int, float, float] | None:
    """(epoch of the best val_accuracy, that accuracy, the test accuracy at that epoch); None
    without validation accuracies. The test accuracy is reported, never used to choose."""
    vals = [h.get("val_accuracy") for h in history]
    if not vals or any(v is None for v in vals):
        return None
    best = int(np.argmax(vals))
    return history[best]["epoch"], float(vals[best]), float(history[best]["test_accuracy"])


def convergence_runs(c: Convergence) -> dict[str, dict[str, Any]]:
    """Per method (_signature -> its label from _label): its long run (the most epochs; best validation epoch and
    accuracy, test accuracy there), its shorter runs (epochs -> final val and test accuracy), and
    `epochs`: the fewest epochs of a shorter run whose final val accuracy is within c.within of the
    long run's best (None if none is)."""
    found: dict[str, list[list[dict[str, Any]]]] = {}
    for r in _rows(c.store):
        history = json.loads(r["metrics"]).get("history", []) if r["status"] == "done" else []
        if best_val(history) is not None:
            cfg = _flat(r)
            found.setdefault(_signature(cfg), []).append((_label(cfg), history))
    out = {}
    for signature, entries in found.items():
        label = entries[0][0]
        histories = sorted((h for _, h in entries), key=len)
        long = histories.pop()
        epoch, val, test = best_val(long)
        short = {len(h): (float(h[-1]["val_accuracy"]), float(h[-1]["test_accuracy"])) for h in histories}
        ok = [e for e, (v, _) in sorted(short.items()) if v >= val - c.within]
        out[signature] = {"label": label, "short": short, "epochs": ok[0] if ok else None,
                          "long": {"ran": len(long), "best_epoch": epoch, "best_val": val, "test_at_best": test}}
    return out


def convergence_section(c: Convergence, studies: list[tuple[Study, Any, list]]) -> list[str]:
    """Epochs per method (chosen on validation), and for each robustness study whether its float
    references are within c.within of the converged test accuracy."""
    out = ["## Epochs to convergence", ""]
    if not Path(c.store).is_file():
        return out + _missing(c.store, c.command)
    runs = convergence_runs(c)
    shorts = sorted({e for r in runs.values() for e in r["short"]})
    out += [f"`{c.command}`: each method trained on 90 % of the training set, once long (its converged "
            "accuracy: the best validation accuracy over the epochs) and shorter with a cosine "
            "schedule; the study uses the fewest cosine epochs whose final "
            f"validation accuracy is within {100 * c.within:g} point(s) of the converged one "
            "(chosen on validation; test accuracies in brackets, not used to choose).", "",
            "| method | long run: epochs | best val (epoch) | test there | "
            + " | ".join(f"cosine {e} epochs: val (test)" for e in shorts) + " | epochs needed |",
            "|---|---|---|---|" + "---|" * len(shorts) + "---|"]
    for r in runs.values():
        long = r["long"]
        head = f"| {r['label']} | {long['ran']} | {long['best_val']:.4f} ({long['best_epoch']}) | {long['test_at_best']:.4f} |"
        cells = [f"{r['short'][e][0]:.4f} ({r['short'][e][1]:.4f})" if e in r["short"] else "–" for e in shorts]
        needed = (r["epochs"] if r["epochs"] is not None
                  else f"> {max(r['short'])}" if r["short"] else "– (no shorter run)")
        out.append(head + " " + " | ".join(cells) + f" | {needed} |")
    for study, spec, rows in studies:
        out += ["", f"Float references of `{study.config}` (full training set, mean ± std over seeds) "
                "against the converged test accuracy:", "",
                "| method | study epochs | float reference | converged | gap | within |",
                "|---|---|---|---|---|---|"]
        for m in spec.methods:
            accs = [r["test_accuracy"] for r in rows if r["method"] == m and r["parameter"] == "float_reference"
                    and r["test_accuracy"] is not None]
            long = runs.get(_signature(flatten(spec.method_config(m))), {}).get("long")
            epochs = spec.method_setting(m, "train.epochs")
            if not accs or long is None:
                ref = f"{np.mean(accs):.4f}" if accs else "–"
                converged = "–" if long is None else f"{long['test_at_best']:.4f}"
                out.append(f"| {m} | {epochs} | {ref} | {converged} | – | – |")
                continue
            gap = long["test_at_best"] - float(np.mean(accs))
            out.append(f"| {m} | {epochs} | {np.mean(accs):.4f} ± {np.std(accs):.4f} | "
                       f"{long['test_at_best']:.4f} | {100 * gap:+.2f} points | "
                       f"{'yes' if gap <= c.within else '**no**'} |")
    return out + [""]


def compute_line(raw: list[dict[str, Any]], keys: set[str]) -> str:
    """The study's compute from its store (runs whose key is in `keys`): finished runs, their summed
    wall time, and the span from the first start to the last finish (pauses between sessions
    included); a row stored by older code counts under the key the current code gives its config."""
    from experiments.runner.sweep import as_current
    done = [r for r in raw if r["status"] == "done" and r["wall_s"] is not None and as_current(r)[0] in keys]
    if not done:
        return "No finished run yet."
    total = sum(r["wall_s"] for r in done)
    span = max(r["finished"] for r in done) - min(r["started"] for r in done)
    return (f"Compute: {len(done)} runs finished, {total / 3600:.2f} h of run time summed over runs, "
            f"{span / 3600:.2f} h from the first start to the last finish (pauses included).")


def study_section(study: Study, spec, rows, out_dir: Path, raw: list[dict[str, Any]] | None = None) -> list[str]:
    """The study's plots (copied next to the page), its tables and the plain-language answers."""
    from experiments.robustness_answers import answers
    from experiments.robustness_report import markdown, plot_drift, plot_robustness
    out = [f"## Robustness: {spec.name}" if spec else f"## Robustness: {study.config}", ""]
    if spec is None or rows is None:
        return out + _missing(Path(study.dir) / "robustness.sqlite", study.command)
    total = len(spec.points)
    done = sum(1 for r in rows[:total] if r["status"] == "done")  # csv_rows: the points come first
    epochs = ", ".join(f"{m} {spec.method_setting(m, 'train.epochs')}" for m in spec.methods)
    out += [f"`{study.command}` — {done} of {total} points finished; epochs: {epochs}. "
            + (compute_line(raw, {p.key for p in spec.points}) if raw is not None else ""), ""]
    stem = f"results_{spec.name}"
    plot_robustness(spec, rows, out_dir / f"{stem}.png")
    out += [f"![robustness]({stem}.png)", ""]
    if spec.deploy_preset:
        plot_drift(spec, rows, out_dir / f"{stem}_drift.png")
        out += [f"![drift]({stem}_drift.png)", ""]
    out += ["**Which methods degrade less?** Per parameter: each method's change of test accuracy from "
            "the clean level to the harshest (points, mean ± std over seeds, paired by seed; best "
            f"first), then each method against {study.baseline} at every level — \"degrades less/more\" "
            "only where the two mean changes differ by more than two standard errors of the seed means.", ""]
    out += [f"- {a}" for a in answers(spec, rows, study.baseline)]
    out += ["", *range_table(spec, rows)]
    tables = markdown(spec, rows).split("\n", 1)[1]  # without its own heading
    return out + ["", tables]


def range_table(spec, rows) -> list[str]:
    """Share of array weights at their range limit after training (saturated devices), mean over
    seeds, at each parameter's clean and harshest level."""
    from experiments.robustness_answers import clean_level, harshest_level

    def share(m, p, level):
        v = [r["weights_at_range_limit"] for r in rows if r["method"] == m and r["parameter"] == p.name
             and r["level"] != "" and float(r["level"]) == level and r["weights_at_range_limit"] is not None]
        return f"{100 * np.mean(v):.2f} %" if v else "–"

    out = ["Weights at their range limit after training (within 2 % of the row's range: saturated "
           "devices; mean over seeds; clean / harshest level):", "",
           "| method | " + " | ".join(p.title for p in spec.parameters) + " |",
           "|---|" + "---|" * len(spec.parameters)]
    for m in spec.methods:
        out.append(f"| {m} | " + " | ".join(f"{share(m, p, clean_level(p))} / {share(m, p, harshest_level(p))}"
                                           for p in spec.parameters) + " |")
    return out


def write_page(page: Page, out_dir: Path) -> Path:
    """Write out_dir/results.md and its plots from the stores; returns the page's path."""
    from experiments.outdir import atomic_write_text
    from experiments.robustness_report import csv_rows
    from experiments.robustness_spec import load_spec
    out_dir.mkdir(parents=True, exist_ok=True)
    loaded = []
    for s in page.studies:
        spec = load_spec(s.config)
        store = Path(s.dir) / "robustness.sqlite"
        raw = _rows(store) if store.is_file() else None
        loaded.append((s, spec, csv_rows(spec, raw) if raw is not None else None, raw))
    lines = [f"# {page.title}", "", "Generated by `onchip-ff results-page` from the results stores; "
             "do not edit by hand.", ""]
    if page.intro:
        lines += [page.intro.strip(), ""]
    if page.references:
        lines += ["## Accuracy references", ""]
        for t in page.references:
            lines += reference_section(t)
    if page.convergence:
        lines += convergence_section(page.convergence, [x[:3] for x in loaded if x[2] is not None])
    for s, spec, rows, raw in loaded:
        lines += study_section(s, spec, rows, out_dir, raw)
    path = out_dir / "results.md"
    atomic_write_text(path, "\n".join(lines).rstrip() + "\n")
    return path


def cmd_results_page(args: argparse.Namespace) -> int:
    page = load_page(args.page)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; pass a folder path")
    path = write_page(page, out)
    print(f"-> {path}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("results-page", help="write OUT/results.md (references, epochs, robustness "
                       "plots, tables and answers) from the results stores; runs nothing")
    r.add_argument("page", nargs="?", default=EXAMPLE, help=f"results-page TOML (default {EXAMPLE})")
    r.add_argument("--out", default="docs", help="folder of results.md and its plots (default docs)")
    r.set_defaults(func=cmd_results_page)
