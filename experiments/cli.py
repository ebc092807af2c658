"""The `onchip-ff` command line: train, demo, bench, deploy, memory, sweep, results, robustness, pipeline,
crosscheck.  Errors meant for people become one line and exit 2."""

from __future__ import annotations

import argparse
import errno
import signal
import sqlite3
import sys
import threading
import traceback
from pathlib import Path

from common.threads import passive_threads

# Every command runs with the run processes' environment (idle OpenMP threads wait passively
# instead of spinning against other processes: common/threads.py), set before torch or numba
# start their thread pools; a value the user exported wins.
passive_threads()

from experiments.outdir import prepare_out_dir  # noqa: E402
from common.errors import ConfigError, OnchipError  # noqa: E402


def _thread_lock_for_progress_bars() -> None:
    """tqdm's default lock is a cross-process semaphore that an interrupted command leaves behind
    ("leaked semaphore" warnings at exit); the bars of one command live in one process."""
    from tqdm import tqdm
    tqdm.set_lock(threading.RLock())

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


class ArgumentError(OnchipError):
    """Bad command-line usage."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line and exit 2, like every other bad input
        raise ArgumentError(f"{message} (see `{self.prog} --help`)")


def cmd_train(args: argparse.Namespace) -> int:
    from onchip_ff import config
    from onchip_ff.data import load_dataset
    from experiments.observers import resume_state, run_training

    if args.resume:
        if args.config or args.set or args.out:
            raise ConfigError("--resume DIR continues the run in DIR with its own config.toml; leave out "
                              "CONFIG, --set and --out")
        out = Path(args.resume)
        cfg, resume = resume_state(out)
        data = load_dataset(cfg.data)
    else:
        if not args.config:
            raise ConfigError("train needs a CONFIG.toml (or --resume DIR of an interrupted run)")
        cfg = config.load(args.config, args.set or [])
        data = load_dataset(cfg.data)  # data errors before any folder is created
        out, resume = prepare_out_dir(args.out, Path(args.config).stem), None
    metrics = run_training(cfg, data, out_dir=out, progress=not args.no_progress, resume=resume).metrics
    print(f"{cfg.objective.method} {cfg.model.arch} on {data.name}: test accuracy "
          f"{metrics['test_accuracy']:.4f}, train accuracy {metrics['train_accuracy']:.4f}, "
          f"{metrics['epochs']} epochs, {metrics['wall_s']:.1f} s -> {out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from experiments.demo import run_demo

    if args.epochs < 1:
        raise ConfigError(f"--epochs must be >= 1, got {args.epochs}")
    out = prepare_out_dir(args.out, "demo", ("demo.png", "summary.json"))
    return run_demo(out, epochs=args.epochs, progress=not args.no_progress)


def cmd_bench(args: argparse.Namespace) -> int:
    from experiments.bench import run_bench

    if args.batch < 1 or args.repeats < 1:
        raise ConfigError("--batch and --repeats must be >= 1")
    out = prepare_out_dir(args.out, "bench", ("bench.json", "bench.md"))
    if args.aihwkit and not Path(args.aihwkit).is_file():
        raise ConfigError(f"--aihwkit {args.aihwkit}: no such interpreter (make aihwkit-venv builds one)")
    return run_bench(out, batch=args.batch, repeats=args.repeats, contention=args.contention,
                     aihwkit_python=args.aihwkit)


def cmd_deploy(args: argparse.Namespace) -> int:
    from experiments.deploy import deploy_config, load_run, run_deploy

    if args.seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {args.seeds}")
    overrides = ["hardware.preset=pcm"] + (args.set or [])
    cfg, _ = load_run(Path(args.run_dir))  # a missing run or a bad override is an error
    deploy_config(cfg, overrides)  # before any folder is created
    out = prepare_out_dir(args.out or str(Path(args.run_dir) / "deploy"), "deploy", ("deploy.csv", "drift.png"))
    return run_deploy(Path(args.run_dir), out, overrides, seeds=args.seeds)


def cmd_memory(args: argparse.Namespace) -> int:
    from experiments.memory_report import load_memory_config, run_memory
    from experiments.runner.commands import check_executor_args

    check_executor_args(args)
    loaded = load_memory_config(args.config)  # config errors before any folder is created
    out = prepare_out_dir(args.out, Path(args.config).stem, ("memory.csv", "memory.png", "ratios.md"))
    return run_memory(args.config, out, args, loaded)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="onchip-ff", description="Forward-only learning on modelled in-memory-computing "
                "hardware (Distance-Forward, Forward-Forward, backprop baseline).")
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train one configuration, write metrics/checkpoint/config")
    t.add_argument("config", nargs="?", help="TOML config, e.g. experiments/configs/df_mlp_fmnist.toml")
    t.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                   help="override one config value (repeatable); VALUE is read as TOML")
    t.add_argument("--out", help="output folder (default runs/<config>-<time>); must not hold results")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--resume", metavar="DIR", help="continue the interrupted run in DIR after its last "
                   "finished epoch (same result as an uninterrupted run)")
    t.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    t.set_defaults(func=cmd_train)

    d = sub.add_parser("demo", help="smallest end-to-end showcase: DF vs BP on Fashion-MNIST")
    d.add_argument("--out", help="output folder (default runs/demo-<time>)")
    d.add_argument("--epochs", type=int, default=2, help="epochs per method (default 2)")
    d.add_argument("--no-progress", action="store_true", help="no progress bar")
    d.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    d.set_defaults(func=cmd_demo)

    b = sub.add_parser("bench", help="time simulator reads, DF/BP train steps on every preset and device "
                       "kernels against torch float32")
    b.add_argument("--out", help="output folder (default runs/bench-<time>)")
    b.add_argument("--batch", type=int, default=256, help="batch size (default 256)")
    b.add_argument("--repeats", type=int, default=10, help="timed repeats per entry (median; default 10)")
    b.add_argument("--contention", action="store_true",
                   help="also time the DF steps beside two busy-loop processes (slowdown vs alone)")
    b.add_argument("--aihwkit", metavar="PYTHON",
                   help="also time aihwkit 1.2.0's closest configurations with this interpreter, side by side")
    b.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    b.set_defaults(func=cmd_bench)

    dp = sub.add_parser("deploy", help="program a trained run onto simulated tiles (default pcm) and "
                        "evaluate it 1 s .. 1 year after programming, with and without drift compensation")
    dp.add_argument("run_dir", help="the --out folder of an `onchip-ff train` run")
    dp.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                    help="hardware override (repeatable), e.g. hardware.preset=pcm, hardware.pcm.drift_scale=2")
    dp.add_argument("--seeds", type=int, default=1, help="programming-noise seeds (default 1)")
    dp.add_argument("--out", help="output folder (default RUN_DIR/deploy)")
    dp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    dp.set_defaults(func=cmd_deploy)

    m = sub.add_parser("memory", help="training-memory accountant vs measured bytes (DF, FF, BP, "
                       "checkpointed BP): memory.csv, memory.png, ratios.md")
    m.add_argument("config", help="memory TOML, e.g. experiments/configs/memory_fmnist.toml")
    m.add_argument("--out", help="output folder (default runs/<config>-<time>); after an "
                   "interruption, the same --out resumes from OUT/memory.sqlite")
    m.add_argument("--store", help="results store of the points (default OUT/memory.sqlite)")
    from experiments.runner.commands import add_executor_args
    # inline by default: measured in a process forked from the runner's forkserver, the conv
    # backward of BP CNN points peaks 304 kB (0.7 %) higher than in a plain process (cause not found)
    add_executor_args(m, overrides=False, executor="inline")
    m.set_defaults(func=cmd_memory)

    from experiments.runner.commands import add_parsers as add_runner_parsers
    add_runner_parsers(sub)  # sweep, results (experiments/runner/commands.py)
    from experiments.robustness import add_parser as add_robustness_parser
    add_robustness_parser(sub)
    from experiments.pipeline import add_parser as add_pipeline_parser
    add_pipeline_parser(sub)
    from experiments.crosscheck import add_parser as add_crosscheck_parser
    add_crosscheck_parser(sub)
    from experiments.results_page import add_parser as add_results_page_parser
    add_results_page_parser(sub)
    return p


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as an interrupt."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    """Run one command; errors meant for people (bad input, full disk, unreadable files) print one
    line and return 2, an interrupt (Ctrl-C, SIGTERM) returns 130 / 143."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    _thread_lock_for_progress_bars()
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except (OnchipError, OSError, sqlite3.Error) as exc:
        if debug:
            traceback.print_exc()
        print(f"onchip-ff: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        what = "terminated" if isinstance(exc, Terminated) else "interrupted"
        print(f"onchip-ff: {what}; finished epochs and runs are saved (train: continue with --resume DIR)",
              file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _one_line(exc: BaseException) -> str:
    """The message of an error for people; OS and SQLite errors say what failed and what to do."""
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        hint = {errno.ENOSPC: "free some disk space or write elsewhere",
                errno.EACCES: "check the permissions", errno.EROFS: "the file system is read-only: write elsewhere",
                errno.EIO: "the storage failed: check the disk"}.get(exc.errno, "check the path and the disk")
        return f"{exc.strerror or exc}{where}; {hint}; nothing half-written was left behind"
    if isinstance(exc, sqlite3.Error):
        return f"results store: {exc} (full disk or a broken file?); the runs already stored are kept"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
