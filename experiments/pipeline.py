"""`onchip-ff pipeline CONFIG --processes 1 2`: DeeperForward's layer-pipelined training
(onchip_ff/pipeline.py) timed with each number of processes (x threads per process); writes
DIR/pipeline.json and DIR/pipeline.md (samples/s, speed-up, and per stage the share of time spent
computing, waiting for input and waiting to send, which says what limits the pipeline)."""

from __future__ import annotations

import argparse
import time

from common.errors import ConfigError
from experiments.outdir import atomic_write_json, atomic_write_text


def stage_line(s: dict) -> str:
    wall = s["wall_s"] or float("nan")
    return (f"layers {s['layers'][0]}-{s['layers'][-1]}: compute {100 * s['compute_s'] / wall:.0f} %, "
            f"wait input {100 * s['recv_wait_s'] / wall:.0f} %, wait send {100 * s['send_wait_s'] / wall:.0f} %")


def table(runs: list[dict]) -> str:
    base = runs[0]["samples_per_s"]
    lines = ["| processes | threads/process | split (layers per stage) | steps | samples/s | speed-up vs first row | stages |",
             "|---|---|---|---|---|---|---|"]
    for r in runs:
        split = " / ".join(f"{s[0]}-{s[-1]}" for s in r["split"])
        stages = "; ".join(stage_line(s) for s in r["stages"])
        lines.append(f"| {r['processes']} | {r['threads_per_process']} | {split} | {r['steps']} | "
                     f"{r['samples_per_s']:.1f} | {r['samples_per_s'] / base:.2f} | {stages} |")
    return "\n".join(lines)


def cmd_pipeline(args: argparse.Namespace) -> int:
    import torch

    from experiments.outdir import prepare_out_dir
    from onchip_ff import config
    from onchip_ff.pipeline import check_pipeline
    cfg = config.load(args.config, args.set or [])
    check_pipeline(cfg)
    combos = [(p, t) for p in args.processes for t in args.threads]
    if any(p < 1 for p, _ in combos) or any(t < 1 for _, t in combos):
        raise ConfigError("--processes and --threads must be >= 1")
    if args.warmup < 0:
        raise ConfigError("--warmup must be >= 0")
    if args.steps < 0:
        raise ConfigError("--steps must be >= 0 (0 = all of train.epochs)")
    out = prepare_out_dir(args.out, "pipeline", ("pipeline.json", "pipeline.md"))
    from onchip_ff.pipeline import run_pipeline
    runs = []
    for p, t in combos:
        print(f"pipeline: {p} process(es) x {t} thread(s), {args.steps or 'all'} steps ...", flush=True)
        t0 = time.perf_counter()
        r = run_pipeline(cfg, p, args.steps, t, warmup=args.warmup)
        r.pop("state")
        r["launch_s"] = time.perf_counter() - t0 - r["wall_s"]
        for s in r["stages"]:
            s["losses"] = s["losses"][-len(s["layers"]):]  # the last step's only
        runs.append(r)
        print(f"  {r['samples_per_s']:.1f} samples/s ({r['wall_s']:.1f} s for {r['samples']} samples; "
              f"split {r['split']})", flush=True)
    device = cfg.train.device + (f" ({torch.cuda.get_device_name(0)})" if cfg.train.device == "cuda" else "")
    meta = {"config": args.config, "device": device, "cpu_count": __import__("os").cpu_count(),
            "torch": torch.__version__, "runs": runs}
    atomic_write_json(out / "pipeline.json", meta)
    md = f"# DeeperForward layer pipeline: {args.config} on {device}\n\n{table(runs)}\n"
    atomic_write_text(out / "pipeline.md", md)
    print("\n" + table(runs) + f"\n\nwrote {out / 'pipeline.json'} and {out / 'pipeline.md'}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("pipeline", help="time DeeperForward's layer-pipelined training (torch.distributed) "
                       "with 1, 2, ... processes: pipeline.json, pipeline.md")
    p.add_argument("config", help="DeeperForward TOML, e.g. experiments/configs/deeperforward_cnn4_fmnist.toml")
    p.add_argument("--processes", type=int, nargs="+", default=[1, 2],
                   help="pipeline stages (processes) to time, one run each (default 1 2)")
    p.add_argument("--threads", type=int, nargs="+", default=[1],
                   help="torch threads per process; every processes x threads pair is one run (default 1)")
    p.add_argument("--steps", type=int, default=50,
                   help="mini-batches per run (default 50; 0 = all of train.epochs)")
    p.add_argument("--warmup", type=int, default=2,
                   help="first steps not timed (cuDNN/oneDNN set-up; the pipeline drains after them; default 2)")
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="config override (repeatable)")
    p.add_argument("--out", help="output folder (default runs/pipeline-<time>)")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    p.set_defaults(func=cmd_pipeline)
