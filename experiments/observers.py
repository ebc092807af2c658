"""The observers the commands attach to onchip_ff.trainer.train: run files (config.toml, then
metrics.json and checkpoint.pt rewritten atomically after every epoch), the progress bar, the
memory probe (predicted vs measured peak bytes of the first steps, metrics["memory"]) and
train-then-deploy (metrics["deploy"]); `run_training` trains with the standard set."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from onchip_ff import config as config_mod
from common.errors import ConfigError
from onchip_ff.config import Config
from onchip_ff.data import Dataset
from onchip_ff.trainer import Observer, Run, RunResult, accuracy, checkpoint, train
from experiments.outdir import atomic_write_bytes, atomic_write_json


def atomic_torch_save(path: Path, obj: Any) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


class RunFiles(Observer):
    """DIR/config.toml and DIR/metrics.json (status "running") at the start; DIR/checkpoint.pt
    (onchip_ff.trainer.checkpoint: model and optimizer state, simulated arrays, resolved config,
    epoch, RNG states) and DIR/metrics.json after every epoch, atomically; metrics.json again at
    the end (status "done", deployment rows) or when the run stops (status "interrupted" or
    "failed", "error"), so the folder can be resumed or run again."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir

    def on_start(self, run: Run) -> None:
        if not run.resumed:
            atomic_write_bytes(self.out_dir / "config.toml", config_mod.dumps(run.cfg).encode())
        atomic_write_json(self.out_dir / "metrics.json", run.metrics)

    def on_epoch(self, run: Run) -> None:  # metrics first: a checkpoint never runs ahead of them
        atomic_write_json(self.out_dir / "metrics.json", run.metrics)
        atomic_torch_save(self.out_dir / "checkpoint.pt", checkpoint(run))

    def on_end(self, run: Run) -> None:
        atomic_write_json(self.out_dir / "metrics.json", run.metrics)

    def on_abort(self, run: Run, exc: BaseException) -> None:
        try:
            atomic_write_json(self.out_dir / "metrics.json", run.metrics)
        except OSError:  # e.g. the disk that stopped the run is still full: metrics.json stays as it was
            pass


class ProgressBar(Observer):
    """A tqdm bar on stderr over all steps: loss every 20 steps, test accuracy after each epoch."""

    def __init__(self, desc: str | None = None) -> None:
        self.desc, self.bar = desc, None

    def on_start(self, run: Run) -> None:
        self.bar = tqdm(total=run.cfg.train.epochs * run.steps_per_epoch, desc=self.desc or run.cfg.objective.method,
                        unit="step", dynamic_ncols=True, leave=True, mininterval=0.5,
                        initial=run.metrics["epochs"] * run.steps_per_epoch)

    def on_step(self, run: Run, step: int, loss: float) -> None:
        self.bar.update(1)
        if step % 20 == 0:
            self.bar.set_postfix(epoch=run.epoch, loss=f"{loss:.4f}")

    def on_epoch(self, run: Run) -> None:
        last = run.metrics["history"][-1]["test_accuracy"]
        self.bar.set_postfix(epoch=run.epoch, test_acc="-" if last is None else f"{last:.4f}")

    def after_training(self, run: Run) -> None:
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class MemoryProbe(Observer):
    """The accountant's predicted peak bytes of the run's training step and the bytes measured on
    its first two steps (CPU runs only): metrics["memory"] (accountant/probe.py RunProbe)."""

    def on_start(self, run: Run) -> None:
        self.probe = None
        if run.resumed:  # measured on the first steps of the run, kept in its metrics
            return
        from accountant.probe import RunProbe
        t = run.cfg.train
        self.probe = RunProbe(run.cfg, run.learner, run.data.input_shape, run.data.n_classes,
                              min(t.batch_size, len(run.data.y_train)), steps=2 if run.device == "cpu" else 0)
        if run.device != "cpu":
            self.probe.result["note"] = "not measured: the probe measures the CPU allocator (train.device = 'cpu')"

    def step(self, run: Run, x: torch.Tensor, y: torch.Tensor):
        return self.probe.step(x, y) if self.probe else contextlib.nullcontext()  # the first two steps only

    def before_eval(self, run: Run) -> None:
        if self.probe:
            self.probe.finish()

    def on_epoch(self, run: Run) -> None:
        if self.probe:
            run.metrics["memory"] = self.probe.result


AT_LIMIT = 0.98  # a weight counts as at its range limit from this fraction of weight_range() on


