"""`onchip-ff robustness CONFIG.toml --out DIR`: train every method at every level of every noise
parameter on the simulated hardware (>= 3 seeds) through the results store, then write
DIR/robustness.csv, DIR/robustness.md, DIR/robustness.png and DIR/drift.png from the store. Running it again skips
finished points; --plot-only redraws from the store without running anything."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common.errors import ConfigError

STORE_NAME = "robustness.sqlite"


def _out_dir(out: str) -> Path:
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path} is a file; pass a folder path")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {path} cannot be created ({exc.strerror})") from None
    return path


def summary(spec, rows) -> str:
    """Per parameter and method: mean accuracy at the lowest and the highest level."""
    from experiments.robustness_report import curve
    lines = []
    for p in spec.parameters:
        for method in spec.methods:
            levels, mean, std, bad = curve(rows, method, p.name)
            if len(levels):
                lines.append(f"  {p.name:<44} {method:<4} {levels[0]:g}: {mean[0]:.4f} ± {std[0]:.4f}"
                             f"  ->  {levels[-1]:g}: {mean[-1]:.4f} ± {std[-1]:.4f}"
                             + (f"  ({bad} failed/missing)" if bad else ""))
    return "\n".join(lines)


def cmd_robustness(args: argparse.Namespace) -> int:
    from experiments.robustness_report import report
    from experiments.robustness_spec import load_spec
    from experiments.runner.commands import _dry_run, check_executor_args, execute
    from experiments.runner.store import Store

    check_executor_args(args)
    spec = load_spec(args.config, args.set or [])  # every run's config validated before any write
    out = Path(args.out)
    store_path = Path(args.store) if args.store else out / STORE_NAME
    if args.dry_run:
        return _dry_run(spec.sweep, store_path)
    if args.plot_only and not store_path.is_file():
        raise ConfigError(f"--plot-only: no store at {store_path}; run without --plot-only first")
    out = _out_dir(args.out)
    code = 0
    if not args.plot_only:
        print(f"robustness {spec.name}: {len(spec.methods)} methods x {len(spec.parameters)} parameters "
              f"x {len(spec.seeds)} seeds = {len(spec.points)} points, {len(spec.sweep.runs)} distinct runs",
              file=sys.stderr)
        code = execute(spec.sweep, store_path, args)
        if code == 130:
            return code
    else:
        from experiments.runner.sweep import current_key
        with Store(store_path, readonly=True) as store:  # a foreign or corrupt file: one-line error
            rows = store.rows()
        stored = {r["key"] for r in rows} | {k[0] for r in rows if (k := current_key(r["config"]))}
        if not any(p.key in stored for p in spec.points):
            raise ConfigError(f"--plot-only: the store {store_path} holds no run of {spec.name}; run "
                              "without --plot-only first")
    rows = report(spec, store_path, out)
    print(summary(spec, rows))
    files = ", ".join(str(out / f) for f in ("robustness.csv", "robustness.md", "robustness.png")
                      + (("drift.png",) if spec.deploy_preset else ()))
    print(f"-> {files}; store {store_path}")
    return code


def add_parser(sub: argparse._SubParsersAction) -> None:
    from experiments.runner.commands import add_executor_args

    r = sub.add_parser("robustness", help="accuracy of DF/FF/BP trained on simulated hardware vs noise "
                       "level, and vs time after programming: robustness.csv, robustness.png, drift.png")
    r.add_argument("config", help="robustness TOML, e.g. experiments/configs/robustness_fmnist.toml")
    r.add_argument("--out", required=True, help="output folder; running again with the same folder "
                   "resumes (finished points are not recomputed)")
    r.add_argument("--store", help=f"results store (default OUT/{STORE_NAME})")
    add_executor_args(r)
    r.add_argument("--dry-run", action="store_true", help="list the runs and their stored status; "
                   "run and write nothing")
    r.add_argument("--plot-only", action="store_true", help="write the CSV and plots from the store; "
                   "run nothing")
    r.set_defaults(func=cmd_robustness)
