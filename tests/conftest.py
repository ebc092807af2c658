"""Shared fixtures: tiny synthetic configs, IDX file writer, Fashion-MNIST availability."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from onchip_ff import config
from onchip_ff.data import DEBIAN_ROOT

HAVE_FMNIST = (DEBIAN_ROOT / "train-images-idx3-ubyte.gz").is_file()

SYNTHETIC = ["data.name=synthetic", "data.synthetic_train=600", "data.synthetic_test=300",
             "train.batch_size=50", "train.threads=1", "train.train_eval_samples=300"]
TINY_MLP = ["model.arch=mlp", "model.hidden=[32, 32, 32]"]
TINY_CNN = ["model.arch=cnn", "model.channels=[8, 16]"]


def tiny_config(method: str, arch: str = "mlp", epochs: int = 2, extra: list[str] = ()) -> config.Config:
    lr = {"df": 3e-3, "ff": 1e-2, "bp": 3e-3}[method]
    return config.load(None, SYNTHETIC + (TINY_MLP if arch == "mlp" else TINY_CNN)
                       + [f"objective.method={method}", f"train.epochs={epochs}", f"train.lr={lr}"]
                       + list(extra))


def write_idx(path: Path, array: np.ndarray, gz: bool = True, magic: bytes | None = None) -> Path:
    """Write a uint8 array as an IDX file (the format of the MNIST family)."""
    header = magic if magic is not None else bytes([0, 0, 0x08, array.ndim])
    header += b"".join(struct.pack(">I", d) for d in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


@pytest.fixture
def fake_fmnist(tmp_path: Path) -> Path:
    """A folder with correctly sized, random Fashion-MNIST IDX files (torchvision raw layout)."""
    write_random_idx_set(tmp_path / "FashionMNIST" / "raw")
    return tmp_path


def write_random_idx_set(raw: Path) -> None:
    """Random 28x28 images and 10-class labels, 60000 train / 10000 test, as gzipped IDX files in
    raw (the MNIST / Fashion-MNIST file names)."""
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 60000), ("t10k", 10000)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
