"""Distance-Forward learner (float reference): layer-local or block-local (DF-O), optional DF-R.

Schedule per batch: for each block, forward -> loss at the block output -> backward -> optimizer
step, then the detached normalized output feeds the next block.  Only one block's autograd graph
is alive at any time.
"""

from __future__ import annotations

import torch
from torch import nn

from onchip_ff.config import Config
from common.errors import ConfigError
from onchip_ff.network import (build_layers, init_parameters, make_blocks, make_optimizer,
                               next_input, normalize)
from onchip_ff.objectives.distance_forward import Centroids, npair_margin_loss


class DistanceForward(nn.Module):
    def __init__(self, cfg: Config, input_shape: tuple[int, ...], n_classes: int,
                 generator: torch.Generator) -> None:
        super().__init__()
        obj = cfg.objective
        layers, self.shapes = build_layers(cfg.model, input_shape)
        self.layers = nn.ModuleList(layers)
        init_parameters(self.layers, generator)
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
        opt = self.optimizers[k]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if self.obj.centroids == "ema":
            self.heads[k].ema_update(h_hat.detach(), y)
        return self.to_next_block(k, h_hat), goodness.detach(), loss.item()

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        goodness = None
        losses = []
        for k in range(len(self.blocks)):
            x, goodness, loss = self.train_block(k, x, y, goodness)
            losses.append(loss)
        return {"loss": sum(losses) / len(losses), **{f"loss_{k}": v for k, v in enumerate(losses)}}

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
