"""PyTorch float reference of every learning rule; `build_learner` picks one by objective.method."""

from __future__ import annotations

import torch

from onchip_ff.config import Config
from onchip_ff.reference.backprop import Backprop
from onchip_ff.reference.deeperforward import DeeperForward
from onchip_ff.reference.distance_forward import DistanceForward
from onchip_ff.reference.forward_forward import ForwardForward
from onchip_ff.reference.intff import IntegratedForwardForward
from onchip_ff.reference.sff import ScalableForwardForward

LEARNERS = {"df": DistanceForward, "ff": ForwardForward, "bp": Backprop, "deeperforward": DeeperForward,
            "intff": IntegratedForwardForward, "sff": ScalableForwardForward}


def build_learner(cfg: Config, input_shape: tuple[int, ...], n_classes: int,
                  generator: torch.Generator):
    """A learner with train_step(x, y) -> metrics and scores(x) -> (N, n_classes).  With
    hardware.backend = "sim" every matrix product runs on simulated tiles (hw_models)."""
    learner = LEARNERS[cfg.objective.method](cfg, input_shape, n_classes, generator)
    if cfg.hardware.backend == "sim":
        from hw_models.torch_layers import attach_simulator
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        learner.analog_modules = attach_simulator(learner, cfg.hardware.device, seed)
    return learner
