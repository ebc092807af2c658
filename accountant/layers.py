"""Per-layer-type memory tables of the accountant: for every op our networks and losses use, what
autograd saves for backward, what the forward allocates, and what the backward allocates, written
as programs on the symbolic tape (accountant/tape.py).

Saved tensors follow PyTorch's derivative formulas (tools/autograd/derivatives.yaml; a product
saves an operand only when the other needs a gradient): Linear saves its input; Conv2d its input;
ReLU its output; max-pool its input and int64 indices of the pooled size; an add nothing (its
gradient is the incoming one, for both operands: the residual shortcut); batch norm its input
and two per-channel statistics (running statistics are buffers); dropout on CPU a float32 noise
tensor of the input size (on CUDA a bool mask); length normalization the input, the norm and the
denominator.  Transients are those of PyTorch 2.x's CPU kernels, including oneDNN's blocked
convolution layouts (channels padded to `conv_block`); small O(N*C) loss-head temporaries are
approximations, everything O(N*D), O(C*D) and per-parameter is exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from accountant.tape import PASS, Tape
from common.errors import ConfigError


@dataclass(frozen=True)
class LayerSpec:
    """One layer: "dense" = Linear [+ BatchNorm1d] + ReLU [+ Dropout] on the flattened input;
    "conv" = Conv2d 'same' [+ BatchNorm2d] + ReLU [+ MaxPool(pool)] [+ Dropout]; "res" =
    onchip_ff.network.ResidualBlock (no batch norm or dropout): two Conv2d 'same' with bias, a
    bias-free 1x1 Conv2d shortcut when the channels change, ReLUs, the add, [MaxPool(pool)]."""

    kind: str
    in_shape: tuple[int, ...]
    out: int
    kernel: int = 3
    pool: int = 1
    batchnorm: bool = False
    dropout: float = 0.0

    @property
    def out_shape(self) -> tuple[int, ...]:
        if self.kind == "dense":
            return (self.out,)
        _, h, w = self.in_shape
        p = max(self.pool, 1)
        return (self.out, h // p, w // p)

    @property
    def weight_shape(self) -> tuple[int, int]:
        """(rows, columns) of the layer's matrix: one output per row."""
        fan_in = math.prod(self.in_shape) if self.kind == "dense" else self.in_shape[0] * self.kernel ** 2
        return self.out, fan_in  # "res": conv1's

    def params(self) -> list[tuple[int, int, bool]]:
        """(numel, rows, is_matrix) per parameter, in module order."""
        rows, cols = self.weight_shape
        ps = [(rows * cols, rows, True), (rows, rows, False)]
        if self.kind == "res":  # conv1, conv2, [shortcut]
            ps += [(rows * rows * self.kernel ** 2, rows, True), (rows, rows, False)]
            if self.in_shape[0] != rows:
                ps.append((rows * self.in_shape[0], rows, True))
        if self.batchnorm:
            ps += [(self.out, self.out, False)] * 2
        return ps

    def buffer_bytes(self) -> int:
        """Batch-norm running mean and variance (float32) and num_batches_tracked (int64)."""
        return 2 * self.out * 4 + 8 if self.batchnorm else 0


def mlp_layers(input_shape: tuple[int, ...], hidden: tuple[int, ...], batchnorm: bool = False,
               dropout: float = 0.0) -> tuple[LayerSpec, ...]:
    shape, out = tuple(input_shape), []
    for width in hidden:
        out.append(LayerSpec("dense", shape, int(width), batchnorm=batchnorm, dropout=dropout))
        shape = out[-1].out_shape
    return tuple(out)


def cnn_layers(input_shape: tuple[int, ...], channels: tuple[int, ...], kernel: int = 3, pool: int = 2,
               batchnorm: bool = False, dropout: float = 0.0, pool_every: int = 1) -> tuple[LayerSpec, ...]:
    """Conv layers; max-pool after every pool_every-th layer only (model.pool_every)."""
    shape, out = tuple(input_shape), []
    for i, c in enumerate(channels):
        p = pool if (i + 1) % pool_every == 0 else 1
        out.append(LayerSpec("conv", shape, int(c), kernel, p, batchnorm, dropout))
        shape = out[-1].out_shape
        if min(shape[1:]) < 1:
            raise ConfigError(f"memory: {len(channels)} conv layers with pool {pool} every "
                              f"{pool_every} layer(s) shrink the input to nothing")
    return tuple(out)


