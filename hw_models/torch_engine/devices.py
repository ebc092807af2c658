"""The devices of a torch-engine array: the noise chain's stages in the order of the numba engine
(hw_models/tiles/analog.py _write_devices, hw_models/tiles/readout.py read_out) with each model's
torch twin (pcm.py, gaussian.py, stuck_at.py, gmax_variability.py, weight_quantization.py,
pulsed_nonlinear.py, pulsed_constant.py: every model), and which models have one (STAGES).

  program:  every model's program stage in chain order (a re-written device passes the state of
            its earlier write as `old`: permanent faults stay), then every model's enforce
  update:   the chain's first model with an update stage moves the devices (symmetric pairs)
  read_out: every model's drift, every enforce, then the read noise: frozen noise drawn now and
            kept as max(g + sigma xi, 0), per-read noise returned as its variance
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch

from hw_models.tiles.readout import Subset
from hw_models.tiles.update import update_model
from hw_models.torch_engine import (gaussian, gmax_variability, pcm, pulsed_constant, pulsed_nonlinear, stuck_at,
                                    weight_quantization)


def _same(model, g, *args):
    return g


def _none(model, g, *args):
    return None


def _identity_program(model, target, gmax_uS, gen, old=None):
    return target.clone(), {}


class Stages(NamedTuple):
    """A noise model's stages on tensors: program(model, target, gmax, gen, old) -> (g, state),
    drift(model, g, state, t_s), enforce(model, g, state), read_sigma(model, g, state, t_s) -> std
    or None, update(model, g, dg, gmax, state, gen) -> g (None: the model has no update stage)."""

    program: object = _identity_program
    drift: object = _same
    enforce: object = _same
    read_sigma: object = _none
    update: object = None


STAGES = {
    "pcm": Stages(pcm.program, drift=pcm.drift, read_sigma=pcm.read_sigma),
    "gaussian_weight": Stages(gaussian.program_weight),
    "gaussian_read": Stages(gaussian.program_read, read_sigma=gaussian.read_sigma),
    "stuck_at": Stages(stuck_at.program, enforce=stuck_at.enforce),
    "gmax_variability": Stages(gmax_variability.program),
    "weight_quantization": Stages(weight_quantization.program),
    "pulsed_nonlinear": Stages(update=pulsed_nonlinear.update),
    "pulsed_constant": Stages(pulsed_constant.program, update=pulsed_constant.update),
}


def old_state(tensors: dict[str, torch.Tensor], mask: torch.Tensor) -> Subset:
    """The per-device state tensors at the devices selected by a boolean mask, gathered on first
    access (hw_models/tiles/readout.py Subset): the `old` state of a re-write."""
    return Subset(tensors, mask, take=lambda t, m: t[m])


def program(noise, target: torch.Tensor, gmax_uS: float, gen: torch.Generator,
            old: Mapping | None = None) -> tuple[torch.Tensor, dict]:
    """(programmed conductances, per-device state) of float32 targets (uS) through the chain."""
    g, state = target, {}
    for model in noise:
        g, new = STAGES[model.name].program(model, g, gmax_uS, gen, old)
        state.update(new)
    return (enforce(noise, g, state) if noise else target.clone()), state


def enforce(noise, g: torch.Tensor, state: dict) -> torch.Tensor:
    """Every model's hard faults re-imposed on conductances g (after a write or drift)."""
    for model in noise:
        g = STAGES[model.name].enforce(model, g, state)
    return g


def update(device, g: torch.Tensor, dg: torch.Tensor, state: dict, gen: torch.Generator) -> torch.Tensor:
    """Conductances after requested changes dg (uS) through the device's update model
    (hw_models/tiles/update.py update_model), or exactly, clipped to [0, gmax], when it has none or
    it is switched off (the base NoiseModel.update)."""
    model = update_model(device)
    if model is None or not model.enabled:
        return torch.clamp(g + dg, 0.0, float(device.gmax_uS))
    return STAGES[model.name].update(model, g, dg, device.gmax_uS, state, gen)


def read_out(noise, g: torch.Tensor, state: dict, t_s: float,
             gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(conductances at t_s, per-read variance uS^2 or None) of devices programmed to g."""
    for model in noise:
        g = STAGES[model.name].drift(model, g, state, t_s)
    g = enforce(noise, g, state)
    var = None
    for model in noise:
        sigma = STAGES[model.name].read_sigma(model, g, state, t_s)
        if sigma is None:
            continue
        if model.frozen_read:
            g = torch.clamp(g + sigma * torch.randn(g.shape, generator=gen, device=g.device), min=0.0)
        else:
            var = sigma * sigma if var is None else var + sigma * sigma
    return g, var
