"""Scalable Forward-Forward (objective.method = "sff"): per-block auxiliary class heads, per-class
goodness, log-sum-exp margin loss, backprop inside a block only (Krutsylo 2025; see
onchip_ff/objectives/sff.py for the source and which parts are our reading): its [objective]
keys, its learner and its registration.

Blocks = the entries of self.layers: a residual block (model.arch = "resnet"), a conv layer
("cnn") or a dense layer ("mlp").  Each block k has a head: a 1x1 convolution with one output
channel per class on the block output (dense: a Linear to n_classes), and its own optimizer over
block + head.  Schedule per batch: block 0 gets the (already standardized) input; for each block,
forward on the detached input (through its layers, residual shortcut included) -> head ->
goodness -> margin loss -> backward -> the block's optimizer step; the block output, detached and
layer-normalized per sample over (C, H, W) (or (D,)), feeds the next block.  No gradient crosses
a block boundary and only one block's autograd graph is alive at a time.  Inference: argmax over
classes of the goodness summed over `objective.eval_layers` (block indices; () = all).
The per-block methods have DeeperForward's names (layer_forward, train_layer, to_next_layer,
prepare_input): "layer" k means block k.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

from common.coerce import check
from onchip_ff.network import build_layers, checked_eval_layers, init_parameters, make_optimizer
from onchip_ff.objectives.deeperforward import feature_norm
from onchip_ff.objectives.sff import class_goodness, margin_loss
from onchip_ff.methods.layer_local import LayerLocalLearner
from onchip_ff.methods.registry import Method, register

if TYPE_CHECKING:
    from onchip_ff.config import Config


@dataclass(frozen=True)
class SFFObjective:
    """[objective] keys of Scalable FF."""

    method: ClassVar[str] = "sff"
    margin: float = 0.2  # m of the log-sum-exp margin loss
    eval_layers: tuple[int, ...] = ()  # blocks whose goodness is summed at inference; () = all

    def __post_init__(self) -> None:
        check(self.margin >= 0, "objective.margin", ">= 0", self.margin)
        check(all(i >= 0 for i in self.eval_layers), "objective.eval_layers",
              "a list of block indices >= 0", list(self.eval_layers))


def make_head(shape: tuple[int, ...], n_classes: int) -> nn.Module:
    """Auxiliary head on a block output of `shape` (without batch): 1x1 conv (C, H, W) -> (K, H, W),
    or Linear D -> K for dense outputs."""
    if len(shape) == 3:
        return nn.Conv2d(shape[0], n_classes, kernel_size=1)
    return nn.Linear(math.prod(shape), n_classes)


class ScalableForwardForward(LayerLocalLearner):
    def __init__(self, cfg: Config, input_shape: tuple[int, ...], n_classes: int,
                 generator: torch.Generator) -> None:
        super().__init__()
        layers, self.shapes = build_layers(cfg.model, input_shape)
        self.layers = nn.ModuleList(layers)
        self.heads = nn.ModuleList(make_head(s, n_classes) for s in self.shapes)
        init_parameters(self.layers, generator, cfg.model.init)
        init_parameters(self.heads, generator)
        self.obj = cfg.objective
        self.n_classes = n_classes
        self.eval_layers = checked_eval_layers(self.obj.eval_layers, len(layers), "blocks")
        self.optimizers = [make_optimizer(list(layer.parameters()) + list(head.parameters()), cfg.train)
                           for layer, head in zip(self.layers, self.heads)]

    def layer_forward(self, k: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(block output h, class goodness (N, n_classes)) of block k; gradients flow into block k
        and head k."""
        h = self.layers[k](x)
        return h, class_goodness(self.heads[k](h))

    def to_next_layer(self, h: torch.Tensor, k: int) -> torch.Tensor:
        return feature_norm(h.detach())

    def layer_loss(self, goodness: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return margin_loss(goodness, y, self.obj.margin)

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        """Input of block 0: the sample as given (already standardized by the data loader)."""
        return x


register(Method("sff", SFFObjective, ScalableForwardForward, pipeline=True))
