"""A learner's complete state as tensors and plain values — weights, optimizer states, its torch
generator, and every simulated array's full state (conductances, device properties, time, random
streams) — so that torch.load(weights_only=True) reads it back and a restored learner continues
exactly where the saved one stood.  Used by Model.save / load (api.py) and the run checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.errors import ConfigError


def to_torch(obj: Any) -> Any:
    """numpy arrays (nested in dicts / lists / tuples) as torch tensors, everything else as is."""
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj)).clone()
    if isinstance(obj, dict):
        return {k: to_torch(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_torch(v) for v in obj]
    return obj


def to_numpy(obj: Any) -> Any:
    """The inverse of to_torch (tuples come back as lists)."""
    if isinstance(obj, torch.Tensor):
        return obj.numpy()
    if isinstance(obj, dict):
        return {k: to_numpy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_numpy(v) for v in obj]
    return obj


def learner_state(learner) -> dict[str, Any]:
    """{"model", "optimizers", "generator", "tiles"} of a learner."""
    return {"model": learner.state_dict(), "optimizers": [o.state_dict() for o in learner.optimizers],
            "generator": learner.generator.get_state() if hasattr(learner, "generator") else None,
            "tiles": [to_torch(m.tile.state()) for m in getattr(learner, "analog_modules", [])]}


def restore_learner(learner, state: dict[str, Any]) -> None:
    """Put learner_state(...) of a learner built from the same config back into `learner`."""
    learner.load_state_dict(state["model"])
    for opt, st in zip(learner.optimizers, state["optimizers"], strict=True):
        opt.load_state_dict(st)
    if state.get("generator") is not None:
        learner.generator.set_state(state["generator"])
    modules = getattr(learner, "analog_modules", [])
    if len(modules) != len(state.get("tiles", [])):
        raise ConfigError(f"the saved state holds {len(state.get('tiles', []))} simulated arrays, the learner "
                          f"has {len(modules)}")
    for m, st in zip(modules, state["tiles"]):
        m.tile.load_state(to_numpy(st))
        m.sync_from_device()


def load_file(path: str | Path, what: str) -> dict:
    """torch.load(path, weights_only=True) of a dict: tensors and plain values only, so a file that
    carries code (a pickled callable) is refused without running it; any unreadable file is a
    one-line ConfigError naming `what` it should have been."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path} is a folder; pass the {what}")
    if not path.is_file():
        raise ConfigError(f"{path} not found; pass the {what}")
    try:
        data = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # truncated, random bytes, a pickled callable: torch's errors vary
        kind = "carries objects other than tensors and plain values (refused, nothing was run)" \
            if "global" in str(exc).lower() else "is truncated or corrupt (or not a torch file)"
        raise ConfigError(f"{path} is not a readable {what}: it {kind}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a {what}")
    return data
