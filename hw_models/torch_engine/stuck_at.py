"""The "stuck_at" noise model's stages in torch, the rules of hw_models/noise/stuck_at.py: at a
first programming each device is stuck low (u < p_low), high (u < p_low + p_high) or free, one
uniform per device; a re-write keeps the device's fault (state of the earlier write); enforce
sets stuck-low devices to 0 and stuck-high ones to their gmax after every write and read-out."""

from __future__ import annotations

import torch

from hw_models.noise.stuck_at import GMAX_KEY, HIGH, LOW, STUCK_KEY, StuckAt


def program(model: StuckAt, target: torch.Tensor, gmax_uS: float, gen: torch.Generator,
            old=None) -> tuple[torch.Tensor, dict]:
    """(enforce(target), {stuck flags int8, gmax per device if p_stuck_high > 0})."""
    if model.p_stuck_low == 0 and model.p_stuck_high == 0:
        return target.clone(), {}
    if old is not None and STUCK_KEY in old:
        stuck = old[STUCK_KEY]
    else:
        u = torch.rand(target.shape, generator=gen, device=target.device)
        stuck = torch.zeros(target.shape, dtype=torch.int8, device=target.device)
        stuck[u < model.p_stuck_low + model.p_stuck_high] = HIGH
        stuck[u < model.p_stuck_low] = LOW
    state = {STUCK_KEY: stuck}
    if model.p_stuck_high > 0:
        state[GMAX_KEY] = torch.full_like(target, float(gmax_uS))
    return enforce(model, target, state), state


def enforce(model: StuckAt, g: torch.Tensor, state: dict) -> torch.Tensor:
    """Stuck devices back at their fault's conductance (a new tensor; g itself is left alone)."""
    stuck = state.get(STUCK_KEY)
    if stuck is None:
        return g
    g = torch.where(stuck == LOW, torch.zeros_like(g), g)
    if GMAX_KEY in state:
        g = torch.where(stuck == HIGH, state[GMAX_KEY], g)
    return g
