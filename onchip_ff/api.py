"""The public Python API: train on your own arrays (fit), use and keep the trained model (Model:
scores, predict, train_step, set_time, save / load with the simulated arrays restored exactly),
put a trained model onto a hardware preset (program), and put any torch module's Linear and
Conv2d layers on simulated tiles (convert, set_time), as aihwkit's convert_to_analog."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from common.errors import ConfigError
from onchip_ff import config as config_mod
from onchip_ff.checkpoint import learner_state, load_file, restore_learner
from onchip_ff.config import Config
from onchip_ff.data import Dataset, load_dataset, prepare
from onchip_ff.methods import build_learner
from onchip_ff.trainer import Observer, train

FORMAT = "onchip-ff model 1"


def _config(cfg: Config | dict | str | Path | None, overrides=()) -> Config:
    if isinstance(cfg, Config):
        return config_mod.from_dict(config_mod.apply_overrides(config_mod.to_dict(cfg), list(overrides))) \
            if overrides else cfg
    if cfg is None or isinstance(cfg, (str, Path)):
        return config_mod.load(cfg, list(overrides))
    if isinstance(cfg, dict):
        return config_mod.from_dict(config_mod.apply_overrides(copy.deepcopy(cfg), list(overrides)), "the given dict")
    raise ConfigError(f"config must be a Config, a dict of sections, a TOML path or None, got {type(cfg).__name__}")


def dataset(arrays: dict[str, np.ndarray], name: str = "arrays", n_classes: int = 0, normalize: bool = True) -> Dataset:
    """A Dataset of your own arrays: x_train, y_train, x_test, y_test (optionally x_val, y_val), as
    data.name = "npz" reads them (any sample shape; uint8 pixels scaled to 0..1; standardized with
    the training set's mean and std when normalize).  Bad arrays are one-line DataErrors."""
    return _own_data(arrays, config_mod.DataConfig(name="npz", n_classes=n_classes, normalize=normalize), name)


def _own_data(arrays: dict[str, np.ndarray], cfg: config_mod.DataConfig, name: str) -> Dataset:
    """arrays through load_dataset as an .npz file of them would go (the same checks, splits and
    content hash), with cfg's settings; named `name`."""
    from onchip_ff.data.npz import splits
    data = load_dataset(cfg, splits({k: np.asarray(v) for k, v in arrays.items()}, "the given arrays"))
    return dataclasses.replace(data, name=name)


class Model:
    """A trained (or untrained) learner with its config: `model(x)` / `forward(x)` class scores
    (N, n_classes), `predict(x)` labels, `accuracy(x, y)`, `train_step(x, y)` one step of its
    learning rule, `set_time(t_s)` reads its simulated arrays t_s seconds after programming,
    `save(path)` / `Model.load(path)`.  x: samples as your arrays hold them (uint8 pixels, (N, H, W)
    grey images, floats), prepared as the training data was (scaled, standardized with the training
    set's mean and std); prepared=True for arrays already prepared (a Dataset's x_test, say)."""

    def __init__(self, learner: nn.Module, cfg: Config, input_shape: tuple[int, ...], n_classes: int,
                 mean: float = 0.0, std: float = 1.0) -> None:
        self.learner, self.config = learner, cfg
        self.input_shape, self.n_classes = tuple(input_shape), n_classes
        self.mean, self.std = float(mean), float(std)

    def _tensor(self, x, prepared: bool) -> torch.Tensor:
        if isinstance(x, torch.Tensor) and prepared:
            t = x.float()
        else:
            arr = x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
            t = torch.from_numpy(np.ascontiguousarray(arr, np.float32) if prepared else prepare(arr, self.mean, self.std, self.config.data.resize_px))
        if tuple(t.shape[1:]) != self.input_shape:
            raise ConfigError(f"samples of shape {tuple(t.shape[1:])} after preparation, the model takes "
                              f"{self.input_shape}")
        return t

    def forward(self, x, prepared: bool = False) -> torch.Tensor:
        """Class scores (N, n_classes) of samples x (no gradient)."""
        self.learner.eval()
        return self.learner.scores(self._tensor(x, prepared))

    __call__ = forward

    def predict(self, x, prepared: bool = False, batch_size: int = 1000) -> np.ndarray:
        """Predicted labels (N,) int64."""
        x = self._tensor(x, prepared)
        if not len(x):
            return np.zeros(0, np.int64)
        return np.concatenate([self.forward(x[i:i + batch_size], True).argmax(1).numpy()
                               for i in range(0, len(x), batch_size)])

    def accuracy(self, x, y, prepared: bool = False) -> float:
        """Share of samples whose predicted label is y."""
        return float((self.predict(x, prepared) == np.asarray(y)).mean())

    def train_step(self, x, y, prepared: bool = False) -> dict[str, float]:
        """One step of the method's own schedule on a batch (tensors or arrays): its losses."""
        self.learner.train()
        return self.learner.train_step(self._tensor(x, prepared), torch.as_tensor(np.asarray(y), dtype=torch.long))

    @property
    def tiles(self) -> list:
        """The simulated arrays (hw_models.tiles), one per Linear / Conv2d; [] on the torch backend."""
        return [m.tile for m in getattr(self.learner, "analog_modules", [])]

    def set_time(self, t_s: float) -> None:
        """Read every array t_s seconds after programming (drift, read noise, compensation)."""
        from onchip_ff.deployment import set_time as set_learner_time
        set_learner_time(self.learner, t_s)

    drift = set_time

    def save(self, path: str | Path) -> None:
        """Write the model — config, weights, optimizer state, random streams and every simulated
        array's full state — to one file that Model.load reads back exactly (tensors and plain
        values only: it loads with torch.load(weights_only=True))."""
        torch.save({"format": FORMAT, "config": config_mod.to_dict(self.config), "input_shape": list(self.input_shape),
                    "n_classes": self.n_classes, "mean": self.mean, "std": self.std,
                    **learner_state(self.learner)}, Path(path))

    @classmethod
    def load(cls, path: str | Path) -> Model:
        """A Model saved by save(): same weights, same arrays, same random streams — the same
        predictions, bit for bit."""
        payload = load_file(path, "model file written by Model.save")
        if payload.get("format") != FORMAT:
            raise ConfigError(f"{path} is not a model file written by Model.save")
        cfg = config_mod.from_dict(payload["config"], str(path), stored=True)
        learner = build_learner(cfg, tuple(payload["input_shape"]), payload["n_classes"],
                                torch.Generator().manual_seed(cfg.train.seed))
        restore_learner(learner, payload)
        return cls(learner, cfg, tuple(payload["input_shape"]), payload["n_classes"], payload["mean"], payload["std"])


def load(path: str | Path) -> Model:
    """A Model written by Model.save (Model.load)."""
    return Model.load(path)


@dataclass
class Run:
    """What fit() returns: the trained Model, the final metrics (as metrics.json) and the per-epoch
    history."""

    model: Model
    metrics: dict[str, Any]

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.metrics["history"]


def fit(config: Config | dict | str | Path | None = None, data: Dataset | dict | None = None, *,
        overrides: list[str] = (), observers: list[Observer] = ()) -> Run:
    """Train a model.  config: a Config, a dict {section: {key: value}}, a TOML path or None (the
    defaults), with `overrides` ("section.key=value") on top; data: a Dataset, a dict of arrays
    (see dataset()) or None (the config's data section).  train.threads applies inside the call only."""
    cfg = _config(config, overrides)
    if isinstance(data, dict):  # with the config's [data] settings (limits, validation split, ...)
        data = _own_data(data, dataclasses.replace(cfg.data, name="npz", path="", root=""), "arrays")
    elif data is None:
        data = load_dataset(cfg.data)
    elif not isinstance(data, Dataset):
        raise ConfigError(f"data must be a Dataset, a dict of arrays or None, got {type(data).__name__}")
    result = train(cfg, data, observers)
    return Run(Model(result.model, cfg, data.input_shape, data.n_classes, data.mean, data.std), result.metrics)


def program(model: Model, preset: str = "pcm", overrides: list[str] = (), seed: int = 0) -> Model:
    """The trained model's weights programmed onto fresh arrays of a hardware preset (the sim
    backend; `overrides` such as "hardware.adc_bits=6"; programming noise drawn from seed) — the
    model as deployed, to read at times after programming with set_time."""
    from onchip_ff.deployment import deploy_config, deployed_learner
    dep = deploy_config(model.config, [f"hardware.preset={preset}", *overrides])
    state = {k: v.cpu() for k, v in model.learner.state_dict().items()}
    learner = deployed_learner(dep, state, model.input_shape, model.n_classes, seed)
    return Model(learner, dep, model.input_shape, model.n_classes, model.mean, model.std)


def convert(module: nn.Module, preset: str = "pcm", overrides: list[str] = (), seed: int = 0,
            inplace: bool = False) -> nn.Module:
    """Any torch module's Linear and Conv2d layers (nested at any depth) on simulated arrays of a
    hardware preset: a copy (or the module itself, inplace) whose forward reads the arrays — for
    inference under noise and drift (set_time) and for hardware-aware training with your own
    optimizer and loss (every in-place change of a weight, e.g. optimizer.step(), is written
    through the devices before the next read).  Refuses, in one line and before changing anything,
    layers with parameters that are not Linear or Conv2d and convolutions other than groups 1,
    dilation 1, integer zero padding."""
    from hw_models.presets import resolve
    from hw_models.torch_layers import swap_layers, unsupported
    if not isinstance(module, nn.Module):
        raise ConfigError(f"convert takes a torch.nn.Module, got {type(module).__name__}")
    bad = unsupported(module)
    if bad:
        raise ConfigError(f"convert: {bad[0]}" + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""))
    raw = config_mod.apply_overrides({"hardware": {"backend": "sim", "preset": preset}}, list(overrides))
    if set(raw) != {"hardware"}:
        raise ConfigError(f"convert: overrides set hardware.* only, got {sorted(set(raw) - {'hardware'})}")
    _, _, device = resolve(raw["hardware"])
    target = module if inplace else copy.deepcopy(module)
    if not swap_layers(target, device, seed):
        raise ConfigError("convert: the module has no Linear or Conv2d layer to put on tiles")
    return target


def set_time(module: nn.Module, t_s: float) -> None:
    """Read every simulated array of a converted module (or a Model's learner) t_s seconds after
    programming from now on."""
    from hw_models.torch_layers import AnalogLinear
    found = [m for m in module.modules() if isinstance(m, AnalogLinear)]
    if not found:
        raise ConfigError("set_time: the module has no simulated arrays (convert it first)")
    for m in found:
        m.set_time(t_s)


__all__ = ["Model", "Run", "convert", "dataset", "fit", "load", "program", "set_time"]
