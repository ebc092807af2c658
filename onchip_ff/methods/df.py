"""Distance-Forward (objective.method = "df"; Wu et al., "Distance-Forward Learning", arXiv
2408.14925): its [objective] keys, its learner (layer-local or block-local DF-O, optional DF-R)
and its registration.

Schedule per batch: for each block, forward -> loss at the block output -> backward -> optimizer
step, then the detached normalized output feeds the next block.  Only one block's autograd graph
is alive at any time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

from common.coerce import check, choice
from common.errors import ConfigError
from onchip_ff.network import (build_layers, init_parameters, make_blocks, make_optimizer,
                               next_input, normalize)
from onchip_ff.methods.local_update import ScoringLearner, local_update, step_summary
from onchip_ff.methods.registry import Method, register
from onchip_ff.objectives.distance_forward import Centroids, npair_margin_loss

if TYPE_CHECKING:
    from onchip_ff.config import Config


@dataclass(frozen=True)
class DFObjective:
    """[objective] keys of Distance-Forward."""

    method: ClassVar[str] = "df"
    scale: float = 16.0  # s: scale of the N-pair margin loss (typical 10..30)
    margin: float = 0.2  # m: margin of the N-pair margin loss (typical 0.1..0.4)
    centroids: str = "learnable"  # "learnable" (trained by the loss) or "ema" (class means)
    ema_momentum: float = 0.9  # centroids = "ema": c <- mom*c + (1-mom)*batch class mean
    centroid_lr_scale: float = 1.0  # centroids = "learnable": their learning rate is train.lr times this
    block_size: int = 1  # DF-O: layers per block, loss at each block output (1 = local DF)
    accumulate_goodness: bool = False  # DF-R: layer l's loss uses sum_{j<=l} g_j, earlier terms detached
    next_input_scale: str = "sqrt_d"  # next layer gets h/|h| times sqrt(d) ("sqrt_d") or 1 ("unit")
    eval_layers: tuple[int, ...] = ()  # loss heads (block outputs) summed at inference; () = all

    def __post_init__(self) -> None:
        check(self.scale > 0, "objective.scale", "> 0 (typical 10..30)", self.scale)
        check(self.margin >= 0, "objective.margin", ">= 0 (typical 0.1..0.4)", self.margin)
        choice("objective.centroids", self.centroids, ("learnable", "ema"))
        check(0 <= self.ema_momentum < 1, "objective.ema_momentum", "in [0, 1)", self.ema_momentum)
        check(self.centroid_lr_scale > 0, "objective.centroid_lr_scale", "> 0", self.centroid_lr_scale)
        check(self.block_size >= 1, "objective.block_size", ">= 1", self.block_size)
        choice("objective.next_input_scale", self.next_input_scale, ("sqrt_d", "unit"))
        check(all(i >= 0 for i in self.eval_layers), "objective.eval_layers",
              "a list of head indices >= 0", list(self.eval_layers))


class DistanceForward(ScoringLearner):
    def __init__(self, cfg: Config, input_shape: tuple[int, ...], n_classes: int,
                 generator: torch.Generator) -> None:
        super().__init__()
        obj = cfg.objective
        layers, self.shapes = build_layers(cfg.model, input_shape)
        self.layers = nn.ModuleList(layers)
        init_parameters(self.layers, generator, cfg.model.init)
        self.blocks = make_blocks(len(layers), obj.block_size)
        self.heads = nn.ModuleList(
            Centroids(int(torch.Size(self.shapes[b[-1]]).numel()), n_classes, obj.centroids,
                      obj.ema_momentum, generator) for b in self.blocks)
        bad = [i for i in obj.eval_layers if i >= len(self.blocks)]
        if bad:
            raise ConfigError(f"objective.eval_layers {list(obj.eval_layers)}: there are only "
                              f"{len(self.blocks)} loss heads (indices 0..{len(self.blocks) - 1})")
        self.eval_heads = list(obj.eval_layers) or list(range(len(self.blocks)))
        self.obj = obj
        self.optimizers = []
        for k, b in enumerate(self.blocks):
            groups = [{"params": [p for i in b for p in self.layers[i].parameters()]}]
            if obj.centroids == "learnable":
                groups.append({"params": list(self.heads[k].parameters()),
                               "lr": cfg.train.lr * obj.centroid_lr_scale})
            self.optimizers.append(make_optimizer(groups, cfg.train))

    def block_forward(self, k: int, x: torch.Tensor) -> torch.Tensor:
        """Normalized features (N, D) at the output of block k; gradients flow inside the block."""
        block = self.blocks[k]
        for pos, i in enumerate(block):
            h_hat = normalize(self.layers[i](x))
            if pos + 1 < len(block):
                x = next_input(h_hat, self.shapes[i], self.obj.next_input_scale)
        return h_hat

    def to_next_block(self, k: int, h_hat: torch.Tensor) -> torch.Tensor:
        return next_input(h_hat.detach(), self.shapes[self.blocks[k][-1]], self.obj.next_input_scale)

    def train_block(self, k: int, x: torch.Tensor, y: torch.Tensor,
                    earlier_goodness: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, float]:
        """One local update of block k; returns (next input, detached goodness, loss)."""
        h_hat = self.block_forward(k, x.detach())
        goodness = self.heads[k].goodness(h_hat)
        if self.obj.accumulate_goodness and earlier_goodness is not None:
            goodness = goodness + earlier_goodness  # DF-R: earlier terms arrive detached
        loss = npair_margin_loss(goodness, y, self.obj.scale, self.obj.margin)
        loss_value = local_update(self.optimizers[k], loss)
        if self.obj.centroids == "ema":
            self.heads[k].ema_update(h_hat.detach(), y)
        return self.to_next_block(k, h_hat), goodness.detach(), loss_value

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        goodness = None
        losses = []
        for k in range(len(self.blocks)):
            x, goodness, loss = self.train_block(k, x, y, goodness)
            losses.append(loss)
        return step_summary(losses)

    @torch.no_grad()
    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """argmax over classes of sum_{heads in eval set} g(x, k): one forward pass."""
        total = 0.0
        for k in range(len(self.blocks)):
            h_hat = self.block_forward(k, x)
            if k in self.eval_heads:
                total = total + self.heads[k].goodness(h_hat)
            x = self.to_next_block(k, h_hat)
        return total


register(Method("df", DFObjective, DistanceForward))
