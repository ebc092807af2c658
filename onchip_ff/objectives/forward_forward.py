"""Hinton's Forward-Forward objective: mean-square goodness, softplus threshold loss, label pixels.

Hinton, "The Forward-Forward Algorithm: Some Preliminary Investigations", arXiv 2212.13345.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ff_goodness(h: torch.Tensor) -> torch.Tensor:
    """(N, ...) activities -> (N,) mean of squares."""
    return h.flatten(1).pow(2).mean(1)


def ff_loss(g_pos: torch.Tensor, g_neg: torch.Tensor, threshold: float) -> torch.Tensor:
    """Mean over the 2N samples of softplus(theta - g_pos) and softplus(g_neg - theta)."""
    return torch.cat([F.softplus(threshold - g_pos), F.softplus(g_neg - threshold)]).mean()


def embed_label(x: torch.Tensor, labels: torch.Tensor, n_classes: int, value: float) -> torch.Tensor:
    """Copy of x with its first n_classes input values replaced by value * one_hot(label)."""
    flat = x.flatten(1).clone()
    flat[:, :n_classes] = 0.0
    flat[torch.arange(len(labels), device=labels.device), labels] = value
    return flat.view_as(x)
