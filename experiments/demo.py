"""`onchip-ff demo`: Distance-Forward and backprop on Fashion-MNIST, same MLP, same epochs, in the
float reference; Distance-Forward trained on the simulated 8-bit fixed-point array and on simulated
PCM; then a small robustness curve (DF vs BP under programming noise, 3 seeds) and the drift of
their float-trained models programmed onto PCM (configs/robustness_demo.toml)."""

from __future__ import annotations

import argparse
from pathlib import Path

from experiments.outdir import atomic_write_json
from onchip_ff import config
from onchip_ff.data import load_dataset
from experiments.observers import run_training
from experiments.plots import plot_histories

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DEMO_RUNS = (("df", "df_mlp_fmnist.toml", []), ("bp", "bp_mlp_fmnist.toml", []),
             ("df_sim_fixed8", "df_mlp_fmnist.toml", ["hardware.backend=sim", "hardware.preset=fixed8"]),
             ("df_sim_pcm", "df_mlp_fmnist.toml", ["hardware.backend=sim", "hardware.preset=pcm"]))
ROBUSTNESS = CONFIG_DIR / "robustness_demo.toml"


def run_robustness(out: Path, progress: bool, overrides: list[str]) -> None:
    """The small robustness study into out/ (store, CSV, plots), run in this process."""
    from experiments.robustness import summary
    from experiments.robustness_report import report
    from experiments.robustness_spec import load_spec
    from experiments.runner.commands import execute

    spec = load_spec(ROBUSTNESS, list(overrides))
    out.mkdir(exist_ok=True)
    args = argparse.Namespace(executor="inline", workers=1, threads=None, ray_address=None,
                              retry_failed=False, no_progress=not progress)
    execute(spec.sweep, out / "robustness.sqlite", args)
    print(summary(spec, report(spec, out / "robustness.sqlite", out)))


def run_demo(out: Path, epochs: int = 2, progress: bool = True, overrides: list[str] = ()) -> int:
    """Train the demo runs into out/<run>/, write out/demo.png and out/summary.json, then the
    robustness study into out/robustness/; `overrides` (section.key=value) apply to every run
    (tests use a tiny synthetic set)."""
    cfgs = {name: config.load(CONFIG_DIR / file, [f"train.epochs={epochs}"] + extra + list(overrides))
            for name, file, extra in DEMO_RUNS}
    data = load_dataset(next(iter(cfgs.values())).data)
    results = {}
    for name, cfg in cfgs.items():
        run_dir = out / name
        run_dir.mkdir(exist_ok=True)
        results[name] = run_training(cfg, data, out_dir=run_dir, progress=progress, desc=name).metrics
    plot_histories({n: m["history"] for n, m in results.items()}, out / "demo.png",
                   title="Fashion-MNIST, MLP 784-1000-1000-1000: float reference, sim/fixed8, sim/pcm")
    summary = {n: {k: m[k] for k in ("test_accuracy", "train_accuracy", "epochs", "wall_s")}
               for n, m in results.items()}
    atomic_write_json(out / "summary.json", summary)
    print(f"\n{'run':<16}{'test acc':>10}{'train acc':>11}{'epochs':>8}{'wall s':>9}")
    for n, s in summary.items():
        print(f"{n:<16}{s['test_accuracy']:>10.4f}{s['train_accuracy']:>11.4f}{s['epochs']:>8}"
              f"{s['wall_s']:>9.1f}")
    print(f"\nrobustness: {ROBUSTNESS.name} (DF vs BP trained under programming noise, 3 seeds; "
          "float-trained models drifting on PCM)")
    run_robustness(out / "robustness", progress, overrides)
    print(f"\nplots: {out / 'demo.png'}, {out / 'robustness' / 'robustness.png'}, "
          f"{out / 'robustness' / 'drift.png'}  runs: {out}/<run>/metrics.json")
    return 0
