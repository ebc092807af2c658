"""Noise model "gmax_variability": device-to-device spread of the maximum conductance, which makes
every programmed conductance a per-device gain error (the `program` stage).

At program(), per device:
  f_i = max(1 + sigma_rel * xi, 0),   gmax_i = gmax * f_i   -> state["gmax_uS"] (float32)
  g = g_target * gmax_i / gmax = g_target * f_i
(the periphery maps targets onto the nominal range, the device realises them on its own range).
Moments: with f = max(Y, 0), Y ~ N(1, sigma_rel^2) (rectified Gaussian, stats.py),
  mean = g_target E[f],  std = |g_target| std(f)
which for sigma_rel << 1 is mean g_target, std sigma_rel |g_target| (clip ignored): at sigma_rel =
0.3 the clip at f = 0 changes the mean by 3e-5 and the std by 4e-4 relative; moments() returns the
exact form.
state["gmax_uS"] is the device's own upper bound, for models or code that clip at it; the base
update stage still clips at the nominal gmax.  A re-programmed device draws a new f_i (the crossbar
re-programs subsets of devices and replaces their state).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from common.coerce import check
from hw_models.noise.base import NoiseModel
from hw_models.noise.registry import register
from hw_models.noise.stats import rectified_normal
from hw_models.rng import standard_normal

F32 = np.float32
GMAX_KEY = "gmax_uS"


@register
@dataclass(frozen=True)
class GmaxVariability(NoiseModel):
    """Device-to-device relative spread of gmax; default 0.3 is aihwkit's w_max_dtod."""

    name: ClassVar[str] = "gmax_variability"
    citation: ClassVar[str] = ("aihwkit PulsedDevice: device-to-device variation of the upper bound, "
                               "w_max_dtod = 0.3 relative to w_max "
                               "(src/aihwkit/simulator/configs/devices.py:245-270)")
    stages: ClassVar[frozenset[str]] = frozenset({"program"})

    sigma_rel: float = 0.3  # device-to-device std of gmax, fraction of the nominal gmax

    def __post_init__(self) -> None:
        check(0 <= self.sigma_rel < math.inf, f"hardware.{self.name}.sigma_rel", ">= 0 and finite",
              self.sigma_rel)

    def program(self, g_target_uS, gmax_uS, rng, state=None):
        g = np.array(g_target_uS, dtype=F32, copy=True)
        if self.sigma_rel == 0:
            return g, {}
        if state is not None and GMAX_KEY in state:  # a re-write: the device keeps its gmax
            gmax_i = state[GMAX_KEY]
            return (g * (gmax_i / np.asarray(gmax_uS, F32))).astype(F32), {GMAX_KEY: gmax_i}
        f = np.maximum(F32(1) + F32(self.sigma_rel) * standard_normal(rng, g.size).reshape(g.shape), F32(0))
        return g * f, {GMAX_KEY: (np.asarray(gmax_uS, F32) * f).astype(F32)}

    def moments(self, stage, g_uS, gmax_uS, t_s=0.0, dg_uS=None):
        """program: mean g E[f], std |g| std(f), f = max(N(1, sigma_rel^2), 0).  Others: identity."""
        if stage == "program":
            g = np.asarray(g_uS, np.float64)
            mean_f, std_f = rectified_normal(1.0, self.sigma_rel)
            return g * mean_f, np.abs(g) * std_f
        return super().moments(stage, g_uS, gmax_uS, t_s, dg_uS)

    @classmethod
    def zero(cls) -> "GmaxVariability":
        return cls(sigma_rel=0.0)
