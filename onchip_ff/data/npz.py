"""data.name = "npz": your own arrays in one .npz file (data.path): x_train, y_train, x_test, y_test
and optionally x_val, y_val.  Samples of any shape — vectors (N, D), grey images (N, H, W), images
(N, C, H, W) — as uint8 (pixels 0..255, scaled to 0..1) or float; labels as integers 0..K-1."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from common.errors import DataError

KEYS = ("x_train", "y_train", "x_test", "y_test")
OPTIONAL = ("x_val", "y_val")


def load(cfg) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    if not cfg.path:
        raise DataError("data.name = \"npz\" needs data.path, an .npz file with arrays x_train, y_train, "
                        "x_test, y_test (optionally x_val, y_val), e.g. np.savez(path, x_train=..., ...)")
    path = Path(cfg.path)
    if path.is_dir():
        raise DataError(f"data.path {path} is a folder; give the .npz file")
    if not path.is_file():
        raise DataError(f"data.path {path} not found; give an .npz file with x_train, y_train, x_test, y_test")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"data.path {path} is not a readable .npz file ({exc}); write it with np.savez") from None
    return splits(arrays, str(path))


def splits(arrays: dict[str, np.ndarray], where: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The splits of arrays named as in an .npz file (where: what holds them, for the errors)."""
    missing = [k for k in KEYS if k not in arrays]
    if missing:
        raise DataError(f"{where} lacks {', '.join(missing)}; it holds {sorted(arrays) or 'nothing'} "
                        f"(needed: {', '.join(KEYS)}; optional: {', '.join(OPTIONAL)})")
    if ("x_val" in arrays) != ("y_val" in arrays):
        raise DataError(f"{where} holds only one of x_val, y_val; give both or neither")
    out = {"train": (arrays["x_train"], arrays["y_train"]), "test": (arrays["x_test"], arrays["y_test"])}
    if "x_val" in arrays:
        out["val"] = (arrays["x_val"], arrays["y_val"])
    return out
