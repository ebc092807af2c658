"""`onchip-ff deploy RUN_DIR`: program a trained run's weights onto simulated tiles and evaluate the
test accuracy at times after programming (drift), with and without global drift compensation."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from experiments.outdir import atomic_write_text

from onchip_ff.checkpoint import load_file
from onchip_ff import config
from onchip_ff.data import load_dataset
from onchip_ff.deployment import deploy_config, evaluate_drift
from common.errors import ConfigError
from onchip_ff.trainer import accuracy

TIMES_S = (1.0, 3600.0, 86400.0, 2.592e6, 3.1536e7)  # 1 s, 1 h, 1 day, 1 month, 1 year

__all__ = ["deploy_config", "load_run", "run_deploy"]


def load_run(run_dir: Path) -> tuple[config.Config, dict]:
    """The resolved config and the checkpoint of a finished `onchip-ff train` run."""
    cfg_path, ckpt_path = run_dir / "config.toml", run_dir / "checkpoint.pt"
    if not cfg_path.is_file() or not ckpt_path.is_file():
        raise ConfigError(f"{run_dir} holds no config.toml and checkpoint.pt; pass the --out folder of "
                          "an `onchip-ff train` run")
    ckpt = load_file(ckpt_path, "checkpoint.pt of an `onchip-ff train` run")
    if not isinstance(ckpt.get("model"), dict):
        raise ConfigError(f"{ckpt_path} holds no model state (key 'model'); pass the --out folder of an "
                          "`onchip-ff train` run")
    return config.load(cfg_path), ckpt


def _print(row: dict) -> None:
    print(f"seed {row['seed']} compensation {'on ' if row['compensation'] else 'off'} "
          f"t = {row['time']:<8} test accuracy {row['test_accuracy']:.4f}", flush=True)


def run_deploy(run_dir: Path, out: Path, overrides: list[str], seeds: int = 1) -> int:
    cfg, state = load_run(run_dir)
    data = load_dataset(cfg.data)
    rows = evaluate_drift(cfg, state["model"], data, accuracy, overrides, TIMES_S, (False, True),
                          list(range(seeds)), report=_print)
    float_acc = float(json.loads((run_dir / "metrics.json").read_text())["test_accuracy"])
    f = io.StringIO(newline="")
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "deploy.csv", f.getvalue())
    from experiments.plots import plot_drift
    preset = deploy_config(cfg, overrides).hardware.preset
    plot_drift(rows, float_acc, out / "drift.png",
               title=f"{cfg.objective.method} {cfg.model.arch} deployed on {preset}")
    print(f"float accuracy {float_acc:.4f}; -> {out / 'deploy.csv'}, {out / 'drift.png'}")
    return 0
