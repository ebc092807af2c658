"""Shared base of the two Gaussian models: std = sqrt((sigma_add_rel gmax)^2 + (sigma_mul_rel g)^2)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from common.coerce import check
from hw_models.noise.base import NoiseModel

F32 = np.float32


@dataclass(frozen=True)
class AddMulGaussian(NoiseModel):
    sigma_add_rel: float = 0.0  # std of the additive part, fraction of gmax
    sigma_mul_rel: float = 0.0  # std of the proportional part, fraction of |g|

    def __post_init__(self) -> None:
        for f in ("sigma_add_rel", "sigma_mul_rel"):
            v = getattr(self, f)
            check(0 <= v < math.inf, f"hardware.{self.name}.{f}", ">= 0 and finite", v)

    @property
    def silent(self) -> bool:
        return self.sigma_add_rel == 0 and self.sigma_mul_rel == 0

    def sigma_uS(self, g_uS, gmax_uS, dtype=F32) -> np.ndarray:
        add = dtype(self.sigma_add_rel) * np.asarray(gmax_uS, dtype)
        mul = dtype(self.sigma_mul_rel) * np.abs(np.asarray(g_uS, dtype))
        return np.broadcast_to(np.sqrt(add * add + mul * mul), np.shape(g_uS)).astype(dtype)

    def gaussian_moments(self, g_uS, gmax_uS) -> tuple[np.ndarray, np.ndarray]:
        """(mean g, std sqrt((a gmax)^2 + (m g)^2)) in float64."""
        g = np.asarray(g_uS, np.float64)
        return g, self.sigma_uS(g, gmax_uS, np.float64)

    @classmethod
    def zero(cls) -> "AddMulGaussian":
        return cls(sigma_add_rel=0.0, sigma_mul_rel=0.0)
