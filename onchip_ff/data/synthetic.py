"""data.name = "synthetic": seeded Gaussian clusters around random smooth prototypes, for tests."""

from __future__ import annotations

import numpy as np


def make_synthetic(n_train: int, n_test: int, side_px: int, n_classes: int, noise: float,
                   seed: int, channels: int = 1) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Gaussian clusters around random smooth prototypes in [0, 1]; deterministic by seed.  Images
    (N, side, side) for one channel, (N, channels, side, side) for more (e.g. 3 x 32 x 32, the shape
    of CIFAR-10, for memory studies)."""
    rng = np.random.default_rng(seed)
    lead = (n_classes,) if channels == 1 else (n_classes, channels)
    coarse = rng.uniform(0.0, 1.0, size=(*lead, side_px // 2 + 1, side_px // 2 + 1))
    protos = np.repeat(np.repeat(coarse, 2, axis=-2), 2, axis=-1)[..., :side_px, :side_px]
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        labels = rng.integers(0, n_classes, size=n)
        images = protos[labels] + noise * rng.standard_normal((n, *protos.shape[1:]))
        out[split] = (np.clip(images, 0.0, 1.0).astype(np.float32), labels.astype(np.uint8))
    return out


def load(cfg) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return make_synthetic(cfg.synthetic_train, cfg.synthetic_test, cfg.synthetic_side_px,
                          cfg.synthetic_classes, cfg.synthetic_noise, cfg.synthetic_seed, cfg.synthetic_channels)
