"""Training-set corruption protocols: the IntFF noisy-input mix (clean, Gaussian, drop-out, pure noise).

The "intff_mix" protocol (Tang 2023, "The Integrated Forward-Forward Algorithm", arXiv:2305.12960)
trains on a set whose samples are split at random into four parts:

- clean:    left as they are (bit-identical);
- gaussian: every pixel gets independent N(0, gaussian_std^2) noise added, no clipping, so the
            residual has exactly the configured std;
- dropout:  every pixel is set to 0 independently with probability dropout_p, the others are kept;
- noise:    the image is replaced by pure noise, drawn i.i.d. uniform over [min, max] of the
            incoming training pixels, and the label by a uniformly random class.

Pure noise is uniform over the data's own pixel range (rather than N(mean, std) of the pixels)
because it then stays inside the range any real input occupies (the DAC range of the
hardware), has no out-of-range tails, and needs no further assumption about the pixel
distribution; for Fashion-MNIST on the raw 0..1 scale it is U(0, 1).

Part sizes for N samples: gaussian, dropout and noise get floor(fraction * N) samples each
(a 1e-9 slack absorbs float error, so 0.29 * 100 gives 29), clean gets the rest. Which sample
lands in which part is a uniformly random permutation; samples keep their positions.
The functions are pure: all randomness comes from the explicit generator; inputs are not modified.
"""

from __future__ import annotations

import math

import numpy as np

PARTS = ("clean", "gaussian", "dropout", "noise")
_FLOOR_SLACK = 1e-9  # absorbs float error in fraction * n before flooring


def part_counts(n: int, gaussian_fraction: float, dropout_fraction: float,
                noise_fraction: float) -> dict[str, int]:
    """{part: number of samples}: floor(fraction * n) for the corrupted parts, the rest clean."""
    counts = {name: math.floor(frac * n + _FLOOR_SLACK) for name, frac in
              (("gaussian", gaussian_fraction), ("dropout", dropout_fraction), ("noise", noise_fraction))}
    corrupted = sum(counts.values())
    if corrupted > n:
        raise ValueError(f"corrupted fractions add up to more than 1: {counts} of {n} samples")
    return {"clean": n - corrupted, **counts}


def intff_mix_parts(x: np.ndarray, y: np.ndarray, *, gaussian_fraction: float, dropout_fraction: float,
                    noise_fraction: float, gaussian_std: float, dropout_p: float, n_classes: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Like `intff_mix`, and also returns {part: sorted sample indices} of the partition."""
    if x.shape[:1] != y.shape:
        raise ValueError(f"x has {x.shape[0]} samples, y has shape {y.shape}")
    n = x.shape[0]
    counts = part_counts(n, gaussian_fraction, dropout_fraction, noise_fraction)
    order = rng.permutation(n)
    bounds = np.cumsum([0] + [counts[p] for p in PARTS])
    parts = {p: np.sort(order[bounds[i]: bounds[i + 1]]) for i, p in enumerate(PARTS)}
    lo, hi = (float(x.min()), float(x.max())) if n else (0.0, 1.0)
    x_out, y_out = x.copy(), y.copy()
    g, d, z = parts["gaussian"], parts["dropout"], parts["noise"]
    x_out[g] = x[g] + (gaussian_std * rng.standard_normal(x[g].shape)).astype(x.dtype)
    keep = rng.random(x[d].shape) >= dropout_p
    x_out[d] = np.where(keep, x[d], 0).astype(x.dtype)
    x_out[z] = rng.uniform(lo, hi, size=x[z].shape).astype(x.dtype)
    y_out[z] = rng.integers(0, n_classes, size=z.size).astype(y.dtype)
    return x_out, y_out, parts


def intff_mix(x: np.ndarray, y: np.ndarray, *, gaussian_fraction: float, dropout_fraction: float,
              noise_fraction: float, gaussian_std: float, dropout_p: float, n_classes: int,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """New (x, y): images (N, C, H, W) and labels (N,) with the IntFF noisy-input mix applied.

    gaussian_std is in the pixel units of x; dropped pixels become 0, so x should be on a scale
    where 0 means "no signal" (the raw 0..1 scale in `load_dataset`, before normalization).
    """
    x_out, y_out, _ = intff_mix_parts(x, y, gaussian_fraction=gaussian_fraction,
                                      dropout_fraction=dropout_fraction, noise_fraction=noise_fraction,
                                      gaussian_std=gaussian_std, dropout_p=dropout_p,
                                      n_classes=n_classes, rng=rng)
    return x_out, y_out
