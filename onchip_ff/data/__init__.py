"""Data sets as in-memory arrays, one module per source (data.name): fashion_mnist (default) and
mnist (fashion_mnist.py), idx (any IDX files), cifar10 (python batches), npz (your own arrays),
synthetic; the shared checks, limits, validation split, scaling, corruption and normalization.

Every source gives {split: (x, y)} for "train" and "test" (and "val" when it has one): x numeric,
(N, D) vectors, (N, H, W) grey images or (N, C, H, W) images, uint8 pixels scaled to 0..1; y
integer labels 0..K-1.  Bad arrays (dtype, NaN/inf, labels out of range, shapes that disagree,
empty splits) are one-line DataErrors naming the split."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from common.errors import DataError
from onchip_ff.corruption import intff_mix
from onchip_ff.data import cifar10, fashion_mnist, idx, npz, synthetic
from onchip_ff.data.fashion_mnist import DEBIAN_ROOT, load_fashion_mnist_raw  # noqa: F401
from onchip_ff.data.idx import read_idx  # noqa: F401
from onchip_ff.data.synthetic import make_synthetic  # noqa: F401

if TYPE_CHECKING:
    from onchip_ff.config import DataConfig

# data.name -> loader(DataConfig) -> {split: (x, y)}
SOURCES: dict[str, Callable] = {"fashion_mnist": fashion_mnist.load, "mnist": fashion_mnist.load_mnist,
                                "idx": idx.load, "cifar10": cifar10.load, "npz": npz.load,
                                "synthetic": synthetic.load}
KNOWN_CLASSES = {"fashion_mnist": 10, "mnist": 10, "cifar10": 10}


def _empty(shape: tuple[int, ...]) -> np.ndarray:
    return np.zeros((0, *shape), np.float32)


@dataclass(frozen=True)
class Dataset:
    """Samples as float32 (N, C, H, W) images or (N, D) vectors, labels as int64 (N,); a validation
    split (empty unless the source has one or data.val_fraction > 0); sha256: a content hash of the
    arrays as the source gave them (after limits and the validation split)."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    x_val: np.ndarray = field(default_factory=lambda: _empty(()))
    y_val: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    sha256: str = ""
    mean: float = 0.0  # the standardization applied: (x - mean) / std (0 and 1: none)
    std: float = 1.0
    resize_px: int = 0  # images were resized to resize_px x resize_px after standardization (0: not)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def prepare(self, x) -> np.ndarray:
        """Samples as the source gives them (uint8 pixels, (N, H, W) grey images, floats) prepared
        as this data set's splits were: float32, channel axis, 0..1 pixels, standardized, resized."""
        return prepare(x, self.mean, self.std, self.resize_px)


def prepare(x, mean: float, std: float, resize_px: int = 0) -> np.ndarray:
    """_as_float(x), then (x - mean) / std unless mean, std = 0, 1, then resize(x, resize_px) if > 0."""
    x = _as_float(x)
    x = standardize(x, mean, std) if (mean, std) != (0.0, 1.0) else x
    return resize(x, resize_px) if resize_px else x


def resize(x: np.ndarray, side: int, chunk: int = 4096) -> np.ndarray:
    """(N, C, H, W) float32 images -> (N, C, side, side) by bilinear interpolation with
    align_corners=False (torch's F.interpolate; what torchvision's Resize does to a tensor when it
    enlarges, as DeeperForward's loaders do 28 -> 32); vectors are a DataError.  Interpolation
    weights sum to 1, so resizing commutes with standardization."""
    import torch
    import torch.nn.functional as F
    if x.ndim != 4:
        raise DataError(f"data.resize_px resizes images (N, C, H, W); these samples have shape {x.shape[1:]}")
    out = [F.interpolate(torch.from_numpy(np.ascontiguousarray(x[i:i + chunk])), size=(side, side),
                         mode="bilinear", align_corners=False).numpy() for i in range(0, len(x), chunk)]
    return np.concatenate(out) if out else np.zeros((0, x.shape[1], side, side), np.float32)


def standardize(x: np.ndarray, mean: float, std: float) -> np.ndarray:
    """(x - mean) / std in float32: how every split, and every sample a trained model is given, is
    standardized."""
    return (x - np.float32(mean)) / np.float32(std)


def check_arrays(splits: dict[str, tuple[np.ndarray, np.ndarray]], source: str) -> tuple[int, ...]:
    """One-line DataError for arrays a model cannot train on; returns the sample shape."""
    shape = None
    for split, (x, y) in splits.items():
        x, y = np.asarray(x), np.asarray(y)
        where = f"{source} {split} split"
        if x.dtype.kind not in "uif" or x.dtype.kind == "f" and x.dtype.itemsize > 8:
            raise DataError(f"{where}: samples must be numbers (uint8 pixels or floats), got dtype {x.dtype}")
        if y.dtype.kind not in "ui":
            raise DataError(f"{where}: labels must be integers 0..K-1, got dtype {y.dtype}")
        if x.ndim not in (2, 3, 4):
            raise DataError(f"{where}: samples must be (N, D) vectors, (N, H, W) or (N, C, H, W) images, "
                            f"got shape {x.shape}")
        if y.ndim != 1 or len(y) != len(x):
            raise DataError(f"{where}: {len(x)} samples but labels of shape {y.shape}; give one label per sample")
        if len(x) == 0:
            raise DataError(f"{where} is empty")
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            raise DataError(f"{where}: {int((~np.isfinite(x)).sum())} samples values are NaN or infinite")
        if y.min() < 0:
            raise DataError(f"{where}: label {int(y.min())} < 0; labels are 0..K-1")
        sample = x.shape[1:] if x.ndim != 3 else (1, *x.shape[1:])
        if shape is not None and sample != shape:
            raise DataError(f"{where}: samples of shape {x.shape[1:]}, the train split's are {shape}")
        shape = shape or sample
    return shape


