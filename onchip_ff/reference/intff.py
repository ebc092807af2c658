"""Integrated Forward-Forward learner (float reference): FF between blocks, backprop inside a block
(Tang 2023; see onchip_ff/objectives/intff.py).

The hidden layers of the MLP are grouped into blocks by `objective.intff_blocks` (layers per
block; () = one layer per block, which is plain FF with shuffled-label negatives).  Schedule per
batch: positives carry the true label, negatives a shuffled one (objective.negatives = "hard":
the hardest wrong label); for each block, forward through its layers (plain ReLU layers, no
normalization inside) -> goodness of its last layer -> softplus loss -> backward through the
block only -> the block's own optimizer step; the detached, length-normalized output (times
sqrt(D) or 1, objective.next_input_scale) feeds the next block.  Only one block's autograd graph
is alive at a time.  Inference tries every label and sums the goodness of the blocks in
objective.eval_layers (block indices; () = all).
"""

from __future__ import annotations


import torch
from torch import nn

from onchip_ff.config import Config
from onchip_ff.errors import ConfigError
from onchip_ff.negatives import hardest_wrong_labels
from onchip_ff.network import build_layers, checked_eval_layers, init_parameters, make_optimizer, next_input, normalize
from onchip_ff.objectives.forward_forward import check_label_fits, embed_label
from onchip_ff.objectives.intff import block_goodness, block_loss, shuffled_wrong_labels


def group_blocks(sizes: tuple[int, ...], n_layers: int) -> list[list[int]]:
    """Layer indices of each block from objective.intff_blocks (layers per block; () = 1 each)."""
    sizes = tuple(sizes) or (1,) * n_layers
    if sum(sizes) != n_layers:
        raise ConfigError(f"objective.intff_blocks = {list(sizes)} groups {sum(sizes)} layers, but "
                          f"model.hidden has {n_layers}; the entries must sum to {n_layers} "
                          f"(e.g. {[1] * n_layers}, or [] for one layer per block)")
    starts = [sum(sizes[:k]) for k in range(len(sizes))]
    return [list(range(s, s + n)) for s, n in zip(starts, sizes)]


class IntegratedForwardForward(nn.Module):
    def __init__(self, cfg: Config, input_shape: tuple[int, ...], n_classes: int,
                 generator: torch.Generator) -> None:
        super().__init__()
        if cfg.model.arch != "mlp":
            raise ConfigError(f"objective.method = 'intff' is implemented for model.arch = 'mlp' only, "
                              f"got {cfg.model.arch!r}")
        check_label_fits("intff", input_shape, n_classes)
        layers, self.shapes = build_layers(cfg.model, input_shape)
        self.layers = nn.ModuleList(layers)
        init_parameters(self.layers, generator)
        self.obj = cfg.objective
        self.n_classes = n_classes
        self.generator = generator
        self.blocks = group_blocks(self.obj.intff_blocks, len(layers))
        self.eval_blocks = checked_eval_layers(self.obj.eval_layers, len(self.blocks), "blocks")
        self.optimizers = [make_optimizer([p for i in b for p in self.layers[i].parameters()], cfg.train)
                           for b in self.blocks]

    def embed(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return embed_label(x, labels, self.n_classes, self.obj.label_scale)

    def negatives(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.obj.negatives == "hard":
            return hardest_wrong_labels(self.scores(x), y)
        return shuffled_wrong_labels(y, self.n_classes, self.generator)

    def block_forward(self, k: int, x: torch.Tensor) -> torch.Tensor:
        """Output (N, D) of block k's last layer; gradients flow through all of the block's layers."""
        for i in self.blocks[k]:
            x = self.layers[i](x)
        return x

    def to_next_block(self, k: int, out: torch.Tensor) -> torch.Tensor:
        return next_input(normalize(out.detach()), self.shapes[self.blocks[k][-1]],
                          self.obj.next_input_scale)

    def train_block(self, k: int, h: torch.Tensor, n_pos: int) -> tuple[torch.Tensor, float]:
        """One local update of block k on [positives; negatives]; returns (next input, loss)."""
        out = self.block_forward(k, h.detach())
        loss = block_loss(out, n_pos, self.obj.threshold)
        opt = self.optimizers[k]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return self.to_next_block(k, out), loss.item()

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        h = torch.cat([self.embed(x, y), self.embed(x, self.negatives(x, y))])
        losses = []
        for k in range(len(self.blocks)):
            h, loss = self.train_block(k, h, len(y))
            losses.append(loss)
        return {"loss": sum(losses) / len(losses), **{f"loss_{k}": v for k, v in enumerate(losses)}}

    @torch.no_grad()
    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C): goodness summed over the eval blocks with label k written into the input."""
        cols = []
        for label in range(self.n_classes):
            h = self.embed(x, torch.full((len(x),), label, dtype=torch.long, device=x.device))
            total = torch.zeros(len(x), device=x.device)
            for k in range(len(self.blocks)):
                out = self.block_forward(k, h)
                if k in self.eval_blocks:
                    total += block_goodness(out)
                h = self.to_next_block(k, out)
            cols.append(total)
        return torch.stack(cols, dim=1)
