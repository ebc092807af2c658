"""`onchip-ff demo`: Distance-Forward and backprop on Fashion-MNIST, same MLP, same epochs, in the
float reference; then Distance-Forward trained on the simulated 8-bit fixed-point array."""

from __future__ import annotations

import json
from pathlib import Path

from onchip_ff import config
from onchip_ff.data import load_dataset
from onchip_ff.trainer import train
from experiments.plots import plot_histories

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DEMO_RUNS = (("df", "df_mlp_fmnist.toml", []), ("bp", "bp_mlp_fmnist.toml", []),
             ("df_sim_fixed8", "df_mlp_fmnist.toml", ["hardware.backend=sim", "hardware.preset=fixed8"]))


def run_demo(out: Path, epochs: int = 2, progress: bool = True, overrides: list[str] = ()) -> int:
    """Train the demo runs into out/<run>/ and write out/demo.png and out/summary.json;
    `overrides` (section.key=value) apply to every run (tests use a tiny synthetic set)."""
    cfgs = {name: config.load(CONFIG_DIR / file, [f"train.epochs={epochs}"] + extra + list(overrides))
            for name, file, extra in DEMO_RUNS}
    data = load_dataset(next(iter(cfgs.values())).data)
    results = {}
    for name, cfg in cfgs.items():
        run_dir = out / name
        run_dir.mkdir(exist_ok=True)
        m = train(cfg, data, out_dir=run_dir, progress=progress, desc=name)
        m.pop("_learner")
        results[name] = m
    plot_histories({n: m["history"] for n, m in results.items()}, out / "demo.png",
                   title="Fashion-MNIST, MLP 784-1000-1000-1000: float reference and sim/fixed8")
    summary = {n: {k: m[k] for k in ("test_accuracy", "train_accuracy", "epochs", "wall_s")}
               for n, m in results.items()}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\n{'run':<16}{'test acc':>10}{'train acc':>11}{'epochs':>8}{'wall s':>9}")
    for n, s in summary.items():
        print(f"{n:<16}{s['test_accuracy']:>10.4f}{s['train_accuracy']:>11.4f}{s['epochs']:>8}"
              f"{s['wall_s']:>9.1f}")
    print(f"\nplot: {out / 'demo.png'}  runs: {out}/<method>/metrics.json")
    return 0