def resnet_layers(input_shape: tuple[int, ...], channels: tuple[int, ...], kernel: int = 3, pool: int = 2,
                  pool_every: int = 1) -> tuple[LayerSpec, ...]:
    """Residual blocks (model.arch = "resnet"), one LayerSpec each; max-pool after every
    pool_every-th block."""
    convs = cnn_layers(input_shape, channels, kernel, pool, pool_every=pool_every)
    return tuple(LayerSpec("res", c.in_shape, c.out, kernel, c.pool) for c in convs)


@dataclass(frozen=True)
class Ctx:
    """Execution details that change transients: device ("cpu"/"cuda"), oneDNN channel block
    (16 on AVX-512, 8 otherwise, 0 = no blocked conv workspace), accumulator bytes of a
    fixed-point MAC array (0 = float), torch threads (on one thread PyTorch runs 1x1
    convolutions of batches below 16 without oneDNN), and whether layer matrices are updated
    directly in their arrays (no weight gradient formed)."""

    device: str = "cpu"
    conv_block: int = 16
    acc_bytes: int = 0
    threads: int = 1
    direct_update: bool = False  # arrays stepped by pulse trains: no weight gradient (chip view)


def _rows(tape: Tape, tid: int) -> int:
    return tape.tensors[tid].rows


def _numel(tape: Tape, tid: int) -> int:
    return tape.tensors[tid].numel


def relu(tape: Tape, x: int) -> int:
    out = tape.op((x,), _numel(tape, x), grads=(tape.nbytes(x),), save_out=True)
    tape.drop(x)
    return out


def batchnorm(tape: Tape, x: int, channels: int, params: list[int], running: int) -> int:
    s = tape.nbytes(x)
    out = tape.op((x, *params), _numel(tape, x), saves=(x, running),
                  new_saved=((channels, 4, 1), (channels, 4, 1)),
                  grads=(s, channels * 4, channels * 4))
    tape.drop(x)
    return out


def dropout(tape: Tape, ctx: Ctx, x: int, p: float) -> int:
    if p <= 0:
        return x
    n, numel = _rows(tape, x), _numel(tape, x)
    mask = (numel, 4, n) if ctx.device == "cpu" else (numel, 1, n)
    out = tape.op((x,), numel, new_saved=(mask,), grads=(tape.nbytes(x),))
    tape.drop(x)
    return out


