"""Training-batch augmentation: random shifts (pad-and-crop) and left-right mirroring of images.

`augment(x, rng, shift_px, flip, fill)` returns a new batch; the input is not modified.

- shift: each image is padded by shift_px pixels on every side with `fill` and cropped back to its
  size at an offset drawn uniformly from 0..2*shift_px on each axis independently — the same as
  torchvision's RandomCrop(size, padding=shift_px) with a constant fill, i.e. a translation by
  -shift_px..+shift_px pixels whose uncovered border is `fill`.
- flip: each image is mirrored left-right (last axis) with probability 1/2.

Per batch the draws are, in this order: the row offsets (N integers), the column offsets (N),
the flip decisions (N uniforms < 0.5), each only when its augmentation is on.  The trainer
passes `fill` = the standardized value of a black pixel, so padding means "black border", as
padding the raw 0..1 image with 0 would.  All randomness comes from the explicit generator.
"""

from __future__ import annotations

import numpy as np


def augment(x: np.ndarray, rng: np.random.Generator, shift_px: int = 0, flip: bool = False,
            fill: float = 0.0) -> np.ndarray:
    """x: (N, C, H, W) images.  A new float array with every image shifted by up to ±shift_px
    pixels per axis (border filled with `fill`) and, with flip, mirrored left-right with
    probability 1/2.  shift_px = 0 and flip = False give a copy of x."""
    if x.ndim != 4:
        raise ValueError(f"augment needs (N, C, H, W) images, got shape {x.shape}")
    if shift_px < 0:
        raise ValueError(f"shift_px must be >= 0, got {shift_px}")
    n, c, h, w = x.shape
    if shift_px == 0 and not flip:
        return x.copy()
    rows0 = rng.integers(0, 2 * shift_px + 1, n) if shift_px else np.zeros(n, np.int64)
    cols0 = rng.integers(0, 2 * shift_px + 1, n) if shift_px else np.zeros(n, np.int64)
    mirrored = rng.random(n) < 0.5 if flip else np.zeros(n, bool)
    padded = np.pad(x, ((0, 0), (0, 0), (shift_px, shift_px), (shift_px, shift_px)),
                    constant_values=np.asarray(fill, x.dtype)) if shift_px else x
    rows = rows0[:, None] + np.arange(h)  # (N, H) padded-row index of each output row
    cols = cols0[:, None] + np.where(mirrored[:, None], np.arange(w)[::-1], np.arange(w))  # (N, W)
    return padded[np.arange(n)[:, None, None, None], np.arange(c)[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]
