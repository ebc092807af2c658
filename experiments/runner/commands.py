"""The `onchip-ff sweep` and `onchip-ff results` subcommands: arguments, messages, exit codes.

sweep exits 0 when every run of the sweep is done (or still running in another process), 1 when
some runs are stored as failed, 130 after Ctrl-C or SIGTERM (experiments.cli.main turns SIGTERM
into an interrupt for every command), 2 on bad input.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from common.errors import ConfigError

MAX_FAILURES_SHOWN = 10


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_store(sweep_name: str) -> Path:
    return Path("runs") / (re.sub(r"[^A-Za-z0-9._-]+", "_", sweep_name) + ".sqlite")


def _dry_run(sweep, store_path: Path) -> int:
    from experiments.runner.store import Store
    from experiments.runner.sweep import current_key

    statuses: dict[str, str] = {}
    if store_path.exists() and store_path.stat().st_size > 0:
        with Store(store_path, readonly=True) as store:
            rows = store.rows()
        for row in rows:  # rows of older code count under the key the sweep would rekey them to
            statuses[row["key"]] = row["status"]
            if (now := current_key(row["config"])) is not None:
                statuses.setdefault(now[0], row["status"])
    for run in sweep.runs:
        print(f"{run.key[:12]}  {statuses.get(run.key, 'new'):8s}  {run.label or '(base)'}")
    print(f"sweep {sweep.name}: {len(sweep.runs)} runs ({sweep.duplicates} duplicate configs dropped); "
          f"store {store_path}; nothing was run or written", file=sys.stderr)
    return 0


def check_executor_args(args: argparse.Namespace) -> None:
    """Validate --workers, --threads, --executor and --ray-address (before anything is written)."""
    from experiments.runner.executors import require_ray

    if args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {args.threads}")
    if args.ray_address and args.executor != "ray":
        raise ConfigError("--ray-address needs --executor ray")
    if args.executor == "ray":
        require_ray()


def cmd_sweep(args: argparse.Namespace) -> int:
    from experiments.runner.sweep import load_sweep

    check_executor_args(args)
    sweep = load_sweep(args.sweep_file, args.set or [])  # every config validated before any write
    store_path = Path(args.store) if args.store else default_store(sweep.name)
    if args.dry_run:
        return _dry_run(sweep, store_path)
    return execute(sweep, store_path, args)


def execute(sweep, store_path: Path, args: argparse.Namespace) -> int:
    """Run the sweep's unfinished runs into the store with the executor named by args; prints what
    it found and did. Returns 0 (all done or running elsewhere), 1 (some failed) or 130 (stopped)."""
    from experiments.runner.executors import make_executor
    from experiments.runner.scheduler import Interrupted, run_sweep
    from experiments.runner.store import Store

    workers = 1 if args.executor == "inline" else args.workers
    threads = args.threads or max(1, _cores() // workers)
    store = Store(store_path)  # refuses a foreign or corrupt file before writing anything
    executor = None

    def announce(o) -> None:
        failed = (f"{o.skipped_failed} failed (skipped; --retry-failed runs them again)"
                  if o.skipped_failed else "0 failed")
        dup = f"; {sweep.duplicates} duplicate configs dropped" if sweep.duplicates else ""
        print(f"sweep {sweep.name}: {o.total} runs ({o.already_done} done, {failed}, {o.to_run} to run) "
              f"-> {store_path}; {args.executor} executor, {workers} worker(s), {threads} "
              f"thread(s) per run{dup}", file=sys.stderr)

    try:
        executor = make_executor(args.executor, args.ray_address)
        out = run_sweep(store, sweep, executor, workers, threads, retry_failed=args.retry_failed,
                        progress=not args.no_progress, announce=announce)
    except Interrupted as stop:
        o = stop.outcome
        print(f"onchip-ff: interrupted; {o.done + o.failed} results of this session are stored, "
              f"{o.released} runs in progress were put back to pending; run the same command again "
              "to resume", file=sys.stderr)
        return 130
    finally:
        if executor is not None:
            executor.close()
        statuses = store.statuses()
        store.close()
    for key, error in out.failures[:MAX_FAILURES_SHOWN]:
        print(f"  failed {key[:12]}: {error}", file=sys.stderr)
    if len(out.failures) > MAX_FAILURES_SHOWN:
        print(f"  ... and {len(out.failures) - MAX_FAILURES_SHOWN} more", file=sys.stderr)
    mine = [statuses.get(r.key) for r in sweep.runs]
    n_done, n_failed = mine.count("done"), mine.count("failed")
    rest = len(mine) - n_done - n_failed
    elsewhere = f", {rest} pending or running in another process" if rest else ""
    print(f"sweep {sweep.name}: {n_done}/{len(mine)} done, {n_failed} failed{elsewhere} -> {store_path}; "
          f"see `onchip-ff results {store_path}`")
    return 1 if n_failed else 0


def cmd_results(args: argparse.Namespace) -> int:
    from experiments.runner.export import select, select_best, write_best, write_csv, write_table
    from experiments.runner.store import Store

    with Store(args.store, readonly=True) as store:
        rows = store.rows()
    selected = select(rows, args.where or [])
    if args.best:
        by = args.by or ["objective.method"]
        write_best(select_best(selected, by), by, sys.stdout)
        return 0
    if args.by:
        raise ConfigError("--by groups the model selection of --best; add --best")
    (write_csv if args.format == "csv" else write_table)(selected, sys.stdout)
    return 0


def add_executor_args(s: argparse.ArgumentParser, overrides: bool = True, executor: str = "local") -> None:
    """--workers, --executor, --ray-address, --threads, --set (if overrides), --retry-failed,
    --no-progress."""
    s.add_argument("--workers", type=int, default=_cores(),
                   help=f"runs at the same time (default: the CPU count, {_cores()} here)")
    s.add_argument("--executor", choices=("local", "ray", "inline"), default=executor,
                   help="local: a fresh process per run; ray: Ray tasks; inline: in this process, "
                        f"one at a time (default: {executor})")
    s.add_argument("--ray-address", help="address of a running Ray cluster (default: start a local one)")
    s.add_argument("--threads", type=int, help="torch threads per run when train.threads is 0 "
                   "(default: cores // workers)")
    if overrides:
        s.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                       help="override one config value in every run (repeatable), like [fixed]")
    s.add_argument("--retry-failed", action="store_true", help="run failed runs again")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add `sweep` and `results` to the CLI's subcommands."""
    s = sub.add_parser("sweep", help="run every config of a sweep file; results go to an SQLite store")
    s.add_argument("sweep_file", help="sweep TOML, e.g. experiments/configs/sweep_example.toml")
    s.add_argument("--store", help="results store (default runs/<sweep name>.sqlite; created if absent)")
    add_executor_args(s)
    s.add_argument("--dry-run", action="store_true", help="list the runs and their stored status; "
                   "run and write nothing")
    s.set_defaults(func=cmd_sweep)

    r = sub.add_parser("results", help="export a sweep results store as a table or CSV")
    r.add_argument("store", help="results store written by `onchip-ff sweep`")
    r.add_argument("--format", choices=("table", "csv"), default="table", help="default table")
    r.add_argument("--where", action="append", metavar="KEY=VALUE",
                   help="keep runs whose KEY (status, sweep, key, version, git_commit or a config "
                        "field such as objective.method) equals VALUE; repeatable (all must hold)")
    r.add_argument("--best", action="store_true", help="model selection: per group (--by) the setting "
                   "with the best mean val_accuracy over seeds (data.val_fraction > 0), with its test accuracy")
    r.add_argument("--by", action="append", metavar="FIELD", help="with --best: group by this config "
                   "field (repeatable; default objective.method)")
    r.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    r.set_defaults(func=cmd_results)
