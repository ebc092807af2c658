"""Data sets as in-memory arrays: Fashion-MNIST from raw IDX files, and a seeded synthetic set."""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from onchip_ff.config import DataConfig
from onchip_ff.corruption import intff_mix
from common.errors import DataError

DEBIAN_ROOT = Path("/usr/share/datasets/fashion-mnist")
HOWTO = ("get Fashion-MNIST with `sudo apt-get install dataset-fashion-mnist` (files land in "
         f"{DEBIAN_ROOT}) or set data.root to a folder holding the raw IDX files "
         "(torchvision's FashionMNIST/raw layout)")
SPLITS = {  # split: (images file, labels file, number of samples)
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60000),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10000),
}
IDX_UBYTE = 0x08


@dataclass(frozen=True)
class Dataset:
    """Images as float32 (N, C, H, W), labels as int64 (N,)."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file of unsigned bytes (gzip or plain); validate magic number and size."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path} cannot be read ({exc}); the file is corrupt: {HOWTO}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path} is not an IDX file (bad magic number); {HOWTO}")
    if raw[2] != IDX_UBYTE:
        raise DataError(f"{path}: IDX element type 0x{raw[2]:02x}, expected unsigned byte 0x08")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"{path}: truncated IDX header; {HOWTO}")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise DataError(f"{path}: header promises {expected} bytes of data for shape {dims}, "
                        f"file holds {len(raw) - header}; the file is truncated or corrupt: {HOWTO}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find(root: Path, stem: str) -> Path:
    for folder in (root, root / "FashionMNIST" / "raw", root / "raw"):
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    raise DataError(f"Fashion-MNIST file {stem}[.gz] not found under {root}; {HOWTO}")


def load_fashion_mnist_raw(root: Path | str | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{split: (uint8 images (N, 28, 28), uint8 labels (N,))}, sizes and label range checked."""
    root = Path(root) if root else DEBIAN_ROOT
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist; {HOWTO}")
    out = {}
    for split, (images_stem, labels_stem, n) in SPLITS.items():
        images = read_idx(_find(root, images_stem))
        labels = read_idx(_find(root, labels_stem))
        if images.ndim != 3 or images.shape[1:] != (28, 28):
            raise DataError(f"{images_stem}: expected images of 28x28, got shape {images.shape}")
        if labels.ndim != 1:
            raise DataError(f"{labels_stem}: expected a 1-D label file, got shape {labels.shape}")
        if images.shape[0] != labels.shape[0] or images.shape[0] != n:
            raise DataError(f"{split} split: {images.shape[0]} images and {labels.shape[0]} labels, "
                            f"expected {n} of each; {HOWTO}")
        if labels.max() > 9:
            raise DataError(f"{labels_stem}: label {labels.max()} out of range 0..9")
        out[split] = (images, labels)
    return out


def make_synthetic(n_train: int, n_test: int, side_px: int, n_classes: int, noise: float,
                   seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Gaussian clusters around random smooth prototypes in [0, 1]; deterministic by seed."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0.0, 1.0, size=(n_classes, side_px // 2 + 1, side_px // 2 + 1))
    protos = np.repeat(np.repeat(coarse, 2, axis=1), 2, axis=2)[:, :side_px, :side_px]
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        labels = rng.integers(0, n_classes, size=n)
        images = protos[labels] + noise * rng.standard_normal((n, side_px, side_px))
        out[split] = (np.clip(images, 0.0, 1.0).astype(np.float32), labels.astype(np.uint8))
    return out


def load_dataset(cfg: DataConfig) -> Dataset:
    """Load the configured data set as float32 (N, 1, H, W) images (standardized if asked).

    data.corruption is applied to the training split only, on the raw 0..1 pixel scale (so the
    noise std is in those units and a dropped pixel is black), after train_limit and before
    normalization; normalization uses the clean training set's mean and std, so the test set is
    bit-identical with and without corruption.
    """
    if cfg.name == "fashion_mnist":
        raw = load_fashion_mnist_raw(cfg.root or None)
        n_classes = 10
        scale = 1.0 / 255.0
    else:
        raw = make_synthetic(cfg.synthetic_train, cfg.synthetic_test, cfg.synthetic_side_px,
                             cfg.synthetic_classes, cfg.synthetic_noise, cfg.synthetic_seed)
        n_classes = cfg.synthetic_classes
        scale = 1.0
    (xtr, ytr), (xte, yte) = raw["train"], raw["test"]
    if cfg.train_limit:
        xtr, ytr = xtr[: cfg.train_limit], ytr[: cfg.train_limit]
    if cfg.test_limit:
        xte, yte = xte[: cfg.test_limit], yte[: cfg.test_limit]
    xtr = xtr.astype(np.float32)[:, None] * np.float32(scale)
    xte = xte.astype(np.float32)[:, None] * np.float32(scale)
    mean, std = float(xtr.mean()), float(xtr.std()) or 1.0
    if cfg.corruption == "intff_mix":
        xtr, ytr = intff_mix(xtr, ytr.astype(np.int64), gaussian_fraction=cfg.corruption_gaussian_fraction,
                             dropout_fraction=cfg.corruption_dropout_fraction,
                             noise_fraction=cfg.corruption_noise_fraction,
                             gaussian_std=cfg.corruption_gaussian_std, dropout_p=cfg.corruption_dropout_p,
                             n_classes=n_classes, rng=np.random.default_rng(cfg.corruption_seed))
    if cfg.normalize:
        xtr = (xtr - np.float32(mean)) / np.float32(std)
        xte = (xte - np.float32(mean)) / np.float32(std)
    return Dataset(cfg.name, xtr, ytr.astype(np.int64), xte, yte.astype(np.int64), n_classes)
