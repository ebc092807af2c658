"""Hinton Forward-Forward (objective.method = "ff"): its [objective] keys, its learner (the same
layer-local schedule) and its registration.

Positive data carries the true label in its first n_classes inputs, negative data a wrong one
(random or hardest).  Each layer: goodness = mean square of its activities, softplus loss around
threshold theta, own optimizer; the next layer gets the detached, length-normalized activities.
Inference tries every label and picks the one with the largest summed goodness.

The schedule runs over blocks of layers trained as one unit (backprop inside a block only); for FF
every layer is its own block.  Integrated FF (methods/intff.py) groups layers into larger blocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

from common.coerce import check, choice
from onchip_ff.methods.local_update import ScoringLearner, local_update, step_summary
from onchip_ff.methods.registry import Method, register
from onchip_ff.negatives import hardest_wrong_labels, random_wrong_labels
from onchip_ff.network import build_layers, checked_eval_layers, init_parameters, make_optimizer, next_input, normalize
from onchip_ff.objectives.forward_forward import check_label_fits, embed_label, ff_goodness, ff_loss

if TYPE_CHECKING:
    from onchip_ff.config import Config


@dataclass(frozen=True)
class FFObjective:
    """[objective] keys of Forward-Forward (and, with intff_blocks, Integrated FF)."""

    method: ClassVar[str] = "ff"
    threshold: float = 2.0  # theta: goodness threshold of the softplus loss
    negatives: str = "random"  # wrong label for negatives: "random" or "hard" (highest goodness)
    label_scale: float = 1.0  # value written into the one-hot label pixels
    next_input_scale: str = "sqrt_d"  # next layer gets h/|h| times sqrt(d) ("sqrt_d") or 1 ("unit")
    eval_layers: tuple[int, ...] = ()  # layers (IntFF: blocks) whose goodness is summed at inference; () = all

    def __post_init__(self) -> None:
        check(self.threshold > 0, "objective.threshold", "> 0", self.threshold)
        choice("objective.negatives", self.negatives, ("random", "hard"))
        check(self.label_scale > 0, "objective.label_scale", "> 0", self.label_scale)
        choice("objective.next_input_scale", self.next_input_scale, ("sqrt_d", "unit"))
        check(all(i >= 0 for i in self.eval_layers), "objective.eval_layers",
              "a list of indices >= 0", list(self.eval_layers))


class ForwardForward(ScoringLearner):
    method = "ff"
    unit = "layers"  # what objective.eval_layers indexes, for its error message

    def __init__(self, cfg: Config, input_shape: tuple[int, ...], n_classes: int,
                 generator: torch.Generator) -> None:
        super().__init__()
        check_label_fits(self.method, input_shape, n_classes)
        layers, self.shapes = build_layers(cfg.model, input_shape)
        self.layers = nn.ModuleList(layers)
        init_parameters(self.layers, generator, cfg.model.init)
        self.obj = cfg.objective
        self.n_classes = n_classes
        self.generator = generator
        self.blocks = self.group_layers(len(layers))
        self.eval_blocks = checked_eval_layers(self.obj.eval_layers, len(self.blocks), self.unit)
        self.optimizers = [make_optimizer([p for i in b for p in self.layers[i].parameters()], cfg.train)
                           for b in self.blocks]

    def group_layers(self, n_layers: int) -> list[list[int]]:
        """Layer indices of each block: one layer per block."""
        return [[i] for i in range(n_layers)]

    def wrong_labels(self, y: torch.Tensor) -> torch.Tensor:
        return random_wrong_labels(y, self.n_classes, self.generator)

    def embed(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return embed_label(x, labels, self.n_classes, self.obj.label_scale)

    def negatives(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.obj.negatives == "hard":
            return hardest_wrong_labels(self.scores(x), y)
        return self.wrong_labels(y)

    def block_forward(self, k: int, x: torch.Tensor) -> torch.Tensor:
        """Output of block k's last layer; gradients flow through all of the block's layers."""
        for i in self.blocks[k]:
            x = self.layers[i](x)
        return x

    def to_next_block(self, k: int, out: torch.Tensor) -> torch.Tensor:
        return next_input(normalize(out.detach()), self.shapes[self.blocks[k][-1]],
                          self.obj.next_input_scale)

    def train_block(self, k: int, h: torch.Tensor, n_pos: int) -> tuple[torch.Tensor, float]:
        """One local update of block k on [positives; negatives]; returns (next input, loss)."""
        out = self.block_forward(k, h.detach())
        g = ff_goodness(out)
        loss = ff_loss(g[:n_pos], g[n_pos:], self.obj.threshold)
        loss_value = local_update(self.optimizers[k], loss)
        return self.to_next_block(k, out), loss_value

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        h = torch.cat([self.embed(x, y), self.embed(x, self.negatives(x, y))])
        losses = []
        for k in range(len(self.blocks)):
            h, loss = self.train_block(k, h, len(y))
            losses.append(loss)
        return step_summary(losses)

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
                    total += ff_goodness(out)
                h = self.to_next_block(k, out)
            cols.append(total)
        return torch.stack(cols, dim=1)


register(Method("ff", FFObjective, ForwardForward))
