"""DeeperForward objective: per-sample feature normalization, mean-activation class scores of
per-class channel groups, and the per-layer cross-entropy on those scores.

Source: Sun et al., "DeeperForward: Enhanced Forward-Forward Training for Deeper and Better
Performance", ICLR 2025 (openreview.net/forum?id=kOYnXVQCtA).  From the paper: goodness built
from layer normalization and the *mean* of activities (not FF's sum of squares); no label in the
input; each layer's channels split into one group per class; class score = mean activation of the
class's group; cross-entropy on the scores per layer; the next layer gets normalized features.
From the code published with the paper (read, not copied): groups are contiguous channel blocks
(class k owns channels [kG, (k+1)G)), the scores are taken from the ReLU output before
normalization, the logits are the raw scores (no temperature), and the features handed on are
normalized per class group (`groups = n_classes` below), not over the whole layer.
Our choices: `groups` is selectable (1 = layer normalization, the paper's wording, the default),
eps = 1e-5 (PyTorch's layer/group-norm default), and an optional logit scale (default 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

NORM_EPS = 1e-5  # added to the variance before the square root (PyTorch's LayerNorm default)


def feature_norm(h: torch.Tensor, groups: int = 1, eps: float = NORM_EPS) -> torch.Tensor:
    """Per-sample normalization, same shape as h: the flattened features of each sample, (C*H*W,)
    or (D,), are cut into `groups` equal contiguous slices (for (N, C, H, W): channel blocks of
    C/groups channels with all their positions) and each slice becomes (h - mean) / sqrt(var + eps),
    var the biased variance over the slice; no affine parameters.  groups = 1 is layer
    normalization over (C, H, W) or (D,); groups = n_classes is group normalization with one group
    per class."""
    flat = h.reshape(h.shape[0], groups, -1)
    mean = flat.mean(2, keepdim=True)
    var = flat.var(2, correction=0, keepdim=True)
    return ((flat - mean) / torch.sqrt(var + eps)).reshape(h.shape)


def class_scores(h: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(N, C, H, W) or (N, D) activations -> (N, n_classes): score of class k = mean of h over the
    k-th contiguous block of C/n_classes channels and all positions (MLP: of D/n_classes units).
    C (or D) must be a multiple of n_classes."""
    return h.reshape(h.shape[0], n_classes, -1).mean(2)


def class_cross_entropy(scores: torch.Tensor, labels: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Mean over the batch of -log softmax(scale * scores)_y."""
    return F.cross_entropy(scale * scores, labels)
