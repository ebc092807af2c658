"""Weight mapping of an analog array: per-output-column ranges and differential conductance pairs.

w[m, k] = (G+[m, k] - G-[m, k]) / gmax * w_max[m], with w_max = headroom * max|W[m, :]| fixed at
programming.  "one_sided" pairs (aihwkit's inference mapping) put one device at 0; "symmetric"
pairs sit around gmax/2 with room to move both ways (pulsed updates)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class WeightMapping:
    headroom: float  # w_max = headroom * max|W[m, :]|
    pairs: str  # "one_sided" or "symmetric"
    gmax_uS: float

    def ranges(self, w: np.ndarray) -> np.ndarray:
        """w_max (M, 1) float32 of weights w (M, K); an all-zero column gets range headroom * 1."""
        absmax = np.abs(w).max(axis=1) if w.size else np.ones(w.shape[0], np.float32)
        return np.ascontiguousarray((self.headroom * np.where(absmax > 0, absmax, 1.0)).astype(np.float32)[:, None])

    def targets(self, w_norm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(G+, G-) target conductances (uS) of normalized weights w_norm in [-1, 1]."""
        gmax = np.float32(self.gmax_uS)
        if self.pairs == "one_sided":
            return np.maximum(w_norm, 0) * gmax, np.maximum(-w_norm, 0) * gmax
        half = gmax / np.float32(2)
        return half * (1 + w_norm), half * (1 - w_norm)
