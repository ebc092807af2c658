"""The training loop: seeded initialization, shuffling, train_step per batch, evaluation and the
per-epoch history, returning a RunResult.  Side effects (files, progress bar, memory probe,
deployment) are Observers attached by the caller (experiments/observers.py)."""

from __future__ import annotations

import contextlib
import math
import platform
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import onchip_ff
from common.errors import ConfigError, DivergedError
from hw_models.blas import threads
from onchip_ff import config as config_mod
from onchip_ff.augment import augment
from onchip_ff.checkpoint import learner_state, restore_learner
from onchip_ff.config import Config
from onchip_ff.data import Dataset, standardize
from onchip_ff.methods import build_learner


@torch.no_grad()
def accuracy(learner, x: np.ndarray, y: np.ndarray, batch_size: int, device: str = "cpu") -> float:
    if len(y) == 0:
        return float("nan")
    correct = 0
    for i in range(0, len(y), batch_size):
        scores = learner.scores(torch.from_numpy(x[i:i + batch_size]).to(device))
        correct += int((scores.argmax(1).cpu().numpy() == y[i:i + batch_size]).sum())
    return correct / len(y)


def set_learning_rates(optimizers, t, step: int, total_steps: int) -> None:
    """The lr of every group at 0-based `step` of `total_steps` (train.epochs equal epochs), from its
    initial lr `base`: "constant" leaves it; "cosine": lr_min + (base - lr_min) * (1 + cos(pi * step /
    total_steps)) / 2; "cosine_epoch": the same with step -> the epoch's 0-based index e and total ->
    train.lr_period_epochs (0: train.epochs), constant within an epoch (torch's CosineAnnealingLR(T_max
    = that period, eta_min = lr_min) stepped after every epoch)."""
    if t.lr_schedule == "constant":
        return
    if t.lr_schedule == "cosine_epoch":
        steps_per_epoch = total_steps // t.epochs
        step, total_steps = step // steps_per_epoch, t.lr_period_epochs or t.epochs
    for opt in optimizers:
        for group in opt.param_groups:
            base = group.setdefault("initial_lr", group["lr"])
            group["lr"] = t.lr_min + (base - t.lr_min) * 0.5 * (1.0 + math.cos(math.pi * step / total_steps))


def check_device(cfg: Config) -> str:
    """The torch device of the run (train.device), or ConfigError when it cannot be used."""
    device = cfg.train.device
    if device == "cuda":
        if cfg.hardware.backend == "sim":
            from hw_models.torch_engine import unsupported
            if cfg.hardware.device.engine == "numba":
                raise ConfigError("train.device = 'cuda' with hardware.engine = 'numba' (CPU kernels): set "
                                  "hardware.engine = 'torch' or 'auto', or train.device = 'cpu'")
            why = unsupported(cfg.hardware.device)
            if why:
                raise ConfigError(f"train.device = 'cuda' runs the simulator's torch engine, but {why}; "
                                  "use train.device = 'cpu'")
        if not torch.cuda.is_available():
            raise ConfigError("train.device = 'cuda', but PyTorch sees no CUDA GPU here; use "
                              "train.device = 'cpu'")
    return device


AUGMENT_STREAM = 1  # the augmentation generator is default_rng([train.seed, AUGMENT_STREAM]): its own
# stream, so switching augmentation on leaves shuffling, initialization and negatives as they were
LOSS_WARN_FACTOR = 10.0  # an epoch's mean loss above this times the first step's warns (divergence)


@dataclass
class Run:
    """What the observers see of a run in progress: its config and data, the learner, the metrics
    dict being filled (metrics["history"] has one row per finished epoch), the epoch, the RNGs
    (numpy: shuffling; torch: initialization) and the torch device."""

    cfg: Config
    data: Dataset
    learner: Any
    metrics: dict[str, Any]
    rng: np.random.Generator
    generator: torch.Generator
    device: str
    steps_per_epoch: int
    epoch: int = 0
    resumed: bool = False  # continued from a checkpoint (train(..., resume=...))
    aug_rng: np.random.Generator | None = None  # the augmentation draws (train.augment_*), else None


@dataclass
class RunResult:
    """What train() returns: the trained learner (`model`: train_step, scores, state_dict), the final
    metrics (as metrics.json holds them) and the per-epoch history."""

    model: Any
    metrics: dict[str, Any]

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.metrics["history"]


