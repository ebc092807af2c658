"""Scalable Forward-Forward's per-block loss head on the accountant's tape
(onchip_ff/methods/sff.py, onchip_ff/objectives/sff.py): the auxiliary 1x1-conv / Linear class
head, the mean-square class goodness and the log-sum-exp margin loss."""

from __future__ import annotations

from accountant.layers import Ctx, LayerSpec, mvm
from accountant.tape import Tape


def head_spec(layer: LayerSpec, n_classes: int) -> LayerSpec:
    """sff.make_head on the block output: Conv2d(C, n_classes, 1) on (C, H, W), Linear(D, n_classes)
    on (D,)."""
    shape = layer.out_shape
    if len(shape) == 3:
        return LayerSpec("conv", shape, n_classes, kernel=1)
    return LayerSpec("dense", shape, n_classes)


def goodness(tape: Tape, ctx: Ctx, layer: LayerSpec, h: int, params: list[int], n_classes: int) -> int:
    """class_goodness(head(h)): the head's product saves h; square saves the head output a (its
    backward computes 2 * a, a copy of a and the product); on a conv block mean over the positions
    (backward: the input size).  Returns the (N, n_classes) goodness; h stays held."""
    a = mvm(tape, ctx, head_spec(layer, n_classes), h, params[0], params[1])
    n, s = tape.tensors[a].rows, tape.nbytes(a)
    sq = tape.op((a,), tape.tensors[a].numel, saves=(a,), grads=(s,), bwd_peak=3 * s)
    tape.drop(a)
    if len(layer.out_shape) == 1:
        return sq
    g = tape.op((sq,), (n * n_classes, 4, n), grads=(s,))
    tape.drop(sq)
    return g


def margin_loss(tape: Tape, g: int, labels: int, n_classes: int) -> int:
    """sff.margin_loss: gather saves the goodness and its index (the labels); masked_fill saves
    the bool mask (N, C); logsumexp its input (N, C) and result (N); softplus its input (N).
    Transients (O(N*C), approximate as npair_loss's): forward one_hot (int64), the bool mask, the
    masked copy and logsumexp's temporaries; backward three (N, C) temporaries of logsumexp and the
    gather's zeros."""
    n, c = tape.tensors[g].rows, n_classes
    nc = n * c
    return tape.op((g, labels), (1, 4, 1), saves=(g, labels),
                   new_saved=((nc, 1, n), (nc, 4, n), (n, 4, n), (n, 4, n)),
                   grads=(nc * 4, 0), fwd_peak=nc * 17 + 24 * n, bwd_peak=nc * 16 + 16 * n)
