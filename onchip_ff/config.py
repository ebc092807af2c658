"""Run configuration: frozen dataclasses per TOML section, loading, `--set` overrides, validation.

A config file has the sections [data], [model], [objective], [train], [hardware] and [deploy]; every key is a
field below (units and meaning in the field comments), [objective] holding `method` and the keys of
that method's dataclass (onchip_ff/methods/).  Unknown keys, wrong types and out-of-range values
raise ConfigError naming `section.key`.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from common.coerce import check as _check
from common.coerce import choice as _choice
from common.tomlfile import read_toml, typed_fields
from common.errors import ConfigError


@dataclass(frozen=True)
class DataConfig:
    name: str = "fashion_mnist"  # the source (onchip_ff/data/): fashion_mnist, mnist, idx, cifar10, npz, synthetic
    root: str = ""  # fashion_mnist, mnist, idx, cifar10: the folder with the files; fashion_mnist "" = /usr/share/datasets/fashion-mnist
    path: str = ""  # npz: the .npz file with x_train, y_train, x_test, y_test (optionally x_val, y_val)
    n_classes: int = 0  # 0 = the source's count (largest label + 1 for npz and idx)
    val_fraction: float = 0.0  # share of the training samples held out for validation (0 = none)
    val_seed: int = 0  # seed of the validation split
    resize_px: int = 0  # images: resize every split to N x N pixels (bilinear) after standardization; 0 = keep
    normalize: bool = True  # standardize pixels with the (clean, uncorrupted) training set's mean and std
    train_limit: int = 0  # use the first N training images; 0 = all
    test_limit: int = 0  # use the first N test images; 0 = all
    synthetic_train: int = 2000  # synthetic: number of training samples
    synthetic_test: int = 500  # synthetic: number of test samples
    synthetic_side_px: int = 8  # synthetic: images are channels x side x side pixels
    synthetic_channels: int = 1  # synthetic: color channels (1..4; 3 with side 32 = CIFAR-10's shape)
    synthetic_classes: int = 10  # synthetic: number of classes
    synthetic_noise: float = 0.35  # synthetic: std of the Gaussian pixel noise around each prototype
    synthetic_seed: int = 0  # synthetic: seed of the generator (data set identity)
    # training-set corruption (onchip_ff/corruption.py); the test set is never corrupted
    corruption: str = "none"  # "none" or "intff_mix" (IntFF noisy-input protocol)
    corruption_gaussian_fraction: float = 0.25  # intff_mix: share of samples with Gaussian pixel noise
    corruption_dropout_fraction: float = 0.25  # intff_mix: share of samples with random pixel drop-out
    corruption_noise_fraction: float = 0.25  # intff_mix: share replaced by pure noise with a random label
    corruption_gaussian_std: float = 0.3  # intff_mix: std of the added pixel noise, raw pixel scale 0..1
    corruption_dropout_p: float = 0.3  # intff_mix: probability that a pixel is set to 0 (black)
    corruption_seed: int = 0  # intff_mix: seed of the partition and the noise (fixed across train.seed)

    def __post_init__(self) -> None:
        from onchip_ff.data import SOURCES
        _choice("data.name", self.name, tuple(SOURCES))
        _check(not self.path or self.name == "npz", "data.path", "empty unless data.name = 'npz' (the other "
               "sources read the folder data.root)", self.path)
        _check(not self.root or self.name not in ("npz", "synthetic"), "data.root",
               "empty for data.name = 'npz' (give data.path) or 'synthetic'", self.root)
        _check(self.n_classes == 0 or self.n_classes >= 2, "data.n_classes", "0 (from the labels) or >= 2",
               self.n_classes)
        _check(0 <= self.val_fraction < 1, "data.val_fraction", "in [0, 1)", self.val_fraction)
        for name in ("val_seed", "synthetic_seed", "corruption_seed"):
            value = getattr(self, name)
            _check(value >= 0, f"data.{name}", ">= 0 (numpy seeds are non-negative)", value)
        _check(0 <= self.resize_px <= 1024, "data.resize_px", "0 (keep) or a side of 1..1024 pixels", self.resize_px)
        _check(self.train_limit >= 0, "data.train_limit", ">= 0 (0 = all)", self.train_limit)
        _check(self.test_limit >= 0, "data.test_limit", ">= 0 (0 = all)", self.test_limit)
        _check(self.synthetic_train >= 1, "data.synthetic_train", ">= 1", self.synthetic_train)
        _check(self.synthetic_test >= 1, "data.synthetic_test", ">= 1", self.synthetic_test)
        _check(4 <= self.synthetic_side_px <= 64, "data.synthetic_side_px", "4..64", self.synthetic_side_px)
        _check(1 <= self.synthetic_channels <= 4, "data.synthetic_channels", "1..4", self.synthetic_channels)
        _check(2 <= self.synthetic_classes <= 100, "data.synthetic_classes", "2..100", self.synthetic_classes)
        _check(self.synthetic_noise >= 0, "data.synthetic_noise", ">= 0", self.synthetic_noise)
        _choice("data.corruption", self.corruption, ("none", "intff_mix"))
        fractions = {k: getattr(self, f"corruption_{k}_fraction") for k in ("gaussian", "dropout", "noise")}
        for k, v in fractions.items():
            _check(0 <= v <= 1, f"data.corruption_{k}_fraction", "in [0, 1]", v)
        _check(sum(fractions.values()) <= 1 + 1e-9,
               " + ".join(f"data.corruption_{k}_fraction" for k in fractions),
               "<= 1 (the rest stays clean)", round(sum(fractions.values()), 12))
        _check(self.corruption_gaussian_std >= 0, "data.corruption_gaussian_std", ">= 0",
               self.corruption_gaussian_std)
        _check(0 <= self.corruption_dropout_p <= 1, "data.corruption_dropout_p", "in [0, 1]",
               self.corruption_dropout_p)


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "mlp"  # "mlp", "cnn" or "resnet" (residual blocks, network.ResidualBlock)
    hidden: tuple[int, ...] = (1000, 1000, 1000)  # mlp: width of each hidden layer
    channels: tuple[int, ...] = (32, 64, 128)  # cnn, resnet: output channels of each conv layer / block
    kernel_size: int = 3  # cnn, resnet: square kernel, 'same' padding
    pool: int = 2  # cnn, resnet: max-pool window and stride after each conv layer / block (1 = no pooling)
    pool_every: int = 1  # cnn, resnet: pool only after every k-th conv layer / block (1 = after each)
    kernel_sizes: tuple[int, ...] = ()  # cnn: one odd kernel size per conv layer; () = kernel_size for all
    strides: tuple[int, ...] = ()  # cnn: one stride per conv layer (padding k // 2); () = 1 for all
    pool_layers: tuple[int, ...] = ()  # cnn: indices of the layers that pool; () = every pool_every-th layer
    pool_kind: str = "max"  # cnn: "max" or "avg" pooling (window and stride model.pool)
    pool_input: bool = False  # cnn: pool the layer's input before its convolution instead of its output after ReLU
    bias: bool = True  # mlp, cnn, resnet: layers have a bias (False: weights only)
    init: str = "uniform"  # "uniform" (PyTorch's default, U(+-1/sqrt(fan_in)), biases too) or "kaiming_normal_fan_out" (N(0, 2/fan_out) weights, zero biases)
    dropout: float = 0.0  # mlp, cnn: drop-out probability after each layer's ReLU while training (0 = off)
    shortcuts: str = "none"  # cnn: "none" or "deeperforward" (the add/concat shortcuts of DeeperForward's ResNet; that method only)

    def __post_init__(self) -> None:
        _choice("model.arch", self.arch, ("mlp", "cnn", "resnet"))
        _check(len(self.hidden) >= 1 and all(w >= 1 for w in self.hidden), "model.hidden",
               "a non-empty list of widths >= 1", list(self.hidden))
        _check(len(self.channels) >= 1 and all(c >= 1 for c in self.channels), "model.channels",
               "a non-empty list of channel counts >= 1", list(self.channels))
        _check(self.kernel_size >= 1 and self.kernel_size % 2 == 1, "model.kernel_size",
               "an odd integer >= 1", self.kernel_size)
        _check(self.pool >= 1, "model.pool", ">= 1", self.pool)
        _check(self.pool_every >= 1, "model.pool_every", ">= 1 (1 = pool after every conv layer)",
               self.pool_every)
        n = len(self.channels)
        _check(not self.kernel_sizes or (len(self.kernel_sizes) == n and all(k >= 1 and k % 2 for k in self.kernel_sizes)),
               "model.kernel_sizes", f"[] or {n} odd integers >= 1 (one per entry of model.channels)",
               list(self.kernel_sizes))
        _check(not self.strides or (len(self.strides) == n and all(s >= 1 for s in self.strides)),
               "model.strides", f"[] or {n} integers >= 1 (one per entry of model.channels)", list(self.strides))
        _check(all(0 <= i < n for i in self.pool_layers) and len(set(self.pool_layers)) == len(self.pool_layers),
               "model.pool_layers", f"distinct layer indices in 0..{n - 1} ([] = every model.pool_every-th)",
               list(self.pool_layers))
        _choice("model.pool_kind", self.pool_kind, ("max", "avg"))
        _choice("model.init", self.init, ("uniform", "kaiming_normal_fan_out"))
        _check(0 <= self.dropout < 1, "model.dropout", "in [0, 1)", self.dropout)
        _choice("model.shortcuts", self.shortcuts, ("none", "deeperforward"))
        cnn_only = self._set_away(("kernel_sizes", "strides", "pool_layers", "pool_kind", "pool_input", "shortcuts"))
        if self.arch != "cnn" and cnn_only:
            raise ConfigError(f"model.{cnn_only[0]} applies to model.arch = 'cnn' only (got arch = {self.arch!r}); "
                              "remove it or use arch = 'cnn'")
        if self.arch == "resnet" and self.dropout:
            raise ConfigError("model.dropout applies to model.arch = 'mlp' or 'cnn' (residual blocks have none)")

    @property
    def depth(self) -> int:
        return len(self.hidden) if self.arch == "mlp" else len(self.channels)

    def layer_options(self) -> list[str]:
        """The keys of the published DeeperForward networks (per-layer kernels and strides, explicit
        or average or input pooling, no bias, Kaiming init, drop-out, shortcuts) set away from their
        defaults, as 'model.key'; [] for the plain stacks every part of the project models."""
        return [f"model.{k}" for k in self._set_away(("kernel_sizes", "strides", "pool_layers", "pool_kind",
                                                      "pool_input", "bias", "init", "dropout", "shortcuts"))]

    def _set_away(self, keys: tuple[str, ...]) -> list[str]:
        """Those of `keys` whose value differs from the field's default."""
        return [k for k in keys if getattr(self, k) != getattr(ModelConfig, k)]


