"""Noise model "stuck_at": devices stuck at the lowest (0) or highest (gmax) conductance, a hard
fault drawn once at programming (`program`) and re-imposed after every write and drift (`enforce`).

At program(), independently per device: stuck low with probability p_stuck_low, stuck high with
p_stuck_high, free otherwise (one uniform u per device: low if u < p_low, high if u < p_low + p_high).
  state["stuck"]            int8 per device: 0 free, 1 stuck at 0, 2 stuck at gmax
  state["stuck_at.gmax_uS"] float32 per device, the gmax passed to program() (only when
                            p_stuck_high > 0): enforce() receives no gmax.  Per-device arrays because
                            the crossbar re-programs subsets of devices by boolean mask.
A re-programmed device draws its fault again (the crossbar passes only the changed devices).
program() returns enforce(g_target).  For a target g (p = p_stuck_low, h = p_stuck_high):
  mean = (1 - p - h) g + h gmax,   E[g'^2] = (1 - p - h) g^2 + h gmax^2,   std = sqrt(E[g'^2] - mean^2)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from common.coerce import check
from hw_models.noise.base import NoiseModel
from hw_models.noise.registry import register

F32 = np.float32
STUCK_KEY = "stuck"
GMAX_KEY = "stuck_at.gmax_uS"
FREE, LOW, HIGH = 0, 1, 2


@register
@dataclass(frozen=True)
class StuckAt(NoiseModel):
    """Stuck-at-low / stuck-at-high device faults; defaults are the rates measured on a 4 Mb ReRAM
    chip (1.75 % stuck at high resistance = low conductance, 9.04 % at low resistance = high)."""

    name: ClassVar[str] = "stuck_at"
    citation: ClassVar[str] = ("C.-Y. Chen et al., 'RRAM defect modeling and failure analysis based on "
                               "march test and a novel squeeze-search scheme', IEEE Trans. Computers "
                               "64(1), 2015 (stuck-at fault rates of a 4 Mb RRAM chip, as used by Xia "
                               "et al., 'Stuck-at fault tolerance in RRAM computing systems', DAC 2017)")
    stages: ClassVar[frozenset[str]] = frozenset({"program"})

    p_stuck_low: float = 0.0175  # probability that a device is stuck at 0 uS
    p_stuck_high: float = 0.0904  # probability that a device is stuck at gmax

    def __post_init__(self) -> None:
        p = f"hardware.{self.name}."
        for f in ("p_stuck_low", "p_stuck_high"):
            check(0 <= getattr(self, f) <= 1, p + f, "in [0, 1]", getattr(self, f))
        check(self.p_stuck_low + self.p_stuck_high <= 1, p + "p_stuck_high",
              f"<= 1 - p_stuck_low = {1 - self.p_stuck_low}", self.p_stuck_high)

    def program(self, g_target_uS, gmax_uS, rng, state=None):
        g = np.array(g_target_uS, dtype=F32, copy=True)
        if self.p_stuck_low == 0 and self.p_stuck_high == 0:
            return g, {}
        if state is not None and STUCK_KEY in state:  # a re-write: faults are permanent
            stuck = state[STUCK_KEY]
        else:
            u = rng.random(g.shape, dtype=F32)
            stuck = np.zeros(g.shape, np.int8)
            stuck[u < F32(self.p_stuck_low + self.p_stuck_high)] = HIGH
            stuck[u < F32(self.p_stuck_low)] = LOW
        state = {STUCK_KEY: stuck}
        if self.p_stuck_high > 0:
            state[GMAX_KEY] = np.broadcast_to(np.asarray(gmax_uS, F32), g.shape).copy()
        return self.enforce(g, state), state

    def enforce(self, g_uS, state):
        stuck = state.get(STUCK_KEY)
        if stuck is None:
            return g_uS
        g = np.array(g_uS, dtype=F32, copy=True)
        g[stuck == LOW] = 0
        if GMAX_KEY in state:
            high = stuck == HIGH
            g[high] = state[GMAX_KEY][high]
        return g

    def moments(self, stage, g_uS, gmax_uS, t_s=0.0, dg_uS=None):
        """program: the three-point mixture above.  Other stages: identity."""
        if stage == "program":
            g = np.asarray(g_uS, np.float64)
            gmax = float(np.float32(gmax_uS)) if np.ndim(gmax_uS) == 0 else np.asarray(gmax_uS, F32)
            free, high = 1.0 - self.p_stuck_low - self.p_stuck_high, self.p_stuck_high
            mean = free * g + high * gmax
            second = free * g * g + high * np.square(gmax)
            return mean, np.sqrt(np.maximum(second - mean * mean, 0.0))
        return super().moments(stage, g_uS, gmax_uS, t_s, dg_uS)

    @classmethod
    def zero(cls) -> "StuckAt":
        return cls(p_stuck_low=0.0, p_stuck_high=0.0)
