"""data.name = "cifar10": CIFAR-10 from a local folder in the python layout of the original archive
(cifar-10-batches-py: data_batch_1 .. data_batch_5, test_batch; each a pickled dict with b"data"
(10000, 3072) uint8 rows of 32x32 RGB planes and b"labels").  data.root is that folder or the one
holding it.  The pickles are read with an unpickler that accepts numpy arrays and plain types
only, so a tampered file cannot run code."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from common.errors import DataError

TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST = ("test_batch",)
HOWTO = ("set data.root to the cifar-10-batches-py folder of the python version of CIFAR-10 "
         "(cifar-10-python.tar.gz, unpacked) or the folder holding it")
_ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing {module}.{name}: a CIFAR batch holds arrays and lists only")


def _batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            d = _ArraysOnly(f, encoding="bytes").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as exc:
        raise DataError(f"{path} is not a CIFAR-10 python batch ({exc}); {HOWTO}") from None
    if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
        raise DataError(f"{path}: a CIFAR-10 batch is a dict with b'data' and b'labels'; {HOWTO}")
    data, labels = np.asarray(d[b"data"]), np.asarray(d[b"labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise DataError(f"{path}: expected uint8 data (N, 3072) and N labels, got {data.dtype} {data.shape} "
                        f"and {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32), labels


def load(cfg) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    if not cfg.root:
        raise DataError(f"data.name = \"cifar10\" needs data.root; {HOWTO}")
    root = Path(cfg.root)
    folder = root / "cifar-10-batches-py" if (root / "cifar-10-batches-py").is_dir() else root
    if not folder.is_dir():
        raise DataError(f"data.root {root} is not a folder; {HOWTO}")
    out = {}
    for split, names in (("train", TRAIN), ("test", TEST)):
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise DataError(f"{folder}: missing {', '.join(missing)}; {HOWTO}")
        parts = [_batch(folder / n) for n in names]
        out[split] = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    return out
