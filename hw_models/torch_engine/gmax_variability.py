"""The "gmax_variability" noise model's program stage in torch, the rule of
hw_models/noise/gmax_variability.py: per device f = max(1 + sigma_rel xi, 0), g = g_target f and
state "gmax_uS" = gmax f; a re-written device keeps its gmax (state of the earlier write)."""

from __future__ import annotations

import torch

from hw_models.noise.gmax_variability import GMAX_KEY, GmaxVariability


def program(model: GmaxVariability, target: torch.Tensor, gmax_uS: float, gen: torch.Generator,
            old=None) -> tuple[torch.Tensor, dict]:
    """(target times the device's gain f, {gmax per device})."""
    if model.sigma_rel == 0:
        return target.clone(), {}
    gm = float(gmax_uS)
    if old is not None and GMAX_KEY in old:
        gmax_i = old[GMAX_KEY]
        return target * (gmax_i / gm), {GMAX_KEY: gmax_i}
    f = torch.clamp(1.0 + model.sigma_rel * torch.randn(target.shape, generator=gen, device=target.device), min=0.0)
    return target * f, {GMAX_KEY: gm * f}