def default_objective():
    """The [objective] of a config that names no method: Distance-Forward with its defaults."""
    from onchip_ff.methods.registry import get
    return get("df").objective()


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "adam"  # "adam", "adamw" (decoupled weight decay), "sgd" or "momentum"
    lr: float = 3e-4  # learning rate
    lr_schedule: str = "constant"  # "constant", "cosine" (per step, from lr down to lr_min at the end) or "cosine_epoch" (once per epoch, like torch's CosineAnnealingLR(T_max = epochs))
    lr_min: float = 0.0  # the cosine schedules' final learning rate (0 = decay to zero)
    lr_period_epochs: int = 0  # cosine_epoch: epochs of the half cosine (torch's T_max); 0 = train.epochs (longer: training stops before lr_min)
    momentum: float = 0.9  # optimizer = "momentum" only
    weight_decay: float = 0.0
    seed: int = 0  # initialization, shuffling and negative sampling
    threads: int = 0  # torch intra-op threads; 0 = all cores
    device: str = "cpu"  # torch device of the float reference: "cpu" or "cuda" (hardware.backend = "torch" only)
    eval_batch_size: int = 1000
    train_eval_samples: int = 10000  # train_accuracy is measured on the first N training samples; 0 = all
    eval_every: int = 1  # measure test, train and validation accuracy after every N-th epoch and after the last
    augment_shift_px: int = 0  # images: shift each training sample by up to ±N pixels per axis, black border (pad-and-random-crop); 0 = off
    augment_flip: bool = False  # images: mirror each training sample left-right with probability 1/2

    def __post_init__(self) -> None:
        _check(self.epochs >= 1, "train.epochs", ">= 1", self.epochs)
        _check(self.seed >= 0, "train.seed", ">= 0 (numpy and torch seeds are non-negative)", self.seed)
        _check(self.batch_size >= 1, "train.batch_size", ">= 1", self.batch_size)
        _choice("train.optimizer", self.optimizer, ("adam", "adamw", "sgd", "momentum"))
        _check(self.lr > 0, "train.lr", "> 0", self.lr)
        _choice("train.lr_schedule", self.lr_schedule, ("constant", "cosine", "cosine_epoch"))
        _check(0 <= self.lr_min <= self.lr, "train.lr_min", f"in [0, train.lr = {self.lr:g}]", self.lr_min)
        _check(self.lr_period_epochs == 0 or self.lr_period_epochs >= self.epochs, "train.lr_period_epochs",
               f"0 (= train.epochs) or >= train.epochs = {self.epochs}", self.lr_period_epochs)
        _check(0 <= self.momentum < 1, "train.momentum", "in [0, 1)", self.momentum)
        _check(self.weight_decay >= 0, "train.weight_decay", ">= 0", self.weight_decay)
        _check(self.threads >= 0, "train.threads", ">= 0 (0 = all cores)", self.threads)
        _choice("train.device", self.device, ("cpu", "cuda"))
        _check(self.eval_batch_size >= 1, "train.eval_batch_size", ">= 1", self.eval_batch_size)
        _check(self.train_eval_samples >= 0, "train.train_eval_samples", ">= 0 (0 = all)",
               self.train_eval_samples)
        _check(self.eval_every >= 1, "train.eval_every", ">= 1 (1 = after every epoch; the last epoch always)",
               self.eval_every)
        _check(0 <= self.augment_shift_px <= 16, "train.augment_shift_px", "0..16 pixels (0 = off)",
               self.augment_shift_px)

    @property
    def augments(self) -> bool:
        """Whether training batches are augmented (train.augment_shift_px > 0 or train.augment_flip)."""
        return self.augment_shift_px > 0 or self.augment_flip