def _n_classes(cfg: DataConfig, splits, source: str) -> int:
    """data.n_classes, else the source's own count (10 for the image benchmarks, synthetic_classes),
    else the largest label + 1."""
    top = max(int(np.asarray(y).max()) for _, y in splits.values())
    known = KNOWN_CLASSES.get(cfg.name) or (cfg.synthetic_classes if cfg.name == "synthetic" else 0)
    if known and cfg.n_classes and cfg.n_classes != known:
        raise DataError(f"data.n_classes = {cfg.n_classes}, but {source} has {known} classes; leave it at 0")
    n = cfg.n_classes or known
    if n:
        if top >= n:
            raise DataError(f"{source}: label {top} out of range for {n} classes (labels are 0..{n - 1})")
        return n
    if top < 1:
        raise DataError(f"{source}: every label is 0; a classifier needs at least 2 classes")
    return top + 1


def _digest(name: str, splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> str:
    h = hashlib.sha256(name.encode())
    for split in sorted(splits):
        for a in splits[split]:
            a = np.ascontiguousarray(a)
            h.update(f"{split}{a.dtype.str}{a.shape}".encode())
            h.update(a.view(np.uint8).reshape(-1) if a.size else b"")
    return h.hexdigest()


def _as_float(x: np.ndarray) -> np.ndarray:
    """float32 samples, (N, H, W) -> (N, 1, H, W); uint8 pixels scaled to 0..1."""
    x = np.asarray(x)
    scale = np.float32(1.0 / 255.0) if x.dtype == np.uint8 else np.float32(1.0)
    x = x.astype(np.float32)[:, None] if x.ndim == 3 else x.astype(np.float32)
    return x * scale


def load_dataset(cfg: DataConfig, raw: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> Dataset:
    """Load the configured data set as float32 arrays (standardized if asked); raw: the source's
    splits when the caller holds them already (arrays given to onchip_ff.fit), else read from cfg.

    Order: the source's arrays -> checks -> train_limit / test_limit -> validation split
    (data.val_fraction of the training samples, drawn with data.val_seed) -> float32, uint8 scaled
    to 0..1 -> data.corruption on the training split only (so the noise std is in those units and
    a dropped pixel is black) -> normalization with the clean training split's mean and std (the
    same for test and validation, so the test set is bit-identical with and without corruption)
    -> data.resize_px (bilinear, every split).
    """
    source = f"data.name = {cfg.name!r}"
    raw = SOURCES[cfg.name](cfg) if raw is None else raw
    check_arrays(raw, source)
    (xtr, ytr), (xte, yte) = raw["train"], raw["test"]
    if cfg.train_limit:
        xtr, ytr = xtr[: cfg.train_limit], ytr[: cfg.train_limit]
    if cfg.test_limit:
        xte, yte = xte[: cfg.test_limit], yte[: cfg.test_limit]
    val = raw.get("val")
    if val is not None and cfg.val_fraction:
        raise DataError(f"{source} has its own validation split (x_val, y_val); leave data.val_fraction at 0")
    if cfg.val_fraction:
        n_val = int(round(cfg.val_fraction * len(ytr)))
        if not 1 <= n_val < len(ytr):
            raise DataError(f"data.val_fraction = {cfg.val_fraction} of {len(ytr)} training samples leaves "
                            f"{n_val} for validation and {len(ytr) - n_val} for training; both need >= 1")
        perm = np.random.default_rng(cfg.val_seed).permutation(len(ytr))
        pick, keep = np.sort(perm[:n_val]), np.sort(perm[n_val:])
        val = (xtr[pick], ytr[pick])
        xtr, ytr = xtr[keep], ytr[keep]
    splits = {"train": (xtr, ytr), "test": (xte, yte), **({"val": val} if val is not None else {})}
    n_classes = _n_classes(cfg, splits, source)
    digest = _digest(cfg.name, splits)
    xtr, xte = _as_float(xtr), _as_float(xte)
    xva = _as_float(val[0]) if val is not None else _empty(xtr.shape[1:])
    yva = np.asarray(val[1]).astype(np.int64) if val is not None else np.zeros(0, np.int64)
    mean, std = float(xtr.mean()), float(xtr.std()) or 1.0
    if cfg.corruption == "intff_mix":
        xtr, ytr = intff_mix(xtr, np.asarray(ytr).astype(np.int64), gaussian_fraction=cfg.corruption_gaussian_fraction,
                             dropout_fraction=cfg.corruption_dropout_fraction,
                             noise_fraction=cfg.corruption_noise_fraction,
                             gaussian_std=cfg.corruption_gaussian_std, dropout_p=cfg.corruption_dropout_p,
                             n_classes=n_classes, rng=np.random.default_rng(cfg.corruption_seed))
    if cfg.normalize:
        xtr, xte, xva = (standardize(x, mean, std) for x in (xtr, xte, xva))
    else:
        mean, std = 0.0, 1.0
    if cfg.resize_px:
        xtr, xte, xva = (resize(x, cfg.resize_px) for x in (xtr, xte, xva))
    return Dataset(cfg.name, xtr, np.asarray(ytr).astype(np.int64), xte, np.asarray(yte).astype(np.int64),
                   n_classes, xva, yva, digest, mean, std, cfg.resize_px)
