"""Integrated Forward-Forward objective: block goodness, the block's positive/negative loss and
shuffled-label negatives.

Tang, "The Integrated Forward-Forward Algorithm: Integrating Forward-Forward and Shallow
Backpropagation With Local Losses", arXiv 2305.12960 (2023).  From the paper and the author's
published code (github.com/Desmond-YM-Tang/The-Integrated-FOrward-Forward, read, not copied):
the network is a chain of blocks of 1-3 dense ReLU layers, each block trained by backprop inside
the block against a local loss; goodness = *mean* of the squared activities of the block's last
layer (sum of squares / width); loss = mean over the 2N samples of softplus(theta - g_pos) and
softplus(g_neg - theta), as in Hinton's FF; positives carry the true label in the first
n_classes inputs, negatives a label taken from a shuffled copy of the batch's labels; inference
sums the goodness of every block for each candidate label.
Our choice: a shuffled label that lands on the sample's own label (probability about 1/n_classes;
the published code keeps those) is replaced by a uniformly random wrong label, so every negative
is wrong while the negatives' label mix stays that of the batch.
"""

from __future__ import annotations

import torch

from onchip_ff.negatives import random_wrong_labels
from onchip_ff.objectives.forward_forward import ff_goodness, ff_loss


def block_goodness(out: torch.Tensor) -> torch.Tensor:
    """(N, D) output of a block's last layer -> (N,) mean of squares, sum_j out_j^2 / D."""
    return ff_goodness(out)


def block_loss(out: torch.Tensor, n_pos: int, threshold: float) -> torch.Tensor:
    """Loss of one block on its output for the stacked batch [positives; negatives]: the first n_pos
    rows are positive, the rest negative; mean of softplus(theta - g) over the positives and
    softplus(g - theta) over the negatives, all 2N terms weighted equally."""
    g = block_goodness(out)
    return ff_loss(g[:n_pos], g[n_pos:], threshold)


def shuffled_wrong_labels(labels: torch.Tensor, n_classes: int, generator: torch.Generator) -> torch.Tensor:
    """Negative labels: a random permutation of the batch's labels; where that gives a sample its
    own label, a uniformly random wrong label instead (one draw for every sample, used only there,
    so the number of draws does not depend on the data)."""
    shuffled = labels[torch.randperm(len(labels), generator=generator).to(labels.device)]
    fallback = random_wrong_labels(labels, n_classes, generator)
    return torch.where(shuffled == labels, fallback, shuffled)
