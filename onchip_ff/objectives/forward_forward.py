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


def check_label_fits(method: str, input_shape: tuple[int, ...], n_classes: int) -> None:
    """ConfigError when an input has fewer values than there are classes (no room for the label)."""
    import math

    from common.errors import ConfigError
    if math.prod(input_shape) < n_classes:
        raise ConfigError(f"objective.method = {method!r} writes the label into the first {n_classes} "
                          f"inputs, but an input has only {math.prod(input_shape)} values")


def embed_label(x: torch.Tensor, labels: torch.Tensor, n_classes: int, value: float) -> torch.Tensor:
    """Copy of x with its first n_classes input values replaced by value * one_hot(label)."""
    flat = x.flatten(1).clone()
    flat[:, :n_classes] = 0.0
    flat[torch.arange(len(labels), device=labels.device), labels] = value
    return flat.view_as(x)
