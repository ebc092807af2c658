"""Noise model "weight_quantization": a device holds one of `levels` equally spaced conductances,
so programming rounds every target to the nearest level (deterministic, the `program` stage).

  k = rint(clip(g_target / gmax, 0, 1) * (levels - 1)),   g = k * gmax / (levels - 1)
i.e. the nearest of the levels 0, step, ..., gmax (step = gmax / (levels - 1)); rint rounds half to
even (numpy's rint), so a target exactly half-way between two levels goes to the even-index level.
Computed in float64 and rounded once to float32: the levels are the float32 nearest to
k * gmax / (levels - 1).  levels = 0 turns the model off (zero()).

Only writes through program() are quantized: an update applied by the crossbar (or by a pulsed
update model) is not re-rounded, and drift moves conductances off the grid, as it does physically.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from common.coerce import check
from hw_models.noise.base import NoiseModel
from hw_models.noise.registry import register

F32 = np.float32
MAX_LEVELS = 1 << 16


@register
@dataclass(frozen=True)
class WeightQuantization(NoiseModel):
    """Uniform conductance levels of a multi-level cell; default 16 levels (4 bits per device)."""

    name: ClassVar[str] = "weight_quantization"
    citation: ClassVar[str] = ("uniform quantizer over the device's programmable range [0, gmax] (a "
                               "multi-level cell with `levels` distinct states), cf. the per-device "
                               "conductance levels of the NeuroSim macro model (Chen, Peng, Yu, "
                               "IEEE TCAD 37(12), 2018)")
    stages: ClassVar[frozenset[str]] = frozenset({"program"})

    levels: int = 16  # number of distinct conductances including 0 and gmax; 0 = off

    def __post_init__(self) -> None:
        check(isinstance(self.levels, int) and not isinstance(self.levels, bool)
              and (self.levels == 0 or 2 <= self.levels <= MAX_LEVELS),
              f"hardware.{self.name}.levels", f"0 (off) or 2..{MAX_LEVELS}", self.levels)

    def _quantize(self, g_uS, gmax_uS) -> np.ndarray:
        gmax = np.asarray(gmax_uS, np.float64)
        steps = self.levels - 1
        k = np.rint(np.clip(np.asarray(g_uS, np.float64) / gmax, 0.0, 1.0) * steps)
        return (k * gmax / steps).astype(F32)

    def program(self, g_target_uS, gmax_uS, rng, state=None):
        if self.levels == 0:
            return np.array(g_target_uS, dtype=F32, copy=True), {}
        return self._quantize(g_target_uS, gmax_uS), {}

    def moments(self, stage, g_uS, gmax_uS, t_s=0.0, dg_uS=None):
        """program: mean = the quantized target (formula above), std = 0.  Other stages: identity."""
        if stage == "program" and self.levels:
            q = self._quantize(g_uS, gmax_uS).astype(np.float64)
            return q, np.zeros_like(q)
        return super().moments(stage, g_uS, gmax_uS, t_s, dg_uS)

    @classmethod
    def zero(cls) -> "WeightQuantization":
        return cls(levels=0)
