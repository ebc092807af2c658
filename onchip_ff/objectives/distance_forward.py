"""Distance-Forward objective: centroid goodness and the goodness-based N-pair margin loss.

Goodness of class k for normalized features h_hat: g(x, k) = -|h_hat - c_k|^2 with unit-length
centroids c_k.  Loss: L = mean_i log(1 + sum_{k != y_i} exp(s (g_ik - g_iy + m))).
Reconstruction of Wu et al., arXiv 2408.14925 (no code published); see README.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def centroid_goodness(h_hat: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """(N, D) features, (C, D) centroids -> (N, C) goodness -|h_hat - c_k|^2."""
    sq = (h_hat * h_hat).sum(1, keepdim=True) + (centroids * centroids).sum(1)[None, :]
    return -(sq - 2.0 * h_hat @ centroids.T)


def npair_margin_loss(goodness: torch.Tensor, labels: torch.Tensor, scale: float,
                      margin: float) -> torch.Tensor:
    """Mean over the batch of log(1 + sum_{k != y} exp(s (g_k - g_y + m)))."""
    g_true = goodness.gather(1, labels[:, None])
    logits = scale * (goodness - g_true + margin)
    logits = logits.masked_fill(F.one_hot(labels, goodness.shape[1]).bool(), float("-inf"))
    zeros = torch.zeros_like(g_true)
    return torch.logsumexp(torch.cat([zeros, logits], dim=1), dim=1).mean()


class Centroids(torch.nn.Module):
    """Class centroids of one loss head, kept at unit length.

    "learnable": a raw (C, D) parameter, normalized on use; the N-pair loss moves it (proxy-based
    metric learning).  "ema": a buffer tracking the normalized mean feature of each class in the
    batch, c <- normalize(mom c + (1 - mom) mean); no gradient.
    """

    def __init__(self, dim: int, n_classes: int, mode: str, momentum: float,
                 generator: torch.Generator) -> None:
        super().__init__()
        init = F.normalize(torch.randn(n_classes, dim, generator=generator), dim=1)
        self.mode = mode
        self.momentum = momentum
        if mode == "learnable":
            self.raw = torch.nn.Parameter(init)
        else:
            self.register_buffer("raw", init)

    def unit(self) -> torch.Tensor:
        return F.normalize(self.raw, dim=1)

    def goodness(self, h_hat: torch.Tensor) -> torch.Tensor:
        return centroid_goodness(h_hat, self.unit())

    @torch.no_grad()
    def ema_update(self, h_hat: torch.Tensor, labels: torch.Tensor) -> None:
        n_classes = self.raw.shape[0]
        sums = torch.zeros_like(self.raw).index_add_(0, labels, h_hat)
        counts = torch.bincount(labels, minlength=n_classes)
        seen = counts > 0
        means = sums[seen] / counts[seen, None].to(sums.dtype)
        mixed = self.momentum * self.unit()[seen] + (1.0 - self.momentum) * F.normalize(means, dim=1)
        self.raw[seen] = F.normalize(mixed, dim=1)
