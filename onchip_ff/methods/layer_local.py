"""The schedule shared by learners whose every layer (or block) has its own class-score loss and
optimizer and no label in the input: DeeperForward and Scalable FF.

Per batch: x = prepare_input(x); for each layer k: forward on the detached input -> class scores
-> layer_loss -> backward -> layer k's optimizer step; the detached output, through
to_next_layer, feeds layer k+1.  Only one layer's autograd graph is alive at a time.  Inference:
argmax of the class scores summed over self.eval_layers, one forward pass.  The per-layer methods
(prepare_input, train_layer) are also what the layer pipeline (onchip_ff/pipeline.py) calls.
"""

from __future__ import annotations

import torch
from torch import nn

from onchip_ff.methods.local_update import ScoringLearner, local_update, step_summary


class LayerLocalLearner(ScoringLearner):
    """Subclasses set self.layers, self.optimizers (one per layer), self.eval_layers and define
    layer_forward(k, x) -> (h, scores), layer_loss(scores, y), to_next_layer(h, k), prepare_input(x)."""

    layers: nn.ModuleList
    optimizers: list[torch.optim.Optimizer]
    eval_layers: list[int]

    def train_layer(self, k: int, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, float]:
        """One local update of layer k; returns (next layer's input, loss)."""
        h, scores = self.layer_forward(k, x.detach())
        loss = self.layer_loss(scores, y)
        loss_value = local_update(self.optimizers[k], loss)
        return self.to_next_layer(h, k), loss_value

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        x = self.prepare_input(x)
        losses = []
        for k in range(len(self.layers)):
            x, loss = self.train_layer(k, x, y)
            losses.append(loss)
        return step_summary(losses)

    @torch.no_grad()
    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Sum of the class scores of the layers in eval_layers: one forward pass (layers after the
        last evaluated one are skipped)."""
        x = self.prepare_input(x)
        total = 0.0
        for k in range(max(self.eval_layers) + 1):
            h, s = self.layer_forward(k, x)
            if k in self.eval_layers:
                total = total + s
            x = self.to_next_layer(h, k)
        return total
