"""Noise model "gaussian_weight": Gaussian programming error, an additive part (a fraction of gmax)
plus a multiplicative part (a fraction of the target), the `program` stage.

  g = g_target + sigma_add_rel * gmax * xi1 + sigma_mul_rel * |g_target| * xi2,   xi1, xi2 ~ N(0, 1)
The sum of the two independent Gaussians is one Gaussian, so it is drawn as one:
  g = g_target + sigma_uS * xi,
  sigma_uS = sqrt((sigma_add_rel * gmax)^2 + (sigma_mul_rel * g_target)^2)
(exact in distribution, half the random numbers).  mean = g_target, std = sigma_uS.

No clipping to [0, gmax]: clipping would bias the mean and shrink the std away from the formula
above; the crossbar (or a later model) clips where it needs physical bounds.  aihwkit's
StateIndependentNoiseModel, whose additive part this is, clamps at 0 (see citation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from hw_models.noise.base import NoiseModel, check
from hw_models.noise.registry import register

F32 = np.float32


@register
@dataclass(frozen=True)
class GaussianWeight(NoiseModel):
    """Additive + multiplicative Gaussian programming noise.  Default additive 0.8 % of gmax is
    aihwkit's 0.2 uS at gmax = 25 uS; the 2 % multiplicative part is illustrative."""

    name: ClassVar[str] = "gaussian_weight"
    citation: ClassVar[str] = ("additive part: aihwkit StateIndependentNoiseModel, "
                               "src/aihwkit/inference/noise/custom.py (docstring: constant programming "
                               "noise c0 = 0.2 uS; apply_programming_noise_to_conductance); "
                               "multiplicative part: a conductance-proportional programming error (the "
                               "c1 g/gmax term of the same polynomial, here added in quadrature)")
    stages: ClassVar[frozenset[str]] = frozenset({"program"})

    sigma_add_rel: float = 0.008  # std of the additive error, fraction of gmax
    sigma_mul_rel: float = 0.02  # std of the multiplicative error, fraction of |g_target|

    def __post_init__(self) -> None:
        for f in ("sigma_add_rel", "sigma_mul_rel"):
            v = getattr(self, f)
            check(0 <= v < math.inf, f"hardware.{self.name}.{f}", ">= 0 and finite", v)

    def _sigma_uS(self, g_uS, gmax_uS) -> np.ndarray:
        add = F32(self.sigma_add_rel) * np.asarray(gmax_uS, F32)
        mul = F32(self.sigma_mul_rel) * np.abs(np.asarray(g_uS, F32))
        return np.sqrt(add * add + mul * mul).astype(F32)

    def program(self, g_target_uS, gmax_uS, rng, state=None):
        g = np.array(g_target_uS, dtype=F32, copy=True)
        if self.sigma_add_rel == 0 and self.sigma_mul_rel == 0:
            return g, {}
        g += self._sigma_uS(g, gmax_uS) * rng.standard_normal(g.shape, dtype=F32)
        return g, {}

    def moments(self, stage, g_uS, gmax_uS, t_s=0.0, dg_uS=None):
        """program: mean g, std sqrt((sigma_add_rel gmax)^2 + (sigma_mul_rel g)^2).  Others: identity."""
        if stage == "program":
            g = np.asarray(g_uS, np.float64)
            add = self.sigma_add_rel * np.asarray(gmax_uS, np.float64)
            std = np.sqrt(add * add + (self.sigma_mul_rel * g) ** 2)
            return g, np.broadcast_to(std, g.shape).copy()
        return super().moments(stage, g_uS, gmax_uS, t_s, dg_uS)

    @classmethod
    def example(cls) -> "GaussianWeight":
        return cls(sigma_add_rel=0.008, sigma_mul_rel=0.02)

    @classmethod
    def zero(cls) -> "GaussianWeight":
        return cls(sigma_add_rel=0.0, sigma_mul_rel=0.0)
