"""Negative labels for Forward-Forward: uniformly random wrong labels or the hardest wrong label."""

from __future__ import annotations

import torch


def random_wrong_labels(labels: torch.Tensor, n_classes: int, generator: torch.Generator) -> torch.Tensor:
    """Uniform over the n_classes - 1 wrong labels."""
    shift = torch.randint(1, n_classes, labels.shape, generator=generator).to(labels.device)  # drawn on the CPU generator
    return (labels + shift) % n_classes


def hardest_wrong_labels(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Wrong label with the highest score (N, C) under the current network."""
    masked = scores.scatter(1, labels[:, None], float("-inf"))
    return masked.argmax(1)