class Observer:
    """Hooks of train(), each a no-op here; the commands attach the observers of
    experiments/observers.py (files, progress bar, memory probe, deployment).  Order of the calls:
    on_start; per step `step(run, x, y)` (a context around train_step) and on_step; per epoch
    before_eval (training steps done), then on_epoch (evaluated, history row added);
    after_training (loop done), then on_end (metrics["status"] = "done"); on_abort(run, exc) when
    an exception or an interrupt stops the run; close() always."""

    def on_start(self, run: Run) -> None:
        pass

    def step(self, run: Run, x: torch.Tensor, y: torch.Tensor):
        return contextlib.nullcontext()

    def on_step(self, run: Run, step: int, loss: float) -> None:
        pass

    def before_eval(self, run: Run) -> None:
        pass

    def on_epoch(self, run: Run) -> None:
        pass

    def after_training(self, run: Run) -> None:
        pass

    def on_end(self, run: Run) -> None:
        pass

    def on_abort(self, run: Run, exc: BaseException) -> None:
        """The run stops on exc (metrics["status"] is "interrupted" or "failed", "error" set)."""

    def close(self) -> None:
        pass


def train(cfg: Config, data: Dataset, observers: Sequence[Observer] = (),
          resume: dict[str, Any] | None = None) -> RunResult:
    """Train per cfg on data: seeded initialization, shuffling per epoch, train_step per batch,
    test, train (and validation) accuracy after every train.eval_every-th epoch and the last (the
    history rows of the others hold None).  Non-finite values — the loss at any
    step, the weights or the simulated arrays' conductances after an epoch — raise DivergedError;
    an epoch's mean loss above LOSS_WARN_FACTOR times the first step's warns.  resume: a checkpoint
    (`checkpoint(run)`) and the metrics it was written with: training continues after its epoch,
    exactly as an uninterrupted run.  train.threads applies inside the call only.  Files,
    progress, memory probes and deployment are observers (experiments/observers.py)."""
    with threads(cfg.train.threads):  # the caller's thread settings come back afterwards
        return _train(cfg, data, observers, resume)


def checkpoint(run: Run) -> dict[str, Any]:
    """The run's state after run.epoch, as tensors and plain values (onchip_ff.checkpoint): the
    learner's, the RNGs' (numpy: shuffling and augmentation; torch: initialization, negatives)."""
    state = {**learner_state(run.learner), "config": config_mod.to_dict(run.cfg), "epoch": run.epoch,
             "rng": run.rng.bit_generator.state, "torch_generator": run.generator.get_state()}
    if run.aug_rng is not None:
        state["augment_rng"] = run.aug_rng.bit_generator.state
    return state


def _check_finite(learner, epoch: int) -> None:
    for name, p in learner.state_dict().items():
        if p.is_floating_point() and not torch.isfinite(p).all():
            raise DivergedError(f"non-finite values in {name} after epoch {epoch}; lower train.lr")
    for i, m in enumerate(getattr(learner, "analog_modules", [])):
        if not torch.isfinite(torch.as_tensor(m.tile.weights())).all():
            raise DivergedError(f"non-finite conductances in simulated array {i} after epoch {epoch}; "
                                "lower train.lr")