def at_range_limit(tiles: list) -> float:
    """Fraction of the weights of these arrays with |w| >= AT_LIMIT * the row's weight_range(): the
    devices an update cannot move further out (saturated)."""
    n = hit = 0
    for tile in tiles:
        w, r = tile.weights(), tile.weight_range()
        w, r = (np.asarray(a.cpu()) if isinstance(a, torch.Tensor) else np.asarray(a) for a in (w, r))
        hit += int((np.abs(w) >= AT_LIMIT * r).sum())
        n += w.size
    return hit / n if n else 0.0


class RangeUse(Observer):
    """Simulated runs: metrics["weights_at_range_limit"], the fraction of array weights within 2 % of
    their range limit after training (at_range_limit) — how much of the network saturated."""

    def after_training(self, run: Run) -> None:
        tiles = [m.tile for m in getattr(run.learner, "analog_modules", [])]
        if tiles:
            run.metrics["weights_at_range_limit"] = at_range_limit(tiles)


class Deployment(Observer):
    """[deploy] preset set: after training, the trained weights programmed onto that preset and
    evaluated at deploy.times_s after programming, with and without drift compensation, over
    deploy.draws programming seeds (1000 * train.seed + d): metrics["deploy"] rows."""

    def after_training(self, run: Run) -> None:
        d = run.cfg.deploy
        if not d.preset:
            return
        from onchip_ff.deployment import evaluate_drift
        state = {k: v.cpu() for k, v in run.learner.state_dict().items()}
        run.metrics["deploy"] = evaluate_drift(
            run.cfg, state, run.data, accuracy, [f"hardware.preset={d.preset}"], d.times_s, d.compensation,
            [1000 * run.cfg.train.seed + i for i in range(d.draws)])


def run_training(cfg: Config, data: Dataset, out_dir: Path | None = None, progress: bool = True,
                 desc: str | None = None, resume: dict | None = None) -> RunResult:
    """train() with the commands' observers: memory probe, progress bar (if progress), deployment
    (if [deploy] preset), run files (if out_dir); resume: see onchip_ff.trainer.train."""
    observers: list[Observer] = [MemoryProbe()]
    if progress:
        observers.append(ProgressBar(desc))
    observers += [RangeUse(), Deployment()]
    if out_dir is not None:
        observers.append(RunFiles(out_dir))
    return train(cfg, data, observers, resume)


def resume_state(run_dir: Path) -> tuple[Config, dict | None]:
    """The config of the train run in run_dir and what train(..., resume=) needs to continue it
    after its last checkpointed epoch (None: no epoch finished, start again in the folder).
    One-line errors for a finished run and unreadable files."""
    from experiments.outdir import run_status
    from onchip_ff.checkpoint import load_file
    if not (run_dir / "config.toml").is_file():
        raise ConfigError(f"--resume {run_dir}: no config.toml there; pass the --out folder of an `onchip-ff train` run")
    cfg = config_mod.load(run_dir / "config.toml")
    status = run_status(run_dir)
    if status == "done":
        raise ConfigError(f"--resume {run_dir}: the run finished already (metrics.json: done); nothing to continue")
    if not (run_dir / "checkpoint.pt").is_file():
        return cfg, None
    ckpt = load_file(run_dir / "checkpoint.pt", "checkpoint.pt of an `onchip-ff train` run")
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text())
        epoch = int(ckpt["epoch"])
        history = [row for row in metrics["history"] if row["epoch"] <= epoch]
        last = history[-1]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        raise ConfigError(f"--resume {run_dir}: metrics.json and checkpoint.pt do not fit together; "
                          "run it again with a new --out") from None
    if config_mod.to_dict(config_mod.from_dict(ckpt["config"], "checkpoint.pt", stored=True)) != config_mod.to_dict(cfg):
        raise ConfigError(f"--resume {run_dir}: checkpoint.pt was written for another config.toml")
    measured = [row for row in history if row["test_accuracy"] is not None] or [last]  # train.eval_every
    metrics.update(history=history, epochs=epoch, test_accuracy=measured[-1]["test_accuracy"],
                   train_accuracy=measured[-1]["train_accuracy"], wall_s=last["wall_s"])
    metrics.pop("error", None)
    if "val_accuracy" in last:
        metrics["val_accuracy"] = measured[-1]["val_accuracy"]
    return cfg, {"checkpoint": ckpt, "metrics": metrics}
