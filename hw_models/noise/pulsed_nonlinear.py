"""Noise model "pulsed_nonlinear": a pulsed device with NeuroSim's nonlinear, asymmetric
conductance response (the `update` stage), and the numpy form of its weight curve.

Sources: Chen, Peng, Yu, "NeuroSim: A Circuit-Level Macro Model for Benchmarking Neuro-Inspired
Architectures in Online Learning", IEEE TCAD 37(12), 2018; code neurosim/MLP_NeuroSim_V3.0, read at
commit cc138637:
  formula.cpp:82-89     NonlinearWeight g = B (1 - e^(-P/A)) + Gmin, InvNonlinearWeight
                        P = -A ln(1 - (g - Gmin)/B), B = (Gmax - Gmin)/(1 - e^(-Pmax/A)) (Cell.cpp:370)
  Cell.cpp:363-401      RealDevice::Write: pulse count, invert g on the curve of the update's
                        direction, P + numPulse, c-t-c error N(0, sigmaCtoC) sqrt(|numPulse|) added
                        to g, clip to [Gmin, Gmax]
  formula.cpp:48-63     truncate(): |x| Pmax rounded half up (threshold 0.5)
  formula.cpp:158-317   getParamA(): A/Pmax per nonlinearity label NL (negative for depression)
  Cell.cpp:259-319      RealDevice::RealDevice, the Ag:a-Si device: 97/100 levels (274-275),
                        NL_LTP 2.4, NL_LTD -4.88 (310-315), sigmaCtoC = 0.035 (Gmax - Gmin) (318)

Curve, normalized: W(P) = B (1 - e^(-P/A)) - 1 on [-1, 1], B = 2 / (1 - e^(-Pmax/A)), P = 0..Pmax
(Pmax + 1 levels from gmin by single pulses), g = gmin + (W + 1)/2 (gmax - gmin).  Potentiation
uses A_ltp; depression runs the point-mirrored curve W_ltd(P) = -W(Pmax - P; A_ltd), which is
NeuroSim's formula with a negative A (getParamA returns -A for NL < 0).  Large A -> linear.

update(g, dg), step = (gmax - gmin) / Pmax the nominal linear step:
  n = floor(|dg| / step + u)   u ~ U[0, 1) ("stochastic", default: E[n] = |dg| / step, so updates
                               below one step are not lost) or u = 0.5 ("nearest": NeuroSim's
                               truncate, round half up)
  P = curve^-1(g) on the curve of sign(dg);  P' = clip(P + sign(dg) n, 0, Pmax)
  g' = clip(gmin + (gmax - gmin) r(P') + ctoc_std_pulses * step * sqrt(n) * xi, gmin, gmax)
P is real: a g reached on one curve sits between integer positions of the other.  The cycle-to-cycle
error is NeuroSim's: in conductance, sqrt(n) times the per-pulse std, after the curve (so g leaves
the curve and the next update re-inverts it); ctoc_std_pulses is that std in nominal steps
(NeuroSim's sigmaCtoC = 0.035 (Gmax - Gmin) is 0.035 Pmax pulses).  Pulses move P monotonically,
so clipping P once equals clipping after each pulse; g is clipped once, as in NeuroSim.
zero() is `enabled = False` (A -> infinity is linear but still quantized to pulses, so no setting
reproduces np.clip(g + dg, 0, gmax) exactly): "off" delegates every stage to the ideal device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from hw_models.kernels.pulsed import NEAREST_U, nonlinear_update
from common.coerce import check
from hw_models.noise.base import NoiseModel
from hw_models.noise.pulsed_constant import ROUNDINGS, mixture_moments, pulse_count_law
from hw_models.noise.registry import register
from hw_models.kernels.normal import Stream
from hw_models.kernels.quantize import seed_key

F32 = np.float32
# getParamA(NL) of formula.cpp:158-317 (A/Pmax) at NL = 2.4 and 4.88, the Ag:a-Si device
AGSI_A_OVER_PMAX_LTP = 0.499181
AGSI_A_OVER_PMAX_LTD = 0.200303


def curve_fraction(p, a: float, p_max: float, up: bool) -> np.ndarray:
    """r = (W + 1)/2 at pulse position(s) p on the potentiation (up) or depression curve."""
    p = np.asarray(p, np.float64)
    e = np.expm1(-p_max / a)
    return np.expm1(-p / a) / e if up else 1.0 - np.expm1(-(p_max - p) / a) / e


def normalized_weight(p, a: float, p_max: float, up: bool = True) -> np.ndarray:
    """W(P) = B (1 - e^(-P/A)) - 1 (up) or its point mirror -W(Pmax - P) (down), in [-1, 1]."""
    return 2.0 * curve_fraction(p, a, p_max, up) - 1.0


def curve_position(r, a: float, p_max: float, up: bool) -> np.ndarray:
    """Inverse of curve_fraction for r in [0, 1] (real pulse positions in [0, p_max])."""
    r = np.clip(np.asarray(r, np.float64), 0.0, 1.0)
    e = np.expm1(-p_max / a)
    y = r * e if up else (1.0 - r) * e
    with np.errstate(divide="ignore"):
        q = -a * np.log1p(np.maximum(y, -1.0))  # position measured from the curve's start
    return np.minimum(q, p_max) if up else np.maximum(p_max - q, 0.0)


@register
@dataclass(frozen=True)
class PulsedNonlinear(NoiseModel):
    """NeuroSim-style nonlinear pulsed device; defaults are NeuroSim's Ag:a-Si ReRAM (one Pmax of 100
    for both directions: NeuroSim uses 97 up, 100 down).  `enabled = False` is the ideal device."""

    name: ClassVar[str] = "pulsed_nonlinear"
    citation: ClassVar[str] = ("Chen, Peng, Yu, 'NeuroSim: A Circuit-Level Macro Model for Benchmarking "
                               "Neuro-Inspired Architectures in Online Learning', IEEE TCAD 37(12), 2018; "
                               "neurosim/MLP_NeuroSim_V3.0 Cell.cpp RealDevice::Write, formula.cpp")
    stages: ClassVar[frozenset[str]] = frozenset({"update"})

    enabled: bool = True  # False: "off", every stage is the ideal device's (the curve cannot be exact)
    p_max: int = 100  # pulses from gmin to gmax (p_max + 1 levels)
    A_ltp: float = AGSI_A_OVER_PMAX_LTP * 100  # potentiation nonlinearity, in pulses (NL 2.4)
    A_ltd: float = AGSI_A_OVER_PMAX_LTD * 100  # depression nonlinearity, in pulses (NL -4.88)
    ctoc_std_pulses: float = 0.035 * 100  # c-t-c std of one pulse, in nominal steps
    gmin_uS: float = 0.0  # conductance at P = 0
    gmax_uS: float = 0.0  # conductance at P = p_max; 0 = the crossbar's gmax passed to update
    rounding: str = "stochastic"  # pulse count: "stochastic" (unbiased) or "nearest" (NeuroSim)

    def __post_init__(self) -> None:
        p = f"hardware.{self.name}."
        check(isinstance(self.enabled, bool), p + "enabled", "true or false", self.enabled)
        check(isinstance(self.p_max, (int, np.integer)) and self.p_max >= 1, p + "p_max",
              "an integer >= 1", self.p_max)
        check(0 < self.A_ltp < np.inf, p + "A_ltp", "> 0 and finite (pulses)", self.A_ltp)
        check(0 < self.A_ltd < np.inf, p + "A_ltd", "> 0 and finite (pulses)", self.A_ltd)
        check(self.ctoc_std_pulses >= 0, p + "ctoc_std_pulses", ">= 0", self.ctoc_std_pulses)
        check(self.gmin_uS >= 0, p + "gmin_uS", ">= 0", self.gmin_uS)
        check(self.gmax_uS == 0 or self.gmax_uS > self.gmin_uS, p + "gmax_uS",
              f"0 (the crossbar's gmax) or > gmin_uS = {self.gmin_uS}", self.gmax_uS)
        check(self.rounding in ROUNDINGS, p + "rounding", "'stochastic' or 'nearest'", self.rounding)

    def _gmax(self, gmax_uS):
        return self.gmax_uS if self.gmax_uS > 0 else gmax_uS

    def update(self, g_uS, dg_uS, gmax_uS, state, rng):
        if not self.enabled:
            return super().update(g_uS, dg_uS, gmax_uS, state, rng)
        g = np.asarray(g_uS)
        gmax = np.asarray(self._gmax(gmax_uS), F32)
        u = Stream(seed_key(rng)) if self.rounding == "stochastic" else np.full(1, NEAREST_U, F32)
        xi = Stream(seed_key(rng)) if self.ctoc_std_pulses > 0 else np.zeros(1, F32)
        return nonlinear_update(g, dg_uS, self.gmin_uS, gmax if gmax.size == 1 else
                                np.broadcast_to(gmax, g.shape), self.p_max, self.A_ltp, self.A_ltd,
                                self.ctoc_std_pulses, u, xi)

    def moments(self, stage, g_uS, gmax_uS, t_s=0.0, dg_uS=None):
        """update: with x = |dg| / step and n = n0 + Bernoulli(p) (pulse_count_law), the mixture
        over n of clip(N(g_n, (ctoc_std_pulses step)^2 n), gmin, gmax), where g_n = g for n = 0
        (clipped) and otherwise gmin + span r(clip(curve^-1(g) +- n, 0, Pmax)).  Exact.
        Other stages: the identity."""
        if not self.enabled or stage != "update":
            return super().moments(stage, g_uS, gmax_uS, t_s, dg_uS)
        g = np.asarray(g_uS, F32).astype(np.float64)
        dg = np.zeros_like(g) if dg_uS is None else np.asarray(dg_uS, F32).astype(np.float64)
        lo = float(F32(self.gmin_uS))
        hi = np.broadcast_to(np.asarray(self._gmax(gmax_uS), F32).astype(np.float64), g.shape)
        span = hi - lo
        step = span / self.p_max
        n0, p = pulse_count_law(np.abs(dg) / np.where(span > 0, step, 1.0), self.rounding)
        r = np.clip((g - lo) / np.where(span > 0, span, 1.0), 0.0, 1.0)
        laws = []
        for w, n in ((1 - p, n0), (p, n0 + 1)):
            mu = np.clip(g, lo, hi)
            for up, a in ((True, self.A_ltp), (False, self.A_ltd)):
                sel = (dg > 0 if up else dg < 0) & (n > 0) & (span > 0)
                pos = np.clip(curve_position(r, a, self.p_max, up) + (n if up else -n), 0, self.p_max)
                mu = np.where(sel, lo + span * curve_fraction(pos, a, self.p_max, up), mu)
            sd = np.where((dg != 0) & (span > 0), self.ctoc_std_pulses * step * np.sqrt(n), 0.0)
            laws.append((w, mu, sd, lo, hi))
        return mixture_moments(laws)

    @classmethod
    def example(cls) -> "PulsedNonlinear":
        """NeuroSim's Ag:a-Si device with its cycle-to-cycle variation (the defaults)."""
        return cls()

    @classmethod
    def zero(cls) -> "PulsedNonlinear":
        return cls(enabled=False)