def _onednn(n: int, cin: int, cout: int, hw: int, k: int, block: int) -> tuple[int, int, int, int]:
    """Blocked-layout buffers of a oneDNN convolution: input (not reordered for 1-3 channels under
    a k x k kernel, k > 1), weights, output; channels padded to the block."""
    pad = lambda c: -(-c // block) * block  # noqa: E731
    blocked_in = cin > 3 or k == 1
    in_b = n * pad(cin) * hw * 4 if blocked_in else 0
    w_b = pad(cout) * (pad(cin) if blocked_in else cin) * k * k * 4
    return in_b, w_b, n * pad(cout) * hw * 4, n * pad(cin) * hw * 4


def mvm(tape: Tape, ctx: Ctx, spec: LayerSpec, x: int, w: int, b: int | None) -> int:
    """Linear (addmm) or Conv2d (b = None: without bias): the layer's matrix-vector products."""
    n = _rows(tape, x)
    rows, cols = spec.weight_shape
    hw = 1 if spec.kind == "dense" else spec.in_shape[1] * spec.in_shape[2]
    out_bytes = n * rows * hw * 4
    acc = n * rows * hw * ctx.acc_bytes
    bias = 0 if b is None else rows * 4
    ins = (x, w) if b is None else (x, w, b)
    grads = (tape.nbytes(x), 0 if ctx.direct_update else rows * cols * 4, bias)[:len(ins)]
    plain = spec.kernel == 1 and n < 16 and ctx.threads == 1  # ATen's slow_conv2d, no workspace
    if spec.kind == "dense" or not ctx.conv_block or ctx.device != "cpu" or plain:
        return tape.op(ins, (n * rows * hw, 4, n), saves=(x,), grads=grads, fwd_peak=out_bytes + acc)
    cin = spec.in_shape[0]
    in_b, w_b, out_b, gi_b = _onednn(n, cin, rows, hw, spec.kernel, ctx.conv_block)
    fwd = max(in_b + w_b + out_b, out_b + out_bytes) + acc
    gw = rows * cols * 4
    if tape.requires(x):
        gi = tape.nbytes(x)
        bwd = max(out_b + w_b + gi_b, gi + out_b + in_b + w_b, gi + gw + bias)
    else:
        bwd = max(out_b + in_b + w_b, gw + bias)
    return tape.op(ins, (n * rows * hw, 4, n), saves=(x,), grads=grads, fwd_peak=fwd, bwd_peak=bwd)


def maxpool(tape: Tape, x: int, spec: LayerSpec) -> int:
    if spec.pool <= 1:
        return x
    n = _rows(tape, x)
    numel = n * math.prod(spec.out_shape)
    out = tape.op((x,), numel, saves=(x,), new_saved=((numel, 8, n),), grads=(tape.nbytes(x),))
    tape.drop(x)
    return out


def residual(tape: Tape, ctx: Ctx, spec: LayerSpec, x: int, params: list[int]) -> int:
    """ResidualBlock: relu(conv2(relu(conv1(x))) + shortcut(x)) [+ max-pool], in Python's order of
    evaluation; the shortcut convolution (channels change) saves x, which conv1 saved already."""
    cin, h, w = spec.in_shape
    r1 = relu(tape, mvm(tape, ctx, LayerSpec("conv", spec.in_shape, spec.out, spec.kernel), x,
                        params[0], params[1]))
    a2 = mvm(tape, ctx, LayerSpec("conv", (spec.out, h, w), spec.out, spec.kernel), r1, params[2], params[3])
    tape.drop(r1)
    short = x if cin == spec.out else mvm(tape, ctx, LayerSpec("conv", spec.in_shape, spec.out, 1), x,
                                          params[4], None)
    total = tape.op((a2, short), _numel(tape, a2), grads=(PASS, PASS))
    tape.drop(a2)
    if short != x:
        tape.drop(short)
    return maxpool(tape, relu(tape, total), spec)


def layer_forward(tape: Tape, ctx: Ctx, spec: LayerSpec, x: int, params: list[int],
                  running: int | None = None) -> int:
    """One DenseLayer / ConvLayer (plus optional batch norm and dropout) or ResidualBlock on input
    x (held by the caller); returns its output, held by the caller."""
    if spec.kind == "res":
        return residual(tape, ctx, spec, x, params)
    z = mvm(tape, ctx, spec, x, params[0], params[1])
    if spec.batchnorm:
        z = batchnorm(tape, z, spec.out, params[2:4], running)
    h = relu(tape, z)
    if spec.kind == "conv":
        h = maxpool(tape, h, spec)
    return dropout(tape, ctx, h, spec.dropout)


def normalize(tape: Tape, h: int) -> int:
    """onchip_ff.network.normalize: h / (|h| + eps) per row (flatten is a view)."""
    n, s = _rows(tape, h), tape.nbytes(h)
    norm = tape.op((h,), (n, 4, n), saves=(h,), save_out=True, grads=(s,), bwd_peak=2 * s)
    denom = tape.op((norm,), (n, 4, n), grads=(PASS,))
    tape.drop(norm)
    out = tape.op((h, denom), _numel(tape, h), saves=(h, denom), grads=(s, n * 4), bwd_peak=4 * s)
    tape.drop(denom)
    return out


def scale(tape: Tape, x: int) -> int:
    """x * python scalar (next_input, 2.0 * h): saves nothing, gradient of the input size."""
    return tape.op((x,), _numel(tape, x), grads=(tape.nbytes(x),))


def _product_saves(tape: Tape, a: int, b: int) -> tuple[int, ...]:
    return ((a,) if tape.requires(b) else ()) + ((b,) if tape.requires(a) else ())


def df_goodness(tape: Tape, h_hat: int, raw: int, n_classes: int) -> int:
    """Centroids.goodness: F.normalize(raw) then centroid_goodness(h_hat, unit) -> (N, C)."""
    n, c = _rows(tape, h_hat), n_classes
    d = _numel(tape, h_hat) // n
    cd = c * d * 4
    n1 = tape.op((raw,), (c, 4, c), saves=(raw,), save_out=True, grads=(cd,), bwd_peak=2 * cd)
    n2 = tape.op((n1,), (c, 4, c), saves=(n1,), grads=(c * 4,))
    tape.drop(n1)
    unit = tape.op((raw, n2), (c * d, 4, c), saves=_product_saves(tape, raw, n2),
                   grads=(cd, c * 4), bwd_peak=4 * cd)
    tape.drop(n2)
    sqh = tape.op((h_hat, h_hat), _numel(tape, h_hat), saves=(h_hat,),
                  grads=(tape.nbytes(h_hat),) * 2)
    s1 = tape.op((sqh,), (n, 4, n), grads=(PASS,))
    tape.drop(sqh)
    squ = tape.op((unit, unit), (c * d, 4, c), saves=(unit,) if tape.requires(unit) else (),
                  grads=(cd, cd))
    s2 = tape.op((squ,), (c, 4, c), grads=(PASS,))
    tape.drop(squ)
    sq = tape.op((s1, s2), (n * c, 4, n), grads=(n * 4, c * 4))
    tape.drop(s1)
    tape.drop(s2)
    two_h = scale(tape, h_hat)
    m = tape.op((two_h, unit), (n * c, 4, n), saves=_product_saves(tape, two_h, unit),
                grads=(tape.nbytes(two_h), cd))
    tape.drop(two_h)
    tape.drop(unit)
    diff = tape.op((sq, m), (n * c, 4, n), grads=(PASS, n * c * 4))
    tape.drop(sq)
    tape.drop(m)
    g = tape.op((diff,), (n * c, 4, n), grads=(n * c * 4,))
    tape.drop(diff)
    return g


def npair_loss(tape: Tape, goodness: int, labels: int, n_classes: int) -> int:
    """npair_margin_loss: gather saves the goodness (N, C) and its index (the label batch itself);
    masked_fill the bool mask (N, C); logsumexp its input (N, C+1) and result (N)."""
    n, c = _rows(tape, goodness), n_classes
    nc = n * c * 4
    return tape.op((goodness, labels), (1, 4, 1), saves=(goodness, labels),
                   new_saved=((n * c, 1, n), (n * (c + 1), 4, n), (n, 4, n)),
                   grads=(nc, 0), fwd_peak=n * (13 * c + 24), bwd_peak=n * (12 * c + 16))


def ff_goodness(tape: Tape, out: int) -> int:
    """mean of squares per row: pow saves its input; mean's backward allocates the input size."""
    n, s = _rows(tape, out), tape.nbytes(out)
    sq = tape.op((out,), _numel(tape, out), saves=(out,), grads=(s,), bwd_peak=3 * s)
    g = tape.op((sq,), (n, 4, n), grads=(s,))
    tape.drop(sq)
    return g


def ff_loss(tape: Tape, g: int) -> int:
    """softplus(theta - g+) and softplus(g- - theta): each softplus saves its (N,) input."""
    half = _rows(tape, g) // 2
    return tape.op((g,), (1, 4, 1), new_saved=((half, 4, half), (half, 4, half)),
                   grads=(tape.nbytes(g),), fwd_peak=8 * half * 4, bwd_peak=8 * half * 4)


def cross_entropy(tape: Tape, logits: int, labels: int) -> int:
    """log_softmax saves its result; nll_loss saves it, the target and a scalar total_weight."""
    lsm = tape.op((logits,), _numel(tape, logits), grads=(tape.nbytes(logits),), save_out=True)
    tape.drop(logits)
    loss = tape.op((lsm, labels), (1, 4, 1), saves=(lsm, labels), new_saved=((1, 4, 1),),
                   grads=(tape.nbytes(lsm), 0))
    tape.drop(lsm)
    return loss


def feature_norm(tape: Tape, x: int, groups: int) -> int:
    """DeeperForward's feature_norm outside any graph: mean and var (N, groups), x - mean,
    sqrt(var + eps) (var + eps freed after sqrt), then the quotient; returns it, x stays held."""
    n = _rows(tape, x)
    stats = [tape.new(n * groups, rows=n) for _ in range(2)]
    diff = tape.like(x)
    ve = tape.new(n * groups, rows=n)
    root = tape.new(n * groups, rows=n)
    tape.drop(ve)
    out = tape.like(x)
    for t in (diff, root, *stats):
        tape.drop(t)
    return out


def class_scores(tape: Tape, h: int, n_classes: int) -> int:
    """h.reshape(N, C, -1).mean(2): mean saves no tensor; its backward allocates the input size."""
    n = _rows(tape, h)
    return tape.op((h,), (n * n_classes, 4, n), grads=(tape.nbytes(h),))
