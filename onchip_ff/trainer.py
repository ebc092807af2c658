"""Epoch loop: shuffling, evaluation, per-epoch history, atomic metrics/checkpoint files, progress."""

from __future__ import annotations

import json
import math
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

import onchip_ff
from onchip_ff import config as config_mod
from onchip_ff.config import Config
from onchip_ff.data import Dataset
from onchip_ff.errors import DivergedError
from onchip_ff.reference import build_learner
from hw_models.memory_measure import RunProbe


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder and rename: never a half-written file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def atomic_torch_save(path: Path, obj: Any) -> None:
    import io
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


class _NoBar:
    """Stands in for the progress bar when progress is off (tqdm would still create its locks)."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


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
    """train.lr_schedule = "cosine": every group's lr = its initial lr * (1 + cos(pi * step / total)) / 2."""
    if t.lr_schedule != "cosine":
        return
    for opt in optimizers:
        for group in opt.param_groups:
            base = group.setdefault("initial_lr", group["lr"])
            group["lr"] = base * 0.5 * (1.0 + math.cos(math.pi * step / total_steps))


def check_device(cfg: Config) -> str:
    """The torch device of the run (train.device), or ConfigError when it cannot be used."""
    from onchip_ff.errors import ConfigError
    device = cfg.train.device
    if device == "cuda":
        if cfg.hardware.backend != "torch":
            raise ConfigError("train.device = 'cuda' needs hardware.backend = 'torch' (the simulator "
                              "runs its tiles in numpy/numba on the CPU); use train.device = 'cpu'")
        if not torch.cuda.is_available():
            raise ConfigError("train.device = 'cuda', but PyTorch sees no CUDA GPU here; use "
                              "train.device = 'cpu'")
    return device


def train(cfg: Config, data: Dataset, out_dir: Path | None = None, progress: bool = True,
          desc: str | None = None) -> dict[str, Any]:
    """Train per cfg on data; if out_dir is given, write metrics.json, checkpoint.pt and
    config.toml there (metrics and checkpoint rewritten atomically after every epoch)."""
    t = cfg.train
    if t.threads:
        from hw_models.blas import set_threads
        set_threads(t.threads)
    device = check_device(cfg)
    rng = np.random.default_rng(t.seed)
    generator = torch.Generator().manual_seed(t.seed)  # CPU generator on every device: same draws
    learner = build_learner(cfg, data.input_shape, data.n_classes, generator).to(device)
    n_eval = t.train_eval_samples or len(data.y_train)
    memory = RunProbe(cfg, learner, data.input_shape, data.n_classes, min(t.batch_size, len(data.y_train)),
                      steps=2 if device == "cpu" else 0)
    if device != "cpu":
        memory.result["note"] = "not measured: the probe measures the CPU allocator (train.device = 'cpu')"
        x_all, y_all = torch.from_numpy(data.x_train).to(device), torch.from_numpy(data.y_train).to(device)
    metrics: dict[str, Any] = {
        "status": "running", "method": cfg.objective.method, "backend": cfg.hardware.backend,
        "arch": cfg.model.arch, "dataset": data.name, "seed": t.seed, "epochs": 0,
        "epochs_planned": t.epochs, "n_train": int(len(data.y_train)), "n_test": int(len(data.y_test)),
        "train_accuracy_samples": int(min(n_eval, len(data.y_train))),
        "test_accuracy": None, "train_accuracy": None, "wall_s": 0.0, "train_s": 0.0,
        "history": [], "version": onchip_ff.__version__, "torch_version": torch.__version__,
        "threads": torch.get_num_threads(), "python": platform.python_version(), "device": device,
    }
    if out_dir is not None:
        (out_dir / "config.toml").write_text(config_mod.dumps(cfg))
    n = len(data.y_train)
    steps = math.ceil(n / t.batch_size)
    start = time.perf_counter()
    train_s = 0.0
    bar = (tqdm(total=t.epochs * steps, desc=desc or cfg.objective.method, unit="step",
                dynamic_ncols=True, leave=True, mininterval=0.5) if progress else _NoBar())
    try:
        for epoch in range(1, t.epochs + 1):
            t0 = time.perf_counter()
            learner.train()
            perm = rng.permutation(n)
            loss_sum = 0.0
            for s in range(steps):
                set_learning_rates(learner.optimizers, t, (epoch - 1) * steps + s, t.epochs * steps)
                idx = perm[s * t.batch_size:(s + 1) * t.batch_size]
                if device == "cpu":
                    xb, yb = torch.from_numpy(data.x_train[idx]), torch.from_numpy(data.y_train[idx])
                else:  # the whole training set lives on the device
                    idx_t = torch.from_numpy(idx).to(device)
                    xb, yb = x_all[idx_t], y_all[idx_t]
                with memory.step(xb, yb):  # profiles the first two steps of the run only
                    step = learner.train_step(xb, yb)
                if not math.isfinite(step["loss"]):
                    raise DivergedError(f"non-finite loss {step['loss']} at epoch {epoch}, step {s + 1}; "
                                        "lower train.lr or check the data normalization")
                loss_sum += step["loss"]
                bar.update(1)
                if s % 20 == 0:
                    bar.set_postfix(epoch=epoch, loss=f"{step['loss']:.4f}")
            train_s += time.perf_counter() - t0
            memory.finish()
            learner.eval()
            test_acc = accuracy(learner, data.x_test, data.y_test, t.eval_batch_size, device)
            train_acc = accuracy(learner, data.x_train[:n_eval], data.y_train[:n_eval], t.eval_batch_size,
                                 device)
            wall = time.perf_counter() - start
            metrics["history"].append({"epoch": epoch, "loss": loss_sum / steps,
                                       "train_accuracy": train_acc, "test_accuracy": test_acc,
                                       "wall_s": wall})
            metrics.update(epochs=epoch, test_accuracy=test_acc, train_accuracy=train_acc,
                           wall_s=wall, train_s=train_s, memory=memory.result)
            bar.set_postfix(epoch=epoch, test_acc=f"{test_acc:.4f}")
            if out_dir is not None:
                atomic_torch_save(out_dir / "checkpoint.pt", {
                    "model": learner.state_dict(), "optimizers": [o.state_dict() for o in learner.optimizers],
                    "config": config_mod.to_dict(cfg), "epoch": epoch,
                    "rng": rng.bit_generator.state, "torch_generator": generator.get_state()})
                atomic_write_json(out_dir / "metrics.json", metrics)
    finally:
        bar.close()
    if cfg.deploy.preset:  # train-then-deploy: accuracy vs time after programming
        from onchip_ff.deployment import evaluate_drift
        d = cfg.deploy
        metrics["deploy"] = evaluate_drift(
            cfg, {k: v.cpu() for k, v in learner.state_dict().items()}, data, accuracy, [f"hardware.preset={d.preset}"], d.times_s,
            d.compensation, [1000 * t.seed + i for i in range(d.draws)])
    metrics["status"] = "done"
    if out_dir is not None:
        atomic_write_json(out_dir / "metrics.json", metrics)
    metrics["_learner"] = learner
    return metrics
