"""What every layer-local learner shares: one layer's update, done before the next layer's forward
(locality is real: each loss has its own backward), the step's loss summary, and forward = scores."""

from __future__ import annotations

import torch
from torch import nn


# An optimizer with this attribute set to True keeps its parameters' .grad after its step (what
# every learner did before: the memory study's grads "kept" variant, accountant/measure.py).
KEEP_GRADS = "keep_grads"


def local_update(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> float:
    """Backward of one layer's (or block's, or BP's whole network's) own loss and its optimizer
    step, then its gradients freed (zero_grad(set_to_none=True)), so that a layer-local learner
    holds one block's .grad at a time, never all of them between steps; returns the loss."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if not getattr(optimizer, KEEP_GRADS, False):
        optimizer.zero_grad(set_to_none=True)
    return loss.item()


def step_summary(losses: list[float]) -> dict[str, float]:
    """What train_step reports: the mean loss over layers and each layer's loss as loss_<k>."""
    return {"loss": sum(losses) / len(losses), **{f"loss_{k}": v for k, v in enumerate(losses)}}


class ScoringLearner(nn.Module):
    """Base of the forward-only learners: calling the learner gives its class scores."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """learner(x): the class scores (N, n_classes), as scores(x)."""
        return self.scores(x)

    def scores(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - every learner defines it
        raise NotImplementedError
