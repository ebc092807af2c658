"""The "pulsed_constant" noise model's program and update stages in torch, the rules of
hw_models/noise/pulsed_constant.py and the arithmetic of hw_models/kernels/pulsed.py constant_move
(float64 inside), vectorized over devices; the pulse-count scheme only (update_scheme =
"pulse_train" runs on the numba engine: hw_models/torch_engine.unsupported):

  program: per device (only spreads > 0 drawn) step_up = dw_min |1 + dtod xi1 + up_down + ud_dtod xi2|,
           step_down = dw_min |1 + dtod xi1 - up_down - ud_dtod xi2|, gmax_i = max(gmin, gmax (1 +
           gmax_dtod xi3)); a re-written device keeps them
  update:  n = floor(|dg| / dw_min + u);  g' = clip(g + sign(dg) n step_dir + step_dir dw_min_std
           sqrt(n) xi, gmin, gmax_i);  dg = 0: clip(g)
"""

from __future__ import annotations

import torch

from hw_models.kernels.pulsed import NEAREST_U
from hw_models.noise.pulsed_constant import PulsedConstant


def program(model: PulsedConstant, target: torch.Tensor, gmax_uS: float, gen: torch.Generator,
            old=None) -> tuple[torch.Tensor, dict]:
    """(the targets as requested, {per-device steps and upper bound})."""
    if not model.enabled:
        return target.clone(), {}
    keys = model._keys
    if old is not None and any(k in old for k in keys):
        return target.clone(), {k: old[k] for k in keys if k in old}
    k_up, k_down, k_max = keys
    state = {}
    normal = lambda: torch.randn(target.shape, generator=gen, device=target.device)  # noqa: E731
    if model.dw_min_dtod > 0 or model.up_down_dtod > 0:
        gain = 1.0 + model.dw_min_dtod * normal()
        r = model.up_down_dtod * normal()
        state[k_up] = model.dw_min_uS * (gain + model.up_down + r).abs()
        state[k_down] = model.dw_min_uS * (gain - model.up_down - r).abs()
    if model.gmax_dtod > 0:
        hi = float(model._gmax(gmax_uS)) * (1.0 + model.gmax_dtod * normal())
        state[k_max] = torch.clamp(hi, min=model.gmin_uS)
    return target.clone(), state


def update(model: PulsedConstant, g: torch.Tensor, dg: torch.Tensor, gmax_uS: float, state: dict,
           gen: torch.Generator) -> torch.Tensor:
    """Conductances (float32) after the requested changes dg (uS) of devices at g (an enabled
    model: devices.update routes a switched-off one to the exact update)."""
    k_up, k_down, k_max = model._keys
    up, down = model._nominal_steps()
    f32 = lambda v: float(torch.tensor(v, dtype=torch.float32))  # noqa: E731  (the kernel's float32 inputs)
    step_up = state[k_up].double() if k_up in state else f32(up)
    step_down = state[k_down].double() if k_down in state else f32(down)
    hi = state[k_max].double() if k_max in state else torch.full_like(g, f32(model._gmax(gmax_uS))).double()
    lo = f32(model.gmin_uS)
    g64, dg64 = g.double(), dg.double()
    if model.rounding == "stochastic":
        u = torch.rand(g.shape, generator=gen, device=g.device).double()
    else:
        u = torch.full_like(g64, NEAREST_U)
    n = torch.floor(dg64.abs() / model.dw_min_uS + u)
    step = torch.where(dg64 > 0, step_up, step_down) * torch.ones_like(g64)
    moved = g64 + torch.sign(dg64) * n * step
    if model.dw_min_std > 0:
        xi = torch.randn(g.shape, generator=gen, device=g.device).double()
        moved = moved + step * model.dw_min_std * torch.sqrt(n) * xi
    moved = torch.where(dg64 != 0, moved, g64)
    return torch.minimum(torch.clamp(moved, min=lo), hi).float()