@dataclass(frozen=True)
class HardwareConfig:
    """[hardware]: backend "torch" (float32 PyTorch reference) or "sim" (simulated tiles), a
    preset name and overrides of any device/periphery/noise-model field (see hw_models.presets)."""

    backend: str = "torch"
    preset: str = "ideal"
    device: Any = None  # hw_models.device.DeviceConfig, resolved from preset + overrides

    def __post_init__(self) -> None:
        if self.device is None:
            from hw_models.presets import resolve
            _, _, device = resolve({"backend": self.backend, "preset": self.preset})
            object.__setattr__(self, "device", device)


@dataclass(frozen=True)
class DeployConfig:
    """[deploy]: after training, program the trained weights onto the tiles of a hardware preset
    (sim backend, the preset's default parameters) and measure the test accuracy at each time after
    programming, with and without global drift compensation; rows go to metrics["deploy"].
    For other deployment hardware use `onchip-ff deploy RUN_DIR --set hardware...`."""

    preset: str = ""  # "" = no deployment; else a preset name, e.g. "pcm"
    times_s: tuple[float, ...] = (1.0, 3600.0, 86400.0, 2.592e6, 3.1536e7)  # seconds after programming
    compensation: tuple[bool, ...] = (False, True)  # evaluate without and/or with drift compensation
    draws: int = 1  # programming-noise draws; draw d uses seed 1000 * train.seed + d

    def __post_init__(self) -> None:
        if self.preset:
            from hw_models.presets import PRESETS
            _choice("deploy.preset", self.preset, ("",) + tuple(PRESETS))
        _check(len(self.times_s) > 0 and all(t > 0 for t in self.times_s), "deploy.times_s",
               "a non-empty list of times > 0 (seconds)", self.times_s)
        _check(len(self.compensation) > 0 and len(set(self.compensation)) == len(self.compensation),
               "deploy.compensation", "a non-empty list of distinct booleans", self.compensation)
        _check(1 <= self.draws <= 1000, "deploy.draws", "1..1000", self.draws)


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: Any = field(default_factory=default_objective)  # the method's dataclass (onchip_ff/methods/)
    train: TrainConfig = field(default_factory=TrainConfig)
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    deploy: DeployConfig = field(default_factory=DeployConfig)


