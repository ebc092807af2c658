"""data.name = "idx": any IDX image/label files (the MNIST family's format; any image size) from a
folder, and the IDX reader the Fashion-MNIST and MNIST sources share.

A folder (data.root) holds train-images*, train-labels*, and t10k-images* or test-images*,
t10k-labels* or test-labels* (plain or .gz).  IDX: magic 0x00 0x00, element type (0x08 unsigned
byte), ndim, then ndim big-endian uint32 sizes and the data."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from common.errors import DataError

IDX_UBYTE = 0x08
IDX_TYPES = {0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "short", 0x0C: "int", 0x0D: "float",
             0x0E: "double"}
PATTERNS = {"train": (("train-images",), ("train-labels",)),
            "test": (("t10k-images", "test-images"), ("t10k-labels", "test-labels"))}


def read_idx(path: Path, howto: str = "") -> np.ndarray:
    """Read an IDX file of unsigned bytes (gzip or plain); validate magic number and size.  howto:
    what to do about a broken file, appended to the error."""
    tail = f"; {howto}" if howto else ""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path} cannot be read ({exc}); the file is corrupt{tail}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path} is not an IDX file (bad magic number){tail}")
    if raw[2] != IDX_UBYTE:
        kind = IDX_TYPES.get(raw[2], "unknown")
        raise DataError(f"{path}: IDX element type 0x{raw[2]:02x} ({kind}), expected unsigned byte 0x08; "
                        "convert the images to uint8 IDX, or save the arrays as .npz and use data.name = \"npz\"")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"{path}: truncated IDX header{tail}")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise DataError(f"{path}: header promises {expected} bytes of data for shape {dims}, "
                        f"file holds {len(raw) - header}; the file is truncated or corrupt{tail}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def find(folder: Path, prefixes: tuple[str, ...]) -> Path | None:
    """The first file in folder whose name starts with one of prefixes (and looks like IDX)."""
    for prefix in prefixes:
        hits = sorted(p for p in folder.glob(prefix + "*") if p.is_file() and "idx" in p.name)
        if hits:
            return hits[0]
    return None


def load(cfg) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{split: (uint8 images (N, ...), labels (N,))} of the IDX files in data.root."""
    if not cfg.root:
        raise DataError("data.name = \"idx\" needs data.root, the folder with train-images-idx3-ubyte[.gz], "
                        "train-labels-idx1-ubyte[.gz], t10k-images… and t10k-labels…")
    folder = Path(cfg.root)
    if not folder.is_dir():
        raise DataError(f"data.root {folder} is not a folder; give the folder that holds the IDX files")
    out = {}
    for split, (img_prefixes, lab_prefixes) in PATTERNS.items():
        paths = [find(folder, p) for p in (img_prefixes, lab_prefixes)]
        missing = [p[0] for p, path in zip((img_prefixes, lab_prefixes), paths) if path is None]
        if missing:
            raise DataError(f"data.root {folder}: no {' or '.join(missing)}* IDX file (expected "
                            f"{img_prefixes[0]}-idx3-ubyte[.gz] and {lab_prefixes[0]}-idx1-ubyte[.gz])")
        out[split] = (read_idx(paths[0]), read_idx(paths[1]))
    return out
