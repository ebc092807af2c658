"""The learners' update schedules (onchip_ff/methods/*.py) replayed on the accountant's symbolic
tape: which graphs are alive when, what is detached, freed and stepped, one function per method.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from accountant import layers as ml
from accountant import sff as memory_sff
from accountant.tape import PASS, Node, Tape

if TYPE_CHECKING:
    from accountant.memory import MemorySpec, _Net


def _optimizer_step(tape: Tape, spec: MemorySpec, groups: list[list[int]]) -> None:
    """CPU single-tensor optimizers, one parameter group after the other: Adam (and AdamW) holds
    the previous parameter's denominator while it computes sqrt and the division for the next;
    weight decay adds one parameter-sized copy (grad + wd * param), except AdamW's, which scales
    the parameter in place.  CUDA (foreach): one temporary per parameter of the group at once."""
    wd = 1 if spec.weight_decay and spec.optimizer != "adamw" else 0
    adam = spec.adam_family
    extra = 0
    for params in groups:
        sizes = [tape.nbytes(p) for p in params]
        if spec.ctx.device == "cpu":
            extra = max([extra] + [s * wd + (2 * s + prev if adam else 0)
                                   for prev, s in zip([0] + sizes, sizes)])
        else:
            extra = max(extra, sum(sizes) * (wd + (1 if adam else 0)))
    tape.spike(extra)


def _forward(tape: Tape, spec: MemorySpec, net: _Net, i: int, x: int) -> int:
    """Layer i's forward on input x (logged as ("forward", i))."""
    tape.events.append(("forward", i))
    return ml.layer_forward(tape, spec.ctx, spec.layers[i], x, net.layer_params[i], net.running[i])


def _train(tape: Tape, spec: MemorySpec, groups: list[list[int]], loss: int, phase: str) -> None:
    """zero_grad(set_to_none) -> backward -> optimizer step, as every learner does (the step logged
    as ("step", k), k counting the optimizers of the train step)."""
    tape.events.append(("step", sum(kind == "step" for kind, _ in tape.events)))
    tape.zero_grad([p for g in groups for p in g])
    tape.phase = f"{phase} backward"
    tape.backward(loss)
    tape.drop(loss)
    tape.phase = f"{phase} optimizer step"
    _optimizer_step(tape, spec, groups)
    if spec.free_grads:
        tape.zero_grad([p for g in groups for p in g])


def _df(tape: Tape, spec: MemorySpec, net: _Net) -> None:
    """DistanceForward.train_step: block by block, the detached normalized output feeds the next."""
    bsize = 1 if spec.method == "df" else spec.block_size
    blocks = [list(range(i, min(i + bsize, spec.depth))) for i in range(0, spec.depth, bsize)]
    x, prev_good = net.x, None
    for k, block in enumerate(blocks):
        tape.phase = f"block {k} forward"
        cur, h_hat = x, None
        for pos, i in enumerate(block):
            out = _forward(tape, spec, net, i, cur)
            new_hat = ml.normalize(tape, out)
            tape.drop(out)
            tape.drop(h_hat)
            h_hat = new_hat
            if pos + 1 < len(block):
                nxt = ml.scale(tape, h_hat)
                if cur is not x:
                    tape.drop(cur)
                cur = nxt
        if cur is not x:
            tape.drop(cur)
        good = ml.df_goodness(tape, h_hat, net.head_params[k][0], spec.n_classes)
        if spec.accumulate_goodness and prev_good is not None:
            summed = tape.op((good, prev_good), tape.tensors[good].numel, grads=(PASS, 0))
            tape.drop(good)
            good = summed
        loss = ml.npair_loss(tape, good, net.y, spec.n_classes)
        groups = [[p for i in block for p in net.layer_params[i]]]
        if spec.centroids == "learnable":  # centroids: a parameter group of their own
            groups.append(net.head_params[k])
        _train(tape, spec, groups, loss, f"block {k}")
        if spec.centroids == "ema":  # index_add sums, normalized means, mixed centroids
            tape.spike(3 * tape.nbytes(net.head_params[k][0]))
        nxt = tape.like(h_hat)  # next_input(h_hat.detach()): a new tensor outside the graph
        tape.drop(h_hat)
        tape.drop(prev_good)
        prev_good = good
        if x is not net.x:
            tape.drop(x)
        x = nxt
    tape.drop(x)
    tape.drop(prev_good)