SECTIONS: dict[str, type | None] = {"data": DataConfig, "model": ModelConfig, "objective": None,
                                    "train": TrainConfig, "hardware": HardwareConfig, "deploy": DeployConfig}


def _objective(values: dict[str, Any], source: str, stored: bool):
    """[objective]: `method` picks the registered method whose dataclass holds the other keys, given
    flat ([objective] scale = 16) or in the method's own table ([objective.df] scale = 16).  Tables
    of other methods are checked and left out (a base config may carry settings for each method a
    sweep switches to); a flat key of another method is an error, except in a stored config
    (stored=True, or every method's keys present: the flat union that older code wrote into
    config.toml files, checkpoints and stores), where the other methods' keys are dropped."""
    from onchip_ff.methods.registry import get, names
    values = dict(values)
    method = values.pop("method", "df")
    if not isinstance(method, str):
        raise ConfigError(f"objective.method must be a string, one of {', '.join(map(repr, names()))}, got {method!r}")
    cls = get(method).objective
    tables = {k: values.pop(k) for k in list(values) if isinstance(values[k], dict)}
    for name, table in tables.items():
        if name not in names():
            raise ConfigError(f"[objective.{name}] in {source}: {name!r} is not a method; methods: "
                              + ", ".join(names()))
        if name == method:
            continue  # checked below, with the flat keys
        try:
            get(name).objective(**typed_fields(get(name).objective, table, f"objective.{name}", source))
        except ConfigError as exc:
            raise ConfigError(f"[objective.{name}] in {source}: {exc}") from None
    own = {f.name for f in dataclasses.fields(cls)}
    every = {f.name for n in names() for f in dataclasses.fields(get(n).objective)}
    stored = stored or every <= set(values)  # a resolved config of older code: every method's keys
    flat = {}
    for key, value in values.items():
        if key in own:
            flat[key] = value
        elif not stored:
            owners = [n for n in names() if key in {f.name for f in dataclasses.fields(get(n).objective)}]
            where = (f"; it is a key of {', '.join(owners)}: set it in [objective.{owners[0]}] to keep it "
                     "for that method") if owners else ""
            raise ConfigError(f"objective.{key} in {source} is not a key of method {method!r} (its keys: "
                              f"{', '.join(sorted(own)) or 'none'}){where}")
    twice = sorted(set(flat) & set(tables.get(method, {})))
    if twice:
        raise ConfigError(f"objective.{twice[0]} in {source} is set both in [objective] and in "
                          f"[objective.{method}]; keep one")
    return cls(**typed_fields(cls, {**flat, **tables.get(method, {})}, "objective", source))