def _train(cfg: Config, data: Dataset, observers: Sequence[Observer], resume: dict | None) -> RunResult:
    t = cfg.train
    device = check_device(cfg)
    rng = np.random.default_rng(t.seed)
    generator = torch.Generator().manual_seed(t.seed)  # CPU generator on every device: same draws
    learner = build_learner(cfg, data.input_shape, data.n_classes, generator).to(device)
    n_eval = t.train_eval_samples or len(data.y_train)
    if device != "cpu":
        x_all, y_all = torch.from_numpy(data.x_train).to(device), torch.from_numpy(data.y_train).to(device)
    metrics: dict[str, Any] = {
        "status": "running", "method": cfg.objective.method, "backend": cfg.hardware.backend,
        "arch": cfg.model.arch, "dataset": data.name, "dataset_sha256": data.sha256, "seed": t.seed, "epochs": 0,
        "epochs_planned": t.epochs, "n_train": int(len(data.y_train)), "n_test": int(len(data.y_test)),
        "train_accuracy_samples": int(min(n_eval, len(data.y_train))),
        "test_accuracy": None, "train_accuracy": None, "wall_s": 0.0, "train_s": 0.0,
        "history": [], "version": onchip_ff.__version__, "torch_version": torch.__version__,
        "threads": torch.get_num_threads(), "python": platform.python_version(), "device": device,
    }
    if getattr(learner, "needs_validation", False) and not len(data.y_val):
        raise ConfigError("objective.eval_range = 'validation' chooses the evaluated layers on the validation "
                          "split, but there is none: set data.val_fraction > 0 (the published DeeperForward "
                          "code holds out 10 000 of 60 000: 0.1667) or objective.eval_range = 'fixed'")
    n = len(data.y_train)
    steps = math.ceil(n / t.batch_size)
    if t.augments and data.x_train.ndim != 4:
        raise ConfigError(f"train.augment_shift_px / train.augment_flip shift and mirror images, but "
                          f"data '{data.name}' gives vectors of shape {data.x_train.shape[1:]}; "
                          "turn augmentation off")
    aug_rng = np.random.default_rng([t.seed, AUGMENT_STREAM]) if t.augments else None
    black = float(standardize(np.zeros(1, np.float32), data.mean, data.std)[0])  # augmentation's border
    run = Run(cfg, data, learner, metrics, rng, generator, device, steps, aug_rng=aug_rng)
    first = 1
    if resume is not None:
        restore_learner(learner, resume["checkpoint"])
        rng.bit_generator.state = resume["checkpoint"]["rng"]
        generator.set_state(resume["checkpoint"]["torch_generator"])
        if aug_rng is not None:
            aug_rng.bit_generator.state = resume["checkpoint"]["augment_rng"]
        metrics.update(resume["metrics"], status="running")
        first = run.epoch = resume["checkpoint"]["epoch"] + 1
        run.resumed = True
    start = time.perf_counter() - metrics["wall_s"]
    train_s = metrics["train_s"]
    try:
        for o in observers:
            o.on_start(run)
        for epoch in range(first, t.epochs + 1):
            run.epoch = epoch
            t0 = time.perf_counter()
            learner.train()
            perm = rng.permutation(n)
            loss_sum = 0.0
            for s in range(steps):
                set_learning_rates(learner.optimizers, t, (epoch - 1) * steps + s, t.epochs * steps)
                idx = perm[s * t.batch_size:(s + 1) * t.batch_size]
                if aug_rng is not None:  # drawn on the CPU, so every device sees the same batches
                    xb = torch.from_numpy(augment(data.x_train[idx], aug_rng, t.augment_shift_px,
                                                  t.augment_flip, black)).to(device)
                    yb = torch.from_numpy(data.y_train[idx]).to(device)
                elif device == "cpu":
                    xb, yb = torch.from_numpy(data.x_train[idx]), torch.from_numpy(data.y_train[idx])
                else:  # the whole training set lives on the device
                    idx_t = torch.from_numpy(idx).to(device)
                    xb, yb = x_all[idx_t], y_all[idx_t]
                with contextlib.ExitStack() as stack:
                    for o in observers:
                        stack.enter_context(o.step(run, xb, yb))
                    step = learner.train_step(xb, yb)
                if not math.isfinite(step["loss"]):
                    raise DivergedError(f"non-finite loss {step['loss']} at epoch {epoch}, step {s + 1}; "
                                        "lower train.lr or check the data normalization")
                loss_sum += step["loss"]
                metrics.setdefault("first_loss", step["loss"])  # the start that divergence is judged by
                for o in observers:
                    o.on_step(run, s, step["loss"])
            train_s += time.perf_counter() - t0
            for o in observers:
                o.before_eval(run)
            learner.eval()
            row = {"epoch": epoch, "loss": loss_sum / steps, "train_accuracy": None, "test_accuracy": None}
            if len(data.y_val):
                row["val_accuracy"] = None
            if epoch % t.eval_every == 0 or epoch == t.epochs:  # else the row keeps None (not measured)
                if getattr(learner, "needs_validation", False):  # DeeperForward's eval_range = "validation":
                    learner.choose_eval_layers(data.x_val, data.y_val, t.eval_batch_size, device)  # never the test set
                    row["eval_layers"] = learner.eval_layers
                row["test_accuracy"] = accuracy(learner, data.x_test, data.y_test, t.eval_batch_size, device)
                row["train_accuracy"] = accuracy(learner, data.x_train[:n_eval], data.y_train[:n_eval],
                                                 t.eval_batch_size, device)
                if len(data.y_val):  # the held-out split that model selection reads (never the test set)
                    row["val_accuracy"] = accuracy(learner, data.x_val, data.y_val, t.eval_batch_size, device)
                metrics.update({k: row[k] for k in ("test_accuracy", "train_accuracy", "val_accuracy") if k in row})
            row["wall_s"] = wall = time.perf_counter() - start
            metrics.update(epochs=epoch, wall_s=wall, train_s=train_s)
            metrics["history"].append(row)
            _check_finite(learner, epoch)
            first_loss = metrics["first_loss"]
            if row["loss"] > LOSS_WARN_FACTOR * max(abs(first_loss), 1e-12):
                warnings.warn(f"epoch {epoch} mean loss {row['loss']:.4g} is over {LOSS_WARN_FACTOR:g}x the loss of "
                              f"the first step ({first_loss:.4g}): training is diverging; lower train.lr", stacklevel=2)
            for o in observers:
                o.on_epoch(run)
        for o in observers:
            o.after_training(run)
        metrics["status"] = "done"
        for o in observers:
            o.on_end(run)
    except BaseException as exc:
        metrics["status"] = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        metrics["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
        for o in observers:
            o.on_abort(run, exc)
        raise
    finally:
        for o in observers:
            o.close()
    return RunResult(learner, metrics)