def _ff(tape: Tape, spec: MemorySpec, net: _Net) -> None:
    """ForwardForward.train_step: 2N rows (label-embedded positives and negatives), layer by layer."""
    n = spec.batch
    tape.phase = "embedding"
    pos = tape.like(net.x)
    neg_labels = tape.new(n, 8, rows=n)
    neg = tape.like(net.x)
    h = tape.new(2 * tape.tensors[net.x].numel, rows=2 * n)
    for t in (pos, neg, neg_labels):
        tape.drop(t)
    out = None
    for i in range(spec.depth):
        tape.phase = f"layer {i} forward"
        new_out = _forward(tape, spec, net, i, h)
        tape.drop(out)
        out = new_out
        g = ml.ff_goodness(tape, out)
        loss = ml.ff_loss(tape, g)
        tape.drop(g)
        _train(tape, spec, [net.layer_params[i]], loss, f"layer {i}")
        tape.phase = f"layer {i} next input"
        nxt = _next_input(tape, out)
        tape.drop(h)
        h = nxt
    tape.drop(h)
    tape.drop(out)


def _layer_local(tape: Tape, spec: MemorySpec, net: _Net, x: int, unit: str, groups: int, head) -> None:
    """LayerLocalLearner.train_step (onchip_ff/methods/layer_local.py), shared by DeeperForward and SFF:
    unit by unit, forward on the detached input x -> head(i, layer, h) = (loss, a tensor it keeps
    until the next input is made, the head's parameters) -> backward and the unit's own step ->
    feature_norm of the detached output (in `groups` groups) feeds the next unit.  x is the caller's
    first input; it is dropped here unless it is the batch itself."""
    for i, layer in enumerate(spec.layers):
        tape.phase = f"{unit} {i} forward"
        h = _forward(tape, spec, net, i, x)
        loss, kept, head_params = head(i, layer, h)
        _train(tape, spec, [net.layer_params[i] + head_params], loss, f"{unit} {i}")
        tape.phase = f"{unit} {i} next input"
        nxt = ml.feature_norm(tape, h, groups)
        tape.drop(h)
        tape.drop(kept)
        if x is not net.x:
            tape.drop(x)
        x = nxt
    if x is not net.x:
        tape.drop(x)


def _deeperforward(tape: Tape, spec: MemorySpec, net: _Net) -> None:
    """DeeperForward.train_step: feature_norm(x), then layer by layer: class scores (group means)
    -> cross-entropy; the layers have no head parameters."""
    def head(i, layer, h):
        scores = ml.class_scores(tape, h, spec.n_classes)
        logits = ml.scale(tape, scores)  # score_scale * scores
        return ml.cross_entropy(tape, logits, net.y), scores, []

    tape.phase = "input norm"
    _layer_local(tape, spec, net, ml.feature_norm(tape, net.x, 1), "layer", spec.feature_groups, head)


def _sff(tape: Tape, spec: MemorySpec, net: _Net) -> None:
    """ScalableForwardForward.train_step: block by block from the batch itself: the block's
    1x1-conv / Linear head -> class goodness -> margin loss, backward through block and head."""
    def head(i, layer, h):
        good = memory_sff.goodness(tape, spec.ctx, layer, h, net.head_params[i], spec.n_classes)
        return memory_sff.margin_loss(tape, good, net.y, spec.n_classes), good, net.head_params[i]

    _layer_local(tape, spec, net, net.x, "block", 1, head)


