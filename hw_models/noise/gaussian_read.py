"""Noise model "gaussian_read": independent Gaussian noise on every read of a device (the `read`
stage): an additive part (a fraction of gmax) and a part proportional to the conductance read.

  read_sigma_uS = sqrt((sigma_add_rel * gmax)^2 + (sigma_mul_rel * |g|)^2)
One read of a device returns g + read_sigma_uS * xi, xi ~ N(0, 1), fresh at every read; the model
never draws itself: the crossbar adds the exact output distribution of the MVM (a sum of
independent per-device Gaussians, N(0, sum_k x_k^2 read_sigma_k^2)).  mean = g, std = read_sigma_uS.

gmax: read_sigma_uS() receives no gmax, so program() stores it per device in
state["gaussian_read.gmax_uS"] (float32, the gmax passed to program; only when sigma_add_rel > 0).
Per-device arrays, not a scalar, because the crossbar re-programs subsets of devices by boolean
mask (state[key][changed] = new); device-to-device spread of gmax belongs to "gmax_variability".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from hw_models.noise.gaussian_base import AddMulGaussian
from hw_models.noise.registry import register

F32 = np.float32
GMAX_KEY = "gaussian_read.gmax_uS"


@register
@dataclass(frozen=True)
class GaussianRead(AddMulGaussian):
    """Additive + conductance-proportional Gaussian read noise.  Defaults: 1 % of gmax additive and
    1.75 % of g, the w_noise of aihwkit's StandardHWATrainingPreset (there of type PCM_READ)."""

    name: ClassVar[str] = "gaussian_read"
    citation: ClassVar[str] = ("aihwkit output-referred weight noise, applied anew at every MVM: "
                               "IOParameters.w_noise / WeightNoiseType.ADDITIVE_CONSTANT "
                               "(src/aihwkit/simulator/parameters/io.py:141-150, enums.py:140-157); "
                               "w_noise = 0.0175 in StandardHWATrainingPreset "
                               "(src/aihwkit/simulator/presets/inference.py:97-98)")
    stages: ClassVar[frozenset[str]] = frozenset({"read"})

    sigma_add_rel: float = 0.01  # std of the additive read noise, fraction of gmax
    sigma_mul_rel: float = 0.0175  # std of the proportional read noise, fraction of |g|

    def program(self, g_target_uS, gmax_uS, rng, state=None):
        g = np.array(g_target_uS, dtype=F32, copy=True)
        if self.sigma_add_rel == 0:
            return g, {}
        return g, {GMAX_KEY: np.broadcast_to(np.asarray(gmax_uS, F32), g.shape).copy()}

    def read_sigma_uS(self, g_uS, state, t_s):
        if self.silent:
            return None
        return self.sigma_uS(g_uS, state.get(GMAX_KEY, F32(0)))

    def moments(self, stage, g_uS, gmax_uS, t_s=0.0, dg_uS=None):
        """read: mean g, std sqrt((sigma_add_rel gmax)^2 + (sigma_mul_rel g)^2).  Others: identity."""
        if stage == "read":
            return self.gaussian_moments(g_uS, gmax_uS)
        return super().moments(stage, g_uS, gmax_uS, t_s, dg_uS)
