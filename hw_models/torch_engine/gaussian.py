"""The two Gaussian noise models' stages in torch (float32), the formulas of
hw_models/noise/gaussian_weight.py and gaussian_read.py (std = sqrt((sigma_add_rel gmax)^2 +
(sigma_mul_rel |g|)^2)):

  "gaussian_weight" program:  G = G_target + std(G_target) xi  (one normal per device, no clipping)
  "gaussian_read"   program:  G = G_target; gmax kept per device (state "gaussian_read.gmax_uS")
                    read:     std(G) per read (the chain draws the summed output noise)
"""

from __future__ import annotations

import torch

from hw_models.noise.gaussian_base import AddMulGaussian
from hw_models.noise.gaussian_read import GMAX_KEY, GaussianRead
from hw_models.noise.gaussian_weight import GaussianWeight


def _std(model: AddMulGaussian, g: torch.Tensor, gmax) -> torch.Tensor:
    add = model.sigma_add_rel * gmax
    mul = model.sigma_mul_rel * g.abs()
    return torch.sqrt(add * add + mul * mul)


def program_weight(model: GaussianWeight, target: torch.Tensor, gmax_uS: float, gen: torch.Generator,
                   old=None) -> tuple[torch.Tensor, dict]:
    """Programming error: G_target + std(G_target) xi."""
    if model.silent:
        return target.clone(), {}
    xi = torch.randn(target.shape, generator=gen, device=target.device)
    return target + _std(model, target, float(gmax_uS)) * xi, {}


def program_read(model: GaussianRead, target: torch.Tensor, gmax_uS: float, gen: torch.Generator,
                 old=None) -> tuple[torch.Tensor, dict]:
    """No change to the conductances; gmax per device for the additive part of later reads."""
    if model.sigma_add_rel == 0:
        return target.clone(), {}
    return target.clone(), {GMAX_KEY: torch.full_like(target, float(gmax_uS))}


def read_sigma(model: GaussianRead, g: torch.Tensor, state: dict, t_s: float) -> torch.Tensor | None:
    """Std (uS) of one read of conductances g (None when the model is silent)."""
    if model.silent:
        return None
    gmax = state[GMAX_KEY] if GMAX_KEY in state else 0.0
    return _std(model, g, gmax)
