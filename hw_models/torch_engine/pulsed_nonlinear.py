"""The "pulsed_nonlinear" noise model's update stage in torch, the arithmetic of
hw_models/kernels/pulsed.py nonlinear_move (NeuroSim's curve, hw_models/noise/pulsed_nonlinear.py)
in float64, vectorized over devices:

  n  = floor(|dg| / step + u), step = (gmax - gmin) / Pmax, u ~ U[0, 1) (or 0.5: "nearest")
  r  = clip((g - gmin) / span, 0, 1);  up: r' = min(E_n / e + r (1 + E_n), 1),
       down: 1 - r' of the mirrored curve from 1 - r, with e = expm1(-Pmax / A), E_n = expm1(-min(n, Pmax) / A)
  g' = clip(gmin + span r' + ctoc_std_pulses step sqrt(n) xi, gmin, gmax);  n = 0 or dg = 0: clip(g)
"""

from __future__ import annotations

import math

import torch

from hw_models.kernels.pulsed import NEAREST_U
from hw_models.noise.pulsed_nonlinear import PulsedNonlinear


def _curve_step(r: torch.Tensor, n: torch.Tensor, a: float, p_max: float) -> torch.Tensor:
    big_e = torch.expm1(-torch.clamp(n, max=p_max) / a)
    return torch.clamp(big_e / math.expm1(-p_max / a) + r * (1.0 + big_e), max=1.0)


def update(model: PulsedNonlinear, g: torch.Tensor, dg: torch.Tensor, gmax_uS: float, state: dict,
           gen: torch.Generator) -> torch.Tensor:
    """Conductances (float32) after the requested changes dg (uS) of devices at g (an enabled
    model: devices.update routes a switched-off one to the exact update)."""
    lo = float(torch.tensor(model.gmin_uS, dtype=torch.float32))
    hi = float(torch.tensor(model._gmax(gmax_uS), dtype=torch.float32))
    span = hi - lo
    g64, dg64 = g.double(), dg.double()
    if span <= 0:
        return torch.clamp(g64, lo, hi).float()
    step = span / model.p_max
    if model.rounding == "stochastic":
        u = torch.rand(g.shape, generator=gen, device=g.device).double()
    else:
        u = torch.full_like(g64, NEAREST_U)
    n = torch.where(dg64 != 0, torch.floor(dg64.abs() / step + u), torch.zeros_like(g64))
    r = torch.clamp((g64 - lo) / span, 0.0, 1.0)
    r_up = _curve_step(r, n, model.A_ltp, model.p_max)
    r_down = 1.0 - _curve_step(1.0 - r, n, model.A_ltd, model.p_max)
    moved = lo + span * torch.where(dg64 > 0, r_up, r_down)
    if model.ctoc_std_pulses > 0:
        xi = torch.randn(g.shape, generator=gen, device=g.device).double()
        moved = moved + model.ctoc_std_pulses * step * torch.sqrt(n) * xi
    return torch.clamp(torch.where(n > 0, moved, g64), lo, hi).float()