def _intff(tape: Tape, spec: MemorySpec, net: _Net) -> None:
    """IntegratedForwardForward.train_step: 2N rows (label-embedded positives and shuffled-label
    negatives), block by block: forward through the block's layers -> FF goodness and loss of its
    last layer -> backward through the block -> its step; the detached normalized output (times
    sqrt(D) or 1) feeds the next block."""
    n = spec.batch
    tape.phase = "embedding"
    pos = tape.like(net.x)
    perm = tape.new(n, 8, rows=n)  # labels[randperm(N)]
    shuffled = tape.new(n, 8, rows=n)
    tape.drop(perm)
    shift = tape.new(n, 8, rows=n)  # random_wrong_labels: (labels + randint) % C
    summed = tape.new(n, 8, rows=n)
    fallback = tape.new(n, 8, rows=n)
    tape.drop(summed)
    tape.drop(shift)
    same = tape.new(n, 1, rows=n)  # torch.where(shuffled == labels, fallback, shuffled)
    neg_labels = tape.new(n, 8, rows=n)
    for t in (same, fallback, shuffled):
        tape.drop(t)
    neg = tape.like(net.x)
    tape.drop(neg_labels)
    h = tape.new(2 * tape.tensors[net.x].numel, rows=2 * n)
    for t in (pos, neg):
        tape.drop(t)
    start = 0
    for k, size in enumerate(spec.blocks):
        block = range(start, start + size)
        start += size
        tape.phase = f"block {k} forward"
        out = _segment(tape, spec, net, list(block), h)
        g = ml.ff_goodness(tape, out)
        loss = ml.ff_loss(tape, g)
        tape.drop(g)
        _train(tape, spec, [[p for i in block for p in net.layer_params[i]]], loss, f"block {k}")
        tape.phase = f"block {k} next input"
        nxt = _next_input(tape, out)
        tape.drop(out)
        tape.drop(h)
        h = nxt
    tape.drop(h)


def _next_input(tape: Tape, out: int) -> int:
    """next_input(normalize(out.detach())) outside any graph: norm and denominator (rows), the
    unit rows, then the scaled copy."""
    rows = tape.tensors[out].rows
    norm, denom = tape.new(rows, rows=rows), tape.new(rows, rows=rows)
    tape.drop(norm)
    unit = tape.like(out)
    tape.drop(denom)
    nxt = tape.like(out)
    tape.drop(unit)
    return nxt


def _segment(tape: Tape, spec: MemorySpec, net: _Net, layers: list[int], x: int) -> int:
    """Forward of consecutive layers from x (kept); the intermediate outputs are dropped."""
    h = x
    for i in layers:
        out = _forward(tape, spec, net, i, h)
        if h is not x:
            tape.drop(h)
        h = out
    return h


def _bp(tape: Tape, spec: MemorySpec, net: _Net) -> None:
    """Backprop.train_step, optionally with reentrant checkpointing of every segment of
    checkpoint_every layers but the last (torch.utils.checkpoint.checkpoint_sequential)."""
    k = spec.segment if spec.method == "bp_ckpt" else spec.depth
    segments = [list(range(i, min(i + k, spec.depth))) for i in range(0, spec.depth, k)]
    h = net.x
    tape.phase = "forward"
    for j, seg in enumerate(segments):
        if j + 1 == len(segments):
            out = _segment(tape, spec, net, seg, h)
        else:
            tape.no_grad = True
            out = _segment(tape, spec, net, seg, h)
            tape.no_grad = False
            tape.tensors[out].requires_grad = True

            def recompute(gout: int, seg=seg, inp=h) -> None:
                outer = tape.graph()  # CheckpointFunction.backward: re-run with grad, then backward
                rec = _segment(tape, spec, net, seg, tape.hold(inp))
                nested, tape.nodes = tape.nodes, outer
                tape.backward(rec, nodes=nested, grad_out=gout)
                tape.drop(rec)
                tape.drop(inp)
            tape.save(h)  # ctx.save_for_backward(segment input)
            tape.nodes.append(Node(out, (h,), (0,), (h,), 0, recompute))
        if h is not net.x:
            tape.drop(h)
        h = out
    w, b = net.head_params[0]
    logits = tape.op((h, w, b), (spec.batch * spec.n_classes, 4, spec.batch), saves=(h,),
                     grads=(tape.nbytes(h), 0 if spec.ctx.direct_update else tape.nbytes(w), tape.nbytes(b)))
    tape.drop(h)
    loss = ml.cross_entropy(tape, logits, net.y)
    _train(tape, spec, [[p for ps in net.layer_params for p in ps] + net.head_params[0]], loss, "network")


SCHEDULES = {"df": _df, "dfo": _df, "ff": _ff, "deeperforward": _deeperforward, "intff": _intff,
             "sff": _sff, "bp": _bp, "bp_ckpt": _bp}