def from_dict(raw: dict[str, Any], source: str = "config", stored: bool = False) -> Config:
    """Build a validated Config from a nested dict {section: {key: value}}; stored=True for configs
    written by the runner's store (see _objective)."""
    sections = {}
    for section, values in raw.items():
        if section not in SECTIONS:
            raise ConfigError(f"unknown section [{section}] in {source}; valid sections: "
                              + ", ".join(SECTIONS))
        if not isinstance(values, dict):
            raise ConfigError(f"[{section}] in {source} must be a table of key = value lines")
        cls = SECTIONS[section]
        if section == "hardware":
            from hw_models.presets import resolve
            backend, preset, device = resolve(values, stored)
            sections[section] = HardwareConfig(backend, preset, device)
        elif section == "objective":
            sections[section] = _objective(values, source, stored)
        else:
            sections[section] = cls(**typed_fields(cls, values, section, source))
    return Config(**sections)


def to_dict(cfg: Config) -> dict[str, dict[str, Any]]:
    """Fully resolved nested dict (tuples as lists), the inverse of from_dict."""
    out = {}
    for f in dataclasses.fields(cfg):
        if f.name == "hardware":
            from hw_models.presets import to_dict as hardware_dict
            out["hardware"] = hardware_dict(cfg.hardware.backend, cfg.hardware.preset, cfg.hardware.device)
            continue
        sec = dataclasses.asdict(getattr(cfg, f.name))
        if f.name == "objective":
            sec = {"method": cfg.objective.method, **sec}
        out[f.name] = {k: list(v) if isinstance(v, tuple) else v for k, v in sec.items()}
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse `section.key=value` (or `hardware.<noise model>.key=value`, `objective.<method>.key=value`);
    the value is read as TOML, bare words as strings."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r} must look like section.key=value")
    lhs, rhs = text.split("=", 1)
    parts = lhs.strip().split(".")
    if not (len(parts) == 2 or (len(parts) == 3 and parts[0] in ("hardware", "objective"))) or not all(parts):
        raise ConfigError(f"--set {text!r}: the left side must be section.key (e.g. train.epochs), "
                          "hardware.<noise model>.key or objective.<method>.key")
    try:
        value = tomllib.loads(f"v = {rhs.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = rhs.strip()
    return parts, value


def load(path: str | Path | None, overrides: list[str] = ()) -> Config:
    """Read a TOML config (None = all defaults), apply `section.key=value` overrides, validate."""
    raw: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        raw = read_toml(path, "config", "experiments/configs/df_mlp_fmnist.toml")
    apply_overrides(raw, overrides)
    return from_dict(raw, source + (" with --set overrides" if overrides else ""))


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each `section.key=value` of overrides in the nested dict raw (in place; returned);
    `objective.key` goes into the selected method's [objective.<method>] table when there is one."""
    for text in overrides:
        parts, value = parse_override(text)
        objective = raw.get("objective")
        if len(parts) == 2 and parts[0] == "objective" and parts[1] != "method" and isinstance(objective, dict):
            method = objective.get("method", "df")
            if isinstance(method, str) and isinstance(objective.get(method), dict):
                parts = ["objective", method, parts[1]]  # the selected method's own table holds its keys
        table = raw
        for part in parts[:-1]:
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise ConfigError(f"--set {text!r}: {part} is not a table")
        table[parts[-1]] = value
    return raw


def dumps(cfg: Config) -> str:
    return tomli_w.dumps(to_dict(cfg))
