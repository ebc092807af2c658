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

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from hw_models.noise.gaussian_base import AddMulGaussian
from hw_models.noise.registry import register
from hw_models.rng import standard_normal

F32 = np.float32


@register
@dataclass(frozen=True)
class GaussianWeight(AddMulGaussian):
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

    def program(self, g_target_uS, gmax_uS, rng, state=None):
        g = np.array(g_target_uS, dtype=F32, copy=True)
        if self.silent:
            return g, {}
        g += self.sigma_uS(g, gmax_uS) * standard_normal(rng, g.size).reshape(g.shape)
        return g, {}

    def moments(self, stage, g_uS, gmax_uS, t_s=0.0, dg_uS=None):
        """program: mean g, std sqrt((sigma_add_rel gmax)^2 + (sigma_mul_rel g)^2).  Others: identity."""
        if stage == "program":
            return self.gaussian_moments(g_uS, gmax_uS)
        return super().moments(stage, g_uS, gmax_uS, t_s, dg_uS)
