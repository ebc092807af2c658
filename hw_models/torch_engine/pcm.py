"""The "pcm" noise model's stages in torch (float32), the formulas of hw_models/noise/pcm.py
(aihwkit PCMLikeNoiseModel) and of its program kernel (hw_models/kernels/pcm.py program_one):

  nu    = |mu(g) + sigma(g) xi| drift_scale, g = max(|G_target| / gmax, 1e-7)    (law "aihwkit")
          max(nu_mean + nu_std xi, 0) drift_scale                                 (law "constant")
  G     = max(G_target + sigma_prog(G_target) xi', 0)                             (programming)
  q     = min(coeff / max((|G| / gmax)^exponent, 1e-3), q_max), 0^e -> the floor  (1/f amplitude)
  G(t)  = G e^(-L nu), L = ln((t + t0) / t0)                                      (drift)
  sigma = |G(t)| f(t) q,  f(t) = scale sqrt(ln((t + t0 + t_read) / (2 t_read)))  (read noise)

Stages as hw_models/torch_engine/devices.py calls them (the NoiseModel contract of
hw_models/noise/base.py, on tensors); the model keeps nothing across writes, so `old` is unused.
"""

from __future__ import annotations

import torch

from hw_models.kernels.pcm import (G_REL_FLOOR, MU_MAX, MU_MIN, MU_OFFSET, MU_SLOPE, NU_AIHWKIT, NU_CONSTANT,
                                   NU_NONE, SD_MAX, SD_MIN, SD_OFFSET, SD_SLOPE)
from hw_models.noise.pcm import G_POW_FLOOR, NU_KEY, PCM, Q_KEY


def program(model: PCM, target: torch.Tensor, gmax_uS: float, gen: torch.Generator,
            old=None) -> tuple[torch.Tensor, dict]:
    """(programmed conductances, {nu, q} per device) of float32 targets (uS)."""
    law = model._nu_law
    state = {}
    gm = float(gmax_uS)
    if law != NU_NONE:
        xi = torch.randn(target.shape, generator=gen, device=target.device)
        if law == NU_AIHWKIT:
            log_g = torch.log(torch.clamp(target.abs() / gm, min=G_REL_FLOOR))
            mu = torch.clamp(MU_SLOPE * log_g + MU_OFFSET, MU_MIN, MU_MAX)
            sd = torch.clamp(SD_SLOPE * log_g + SD_OFFSET, SD_MIN, SD_MAX)
            state[NU_KEY] = (mu + sd * xi).abs() * model.drift_scale
        else:
            assert law == NU_CONSTANT
            state[NU_KEY] = torch.clamp(model.drift_nu_mean + model.drift_nu_std * xi, min=0.0) * model.drift_scale
    g = target
    if model.prog_noise_scale > 0:
        x = target / gm
        poly = torch.full_like(x, model.prog_coeff_uS[-1])
        for c in model.prog_coeff_uS[-2::-1]:  # Horner
            poly = poly * x + c
        sigma = torch.clamp(poly, min=0.0) * (model.prog_noise_scale * gm / model.prog_coeff_gmax_ref_uS)
        g = torch.clamp(target + sigma * torch.randn(target.shape, generator=gen, device=target.device), min=0.0)
    else:
        g = target.clone()
    if model.read_noise_scale > 0:
        gn = g.abs() / gm
        power = torch.where(gn > 0, gn.pow(model.read_1f_exponent), torch.zeros_like(gn))
        if model.read_1f_exponent == 0:
            power = torch.ones_like(gn)
        state[Q_KEY] = torch.clamp(model.read_1f_coeff / torch.clamp(power, min=G_POW_FLOOR), max=model.read_1f_max)
    return g, state


def drift(model: PCM, g_prog: torch.Tensor, state: dict, t_s: float) -> torch.Tensor:
    """G(t) = G e^(-L nu) (the programmed conductances themselves at L = 0 or without nu)."""
    log_ratio = model._log_ratio(t_s)
    if log_ratio == 0 or NU_KEY not in state:
        return g_prog
    return g_prog * torch.exp(state[NU_KEY] * -log_ratio)


def read_sigma(model: PCM, g: torch.Tensor, state: dict, t_s: float) -> torch.Tensor | None:
    """Std (uS) of one read, |G(t)| f(t) q (None when f(t) = 0)."""
    factor = model._time_factor(t_s)
    if factor == 0:
        return None
    return g.abs() * factor * state[Q_KEY]
