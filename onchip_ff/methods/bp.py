"""Backpropagation baseline (objective.method = "bp"): the same layer stack plus a linear head,
end-to-end cross-entropy with one backward pass through all layers; no [objective] keys."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from onchip_ff.methods.local_update import local_update
from onchip_ff.methods.registry import Method, register
from onchip_ff.network import build_layers, init_parameters, make_optimizer

if TYPE_CHECKING:
    from onchip_ff.config import Config


@dataclass(frozen=True)
class BPObjective:
    """Backprop has no [objective] keys besides method."""

    method: ClassVar[str] = "bp"


class Backprop(nn.Module):
    def __init__(self, cfg: Config, input_shape: tuple[int, ...], n_classes: int,
                 generator: torch.Generator) -> None:
        super().__init__()
        layers, shapes = build_layers(cfg.model, input_shape)
        self.layers = nn.ModuleList(layers)
        self.head = nn.Linear(math.prod(shapes[-1]), n_classes)
        init_parameters(self, generator, cfg.model.init)
        self.optimizers = [make_optimizer(self.parameters(), cfg.train)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.head(x.flatten(1))

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        return {"loss": local_update(self.optimizers[0], F.cross_entropy(self(x), y))}

    @torch.no_grad()
    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)


register(Method("bp", BPObjective, Backprop))
