"""`onchip-ff deploy RUN_DIR`: program a trained run's weights onto simulated tiles and evaluate the
test accuracy at times after programming (drift), with and without global drift compensation."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch

from onchip_ff import config
from onchip_ff.data import load_dataset
from onchip_ff.errors import ConfigError
from onchip_ff.reference import build_learner
from onchip_ff.trainer import accuracy

TIMES_S = {"1 s": 1.0, "1 h": 3600.0, "1 day": 86400.0, "1 month": 2.592e6, "1 year": 3.1536e7}


def load_run(run_dir: Path) -> tuple[config.Config, dict]:
    """The resolved config and the checkpoint of a finished `onchip-ff train` run."""
    cfg_path, ckpt_path = run_dir / "config.toml", run_dir / "checkpoint.pt"
    if not cfg_path.is_file() or not ckpt_path.is_file():
        raise ConfigError(f"{run_dir} holds no config.toml and checkpoint.pt; pass the --out folder of "
                          "an `onchip-ff train` run")
    return config.load(cfg_path), torch.load(ckpt_path, weights_only=False)


def deploy_config(cfg: config.Config, overrides: list[str]) -> config.Config:
    """The run's config on the sim backend with the hardware overrides (validated)."""
    raw = config.to_dict(cfg)
    raw["hardware"] = {"backend": "sim"}
    return config.from_dict(config.apply_overrides(raw, overrides), "the run's config.toml with --set overrides")


def deployed_learner(dep: config.Config, state: dict, input_shape, n_classes: int, seed: int):
    """The learner of deploy config `dep` with the trained weights programmed onto its tiles
    (programming noise drawn now)."""
    learner = build_learner(dep, input_shape, n_classes, torch.Generator().manual_seed(seed))
    learner.load_state_dict(state["model"])
    with torch.no_grad():
        for m in learner.analog_modules:
            m.tile.program(m.weight.detach().reshape(m.weight.shape[0], -1).numpy())
            m.sync_from_device()
    return learner


def set_time(learner, t_s: float) -> None:
    for m in learner.analog_modules:
        m.tile.set_time(t_s)


def run_deploy(run_dir: Path, out: Path, overrides: list[str], seeds: int = 1) -> int:
    cfg, state = load_run(run_dir)
    data = load_dataset(cfg.data)
    rows = []
    for seed in range(seeds):
        for comp in (False, True):
            dep = deploy_config(cfg, overrides + [f"hardware.drift_compensation={'true' if comp else 'false'}"])
            learner = deployed_learner(dep, state, data.input_shape, data.n_classes, seed)
            learner.eval()
            for label, t in TIMES_S.items():
                set_time(learner, t)
                acc = accuracy(learner, data.x_test, data.y_test, cfg.train.eval_batch_size)
                rows.append({"seed": seed, "compensation": comp, "time": label, "time_s": t,
                             "test_accuracy": acc})
                print(f"seed {seed} compensation {'on ' if comp else 'off'} t = {label:<8} "
                      f"test accuracy {acc:.4f}", flush=True)
    float_acc = float(json.loads((run_dir / "metrics.json").read_text())["test_accuracy"])
    with open(out / "deploy.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    from experiments.plots import plot_drift
    plot_drift(rows, float_acc, out / "drift.png",
               title=f"{cfg.objective.method} {cfg.model.arch} deployed on {dep.hardware.preset}")
    print(f"float accuracy {float_acc:.4f}; -> {out / 'deploy.csv'}, {out / 'drift.png'}")
    return 0

