"""Scalable Forward-Forward objective: per-class goodness from a block's auxiliary head and the
log-sum-exp margin loss on it.

Source: A. Krutsylo, "Scalable Forward-Forward Algorithm", arXiv:2501.03176 (2025), abstract and
the author's summary at krutsylo.neocities.org/sff.html; the full paper text was not available to
us, so the formulas below are partly our reading.
From the source: every block of the network gets a tiny auxiliary convolution, a 1x1 (or slightly
larger) kernel with one output channel per class; the goodness of class k is the mean of the
squared activations of its output channel, so one forward pass gives all classes' goodness; the
true class is the positive, all other classes are the negatives (no label pixels, no second
pass); blocks are trained one at a time per mini-batch with backprop inside a block only, the
block output is layer-normalized and detached before the next block; at inference every block (or
only the last) votes with its goodness vector and the averaged argmax wins.
Our reading / choices:
  * goodness   g_k = mean over the H x W positions of a_k^2, a = head(h) (N, K, H, W);
    for dense layers the head is a Linear to K outputs and g_k = a_k^2;
  * loss       L = mean_i softplus(z_i),  z_i = logsumexp_{k != y_i} g_ik - g_iy_i + m
                 = mean_i log(1 + sum_{k != y_i} exp(g_ik - g_iy_i + m)),
    a soft version of "the true class's goodness beats every other class's by the margin m"
    (objective.margin);
  * gradient   dL/dg_y = -sigma(z) / N,  dL/dg_k = sigma(z) softmax_{j != y}(g)_k / N  (k != y);
  * the head (with bias) reads the block output before the layer normalization handed on; the
    first block gets the standardized image; inference sums the goodness vectors of the voting
    blocks (objective.eval_layers), the same argmax as the summary's average.
F.softplus is exactly linear above z = 20 (relative error < 1e-9 there).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def class_goodness(a: torch.Tensor) -> torch.Tensor:
    """Head output (N, K, H, W) or (N, K) -> (N, K): mean over positions of a^2 (dense: a^2)."""
    sq = a.square()
    return sq.flatten(2).mean(2) if a.dim() > 2 else sq


def margin_loss(goodness: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean over the batch of softplus(logsumexp_{k != y} g_k - g_y + margin); goodness (N, K),
    labels (N,) int64.  The true class is masked to -inf inside the log-sum-exp (its weight and
    gradient there are exactly 0), so the loss is stable for any goodness scale."""
    true = goodness.gather(1, labels[:, None]).squeeze(1)
    is_true = F.one_hot(labels, goodness.shape[1]).bool()
    others = torch.logsumexp(goodness.masked_fill(is_true, float("-inf")), dim=1)
    return F.softplus(others - true + margin).mean()
