"""data.name = "fashion_mnist" (the default) and "mnist": the raw IDX files of the two 28x28, 10-class
sets.  Fashion-MNIST comes from Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist)
or data.root; MNIST from data.root in torchvision's layout (MNIST/raw) or flat."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from common.errors import DataError
from onchip_ff.data.idx import read_idx

DEBIAN_ROOT = Path("/usr/share/datasets/fashion-mnist")
HOWTO = ("get Fashion-MNIST with `sudo apt-get install dataset-fashion-mnist` (files land in "
         f"{DEBIAN_ROOT}) or set data.root to a folder holding the raw IDX files "
         "(torchvision's FashionMNIST/raw layout)")
MNIST_HOWTO = ("set data.root to the folder holding MNIST's raw IDX files (torchvision's MNIST/raw "
               "layout, or the four files themselves)")
SPLITS = {  # split: (images file, labels file, number of samples)
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60000),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10000),
}


def _find(root: Path, stem: str, subfolder: str, what: str, howto: str) -> Path:
    for folder in (root, root / subfolder / "raw", root / "raw"):
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    raise DataError(f"{what} file {stem}[.gz] not found under {root}; {howto}")


def _load(root: Path, subfolder: str, what: str, howto: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    if root.exists() and not root.is_dir():
        raise DataError(f"data.root {root} is a file, not a folder; {howto}")
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist; {howto}")
    out = {}
    for split, (images_stem, labels_stem, n) in SPLITS.items():
        images = read_idx(_find(root, images_stem, subfolder, what, howto), howto)
        labels = read_idx(_find(root, labels_stem, subfolder, what, howto), howto)
        if images.ndim != 3 or images.shape[1:] != (28, 28):
            raise DataError(f"{images_stem}: expected images of 28x28, got shape {images.shape}")
        if labels.ndim != 1:
            raise DataError(f"{labels_stem}: expected a 1-D label file, got shape {labels.shape}")
        if images.shape[0] != labels.shape[0] or images.shape[0] != n:
            raise DataError(f"{split} split: {images.shape[0]} images and {labels.shape[0]} labels, "
                            f"expected {n} of each; {howto}")
        if labels.max() > 9:
            raise DataError(f"{labels_stem}: label {labels.max()} out of range 0..9")
        out[split] = (images, labels)
    return out


def load_fashion_mnist_raw(root: Path | str | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{split: (uint8 images (N, 28, 28), uint8 labels (N,))}, sizes and label range checked."""
    return _load(Path(root) if root else DEBIAN_ROOT, "FashionMNIST", "Fashion-MNIST", HOWTO)


def load(cfg) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return load_fashion_mnist_raw(cfg.root or None)


def load_mnist(cfg) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    if not cfg.root:
        raise DataError(f"data.name = \"mnist\" needs data.root: {MNIST_HOWTO}")
    return _load(Path(cfg.root), "MNIST", "MNIST", MNIST_HOWTO)
