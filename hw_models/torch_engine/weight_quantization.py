"""The "weight_quantization" noise model's program stage in torch, the rule of
hw_models/noise/weight_quantization.py: k = rint(clip(g_target / gmax, 0, 1) (levels - 1)),
g = k gmax / (levels - 1), in float64 rounded once to float32 (so equal to the numpy model's)."""

from __future__ import annotations

import torch

from hw_models.noise.weight_quantization import WeightQuantization


def program(model: WeightQuantization, target: torch.Tensor, gmax_uS: float, gen: torch.Generator,
            old=None) -> tuple[torch.Tensor, dict]:
    """(the nearest of the model's levels to each target, {})."""
    if model.levels == 0:
        return target.clone(), {}
    gm, steps = float(gmax_uS), model.levels - 1
    k = torch.round(torch.clamp(target.double() / gm, 0.0, 1.0) * steps)
    return (k * gm / steps).float(), {}
