"""One run inside a worker process: rebuild the config from its stored JSON, load the data, train,
and hand back the result as plain data, failures included. Only worker processes import this
(and with it torch); the sweep process names it as "experiments.runner.worker:execute_run". Its
imports include what the trainer would import lazily: the forkserver imports them once, and every
run's process, forked from it, starts with them loaded."""

from __future__ import annotations

import threading
import traceback
from typing import Any

import torch
from tqdm import tqdm
import torch._dynamo  # noqa: F401  torch.optim imports it lazily (~2 s)

from hw_models.blas import set_threads
import hw_models.presets  # noqa: F401  imported lazily by config (numba, scipy: ~0.7 s)
import hw_models.torch_layers  # noqa: F401  imported lazily by the sim backend
import accountant.measure  # noqa: F401  imported lazily by the memory probe (torch.profiler)
import onchip_ff
from onchip_ff.data import load_dataset
from common.errors import DivergedError, OnchipError
from experiments.observers import run_training
from experiments.runner.executors import failed
from experiments.runner.sweep import config_from_json

# A progress bar would create tqdm's cross-process lock, a POSIX semaphore that a
# killed run leaves behind ("leaked semaphore" warnings); a run's process needs a thread lock only.
tqdm.set_lock(threading.RLock())


def execute_run(config_json: str, threads: int) -> dict[str, Any]:
    """Train the stored config; torch and numba use train.threads threads, or `threads` when 0.
    Returns {"status": "done", "metrics": ...} or a failed() dict; never raises an Exception."""
    try:
        cfg = config_from_json(config_json)
        set_threads(cfg.train.threads or threads)
        data = load_dataset(cfg.data)
        metrics = run_training(cfg, data, progress=False).metrics
        return {"status": "done", "metrics": metrics, "version": onchip_ff.__version__}
    except DivergedError as exc:
        return failed(f"diverged: {exc}")
    except OnchipError as exc:
        return failed(str(exc))
    except Exception as exc:  # a bug or a resource problem: keep the traceback for the store
        return failed(f"{type(exc).__name__}: {exc}", traceback.format_exc())
