"""Memory accountant: analytic training-memory model of DF (local and DF-O), FF, BP and BP with
activation checkpointing, per architecture, number format, optimizer and batch size.

`predict(spec)` replays one steady-state training step (grads and optimizer state from the
previous step alive) on the symbolic tape with the layer tables of hw_models/memory_layers.py,
following the learners' real update schedules (onchip_ff/reference/*.py; BP with checkpointing
as hw_models/memory_measure.CheckpointedBackprop), and returns the components and the peak.

Components (bytes): weights (float32 parameters and buffers; with hardware.weight_bits the layer
matrices as integer codes of FixedPointFormat(weight_bits).dtype plus one float32 scale per
output, biases/centroids/batch-norm float32), master_copy (float32 copy of those matrices kept
next to the codes, 0 for float32), optimizer (SGD 0, momentum 1x, Adam 2x parameters + a float32
step per tensor), gradients (float32 .grad held between steps: all parameters as the learners
run, none with free_grads), inputs (the data batch and labels), activations (peak of live
saved-for-backward bytes; with hardware.input_bits every saved float activation is stored as
codes of FixedPointFormat(input_bits).dtype plus one float32 scale per row), workspace
(everything else live at the peak: outputs not saved, activation gradients, kernel and optimizer
temporaries, accumulators of acc_bits per MVM output; peak minus the other components).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from hw_models import memory_layers as ml
from hw_models.memory_layers import Ctx, LayerSpec, cnn_layers, mlp_layers  # noqa: F401 (re-export)
from hw_models.memory_tape import PASS, Node, Tape
from onchip_ff.errors import ConfigError

METHODS = ("df", "dfo", "ff", "bp", "bp_ckpt")
OPTIMIZERS = ("sgd", "momentum", "adam")
COMPONENTS = ("weights", "master_copy", "optimizer", "inputs", "activations", "gradients", "workspace")


@dataclass(frozen=True)
class NumberFormat:
    """float32 (weight_bits = 0) or a fixed-point MAC array: weight/activation codes and
    accumulator width, as hardware.weight_bits / input_bits / acc_bits."""

    name: str = "float32"
    weight_bits: int = 0
    input_bits: int = 0
    acc_bits: int = 32

    def __post_init__(self) -> None:
        for key in ("weight_bits", "input_bits"):
            bits = getattr(self, key)
            if bits and not 2 <= bits <= 16:
                raise ConfigError(f"memory format {self.name!r}: {key} must be 0 or 2..16, got {bits}")
        if self.acc_bits not in (16, 32, 64):
            raise ConfigError(f"memory format {self.name!r}: acc_bits must be 16, 32 or 64, "
                              f"got {self.acc_bits}")
        if self.input_bits and not self.weight_bits:
            raise ConfigError(f"memory format {self.name!r}: input_bits needs weight_bits > 0")

    @staticmethod
    def itemsize(bits: int) -> int:
        """Bytes per code: the storage dtype of hw_models.formats.FixedPointFormat(bits)."""
        from hw_models.formats import FixedPointFormat
        return FixedPointFormat(bits).dtype.itemsize

    @property
    def acc_bytes(self) -> int:
        return self.acc_bits // 8 if self.weight_bits else 0


@dataclass(frozen=True)
class MemorySpec:
    layers: tuple[LayerSpec, ...]
    input_shape: tuple[int, ...] = (1, 28, 28)
    n_classes: int = 10
    method: str = "df"
    batch: int = 128
    optimizer: str = "adam"
    weight_decay: float = 0.0
    block_size: int = 2  # DF-O: layers per block ("df" always uses 1)
    checkpoint_every: int = 0  # bp_ckpt: layers per checkpointed segment; 0 = round(sqrt(depth))
    centroids: str = "learnable"  # DF: "learnable" (parameters) or "ema" (buffers)
    accumulate_goodness: bool = False  # DF-R
    # False: the learners' zero_grad(set_to_none) before backward, so every .grad survives to the
    # next step; True: .grad freed right after each optimizer step (one block's gradients at a time)
    free_grads: bool = False
    fmt: NumberFormat = field(default_factory=NumberFormat)
    ctx: Ctx = field(default_factory=Ctx)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"memory method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"memory optimizer must be one of {', '.join(OPTIMIZERS)}, "
                              f"got {self.optimizer!r}")
        if self.batch < 1 or not self.layers:
            raise ConfigError("memory: batch must be >= 1 and the network needs at least one layer")
        if self.block_size < 1 or self.checkpoint_every < 0:
            raise ConfigError("memory: block_size must be >= 1 and checkpoint_every >= 0 (0 = sqrt(depth))")

    @property
    def depth(self) -> int:
        return len(self.layers)

    @property
    def segment(self) -> int:
        return checkpoint_segment(self.depth, self.checkpoint_every)


def checkpoint_segment(depth: int, every: int) -> int:
    """Layers per checkpointed segment: `every`, or round(sqrt(depth)) when every = 0."""
    return every if every > 0 else max(1, round(math.sqrt(depth)))


@dataclass(frozen=True)
class Prediction:
    components: dict[str, int]
    peak_bytes: int
    peak_phase: str  # where in the step the peak falls, e.g. "block 0 backward"


def default_ctx(device: str = "cpu") -> Ctx:
    """oneDNN pads conv channels to 16 on AVX-512 machines, to 8 otherwise."""
    if device != "cpu":
        return Ctx(device=device, conv_block=0)
    import torch
    cap = torch.backends.cpu.get_cpu_capability()
    return Ctx(device="cpu", conv_block=16 if "512" in cap else 8)


def spec_from_config(cfg, batch: int | None = None, method: str | None = None,
                     input_shape: tuple[int, ...] = (1, 28, 28), n_classes: int = 10,
                     checkpoint_every: int = 0, device: str = "cpu") -> MemorySpec:
    """The MemorySpec of a resolved onchip_ff Config (method "dfo" when objective.block_size > 1;
    the fixed-point format when hardware.backend = "sim" on a digital array)."""
    obj, m = cfg.objective, cfg.model
    if obj.method == "ff" and obj.negatives != "random":
        raise ConfigError("the memory accountant models objective.negatives = 'random' only "
                          f"(got {obj.negatives!r}: hard negatives add an inference pass per class)")
    layers = (mlp_layers(input_shape, m.hidden) if m.arch == "mlp"
              else cnn_layers(input_shape, m.channels, m.kernel_size, m.pool))
    dev = cfg.hardware.device
    fmt = NumberFormat()
    if cfg.hardware.backend == "sim" and dev.digital:
        fmt = NumberFormat(f"w{dev.weight_bits}a{dev.input_bits}acc{dev.acc_bits}", dev.weight_bits,
                           dev.input_bits, dev.acc_bits)
    if method is None:
        method = "dfo" if obj.method == "df" and obj.block_size > 1 else obj.method
    return MemorySpec(layers, tuple(input_shape), n_classes, method, batch or cfg.train.batch_size,
                      cfg.train.optimizer, cfg.train.weight_decay, block_size=obj.block_size,
                      checkpoint_every=checkpoint_every, centroids=obj.centroids,
                      accumulate_goodness=obj.accumulate_goodness, fmt=fmt, ctx=default_ctx(device))


# -- persistent state ---------------------------------------------------------------------------
@dataclass
class _Net:
    layer_params: list[list[int]]
    running: list[int | None]
    head_params: list[list[int]]  # DF: centroids per block; BP: [weight, bias]
    x: int
    y: int
    static: dict[str, int]


def _setup(tape: Tape, spec: MemorySpec) -> _Net:
    """Allocate weights (+ codes), buffers, optimizer state, steady-state grads and the batch."""
    fmt, n = spec.fmt, spec.batch
    static = dict.fromkeys(COMPONENTS, 0)
    trainable: list[tuple[int, int, bool]] = []

    def param(numel: int, rows: int, matrix: bool, learn: bool = True) -> int:
        pid = tape.new(numel, kind="param" if learn else "state", requires_grad=learn)
        if matrix and fmt.weight_bits:
            tape.new(numel * NumberFormat.itemsize(fmt.weight_bits) + rows * 4, 1, kind="state")
            static["weights"] += numel * NumberFormat.itemsize(fmt.weight_bits) + rows * 4
            static["master_copy"] += numel * 4
        else:
            static["weights"] += numel * 4
        if learn:
            trainable.append((pid, numel, matrix))
        return pid

    layer_params, running = [], []
    for layer in spec.layers:
        layer_params.append([param(numel, rows, mat) for numel, rows, mat in layer.params()])
        buf = layer.buffer_bytes()
        running.append(tape.new(buf, 1, kind="state") if buf else None)
        static["weights"] += buf
    c = spec.n_classes
    if spec.method in ("df", "dfo"):
        bsize = 1 if spec.method == "df" else spec.block_size
        ends = [min(i + bsize, spec.depth) - 1 for i in range(0, spec.depth, bsize)]
        heads = [[param(c * math.prod(spec.layers[e].out_shape), c, False, spec.centroids == "learnable")]
                 for e in ends]
    elif spec.method in ("bp", "bp_ckpt"):
        d = math.prod(spec.layers[-1].out_shape)
        heads = [[param(c * d, c, True), param(c, c, False)]]
    else:
        heads = []
    per = {"sgd": 0, "momentum": 1, "adam": 2}[spec.optimizer]
    for pid, numel, _ in trainable:
        state = per * numel * 4 + (4 if spec.optimizer == "adam" else 0)
        if state:
            tape.new(state, 1, kind="state")
        static["optimizer"] += state
        static["gradients"] += 0 if spec.free_grads else numel * 4
    if not spec.free_grads:
        tape.ensure_grads([pid for pid, _, _ in trainable])
    x = tape.new(n * math.prod(spec.input_shape), rows=n, kind="input")
    y = tape.new(n, 8, rows=n, kind="input")
    static["inputs"] = tape.nbytes(x) + tape.nbytes(y)
    return _Net(layer_params, running, heads, x, y, static)


def _optimizer_step(tape: Tape, spec: MemorySpec, groups: list[list[int]]) -> None:
    """CPU single-tensor optimizers, one parameter group after the other: Adam holds the
    previous parameter's denominator while it computes sqrt and the division for the next;
    weight decay adds one parameter-sized copy.  CUDA (foreach): one temporary per parameter of
    the group at once."""
    wd = 1 if spec.weight_decay else 0
    adam = spec.optimizer == "adam"
    extra = 0
    for params in groups:
        sizes = [tape.nbytes(p) for p in params]
        if spec.ctx.device == "cpu":
            extra = max([extra] + [s * wd + (2 * s + prev if adam else 0)
                                   for prev, s in zip([0] + sizes, sizes)])
        else:
            extra = max(extra, sum(sizes) * (wd + (1 if adam else 0)))
    tape.spike(extra)


def _train(tape: Tape, spec: MemorySpec, groups: list[list[int]], loss: int, phase: str) -> None:
    """zero_grad(set_to_none) -> backward -> optimizer step, as every learner does."""
    tape.zero_grad([p for g in groups for p in g])
    tape.phase = f"{phase} backward"
    tape.backward(loss)
    tape.drop(loss)
    tape.phase = f"{phase} optimizer step"
    _optimizer_step(tape, spec, groups)
    if spec.free_grads:
        tape.zero_grad([p for g in groups for p in g])


# -- schedules ----------------------------------------------------------------------------------
def _df(tape: Tape, spec: MemorySpec, net: _Net) -> None:
    """DistanceForward.train_step: block by block, the detached normalized output feeds the next."""
    bsize = 1 if spec.method == "df" else spec.block_size
    blocks = [list(range(i, min(i + bsize, spec.depth))) for i in range(0, spec.depth, bsize)]
    x, prev_good = net.x, None
    for k, block in enumerate(blocks):
        tape.phase = f"block {k} forward"
        cur, h_hat = x, None
        for pos, i in enumerate(block):
            out = ml.layer_forward(tape, spec.ctx, spec.layers[i], cur, net.layer_params[i], net.running[i])
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
    for i, layer in enumerate(spec.layers):
        tape.phase = f"layer {i} forward"
        new_out = ml.layer_forward(tape, spec.ctx, layer, h, net.layer_params[i], net.running[i])
        tape.drop(out)
        out = new_out
        g = ml.ff_goodness(tape, out)
        loss = ml.ff_loss(tape, g)
        tape.drop(g)
        _train(tape, spec, [net.layer_params[i]], loss, f"layer {i}")
        tape.phase = f"layer {i} next input"
        norm, denom = tape.new(2 * n, rows=2 * n), tape.new(2 * n, rows=2 * n)
        tape.drop(norm)
        unit = tape.like(out)
        tape.drop(denom)
        nxt = tape.like(out)
        tape.drop(unit)
        tape.drop(h)
        h = nxt
    tape.drop(h)
    tape.drop(out)


def _segment(tape: Tape, spec: MemorySpec, net: _Net, layers: list[int], x: int) -> int:
    h = x
    for i in layers:
        out = ml.layer_forward(tape, spec.ctx, spec.layers[i], h, net.layer_params[i], net.running[i])
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
                     grads=(tape.nbytes(h), tape.nbytes(w), tape.nbytes(b)))
    tape.drop(h)
    loss = ml.cross_entropy(tape, logits, net.y)
    _train(tape, spec, [[p for ps in net.layer_params for p in ps] + net.head_params[0]], loss, "network")


SCHEDULES = {"df": _df, "dfo": _df, "ff": _ff, "bp": _bp, "bp_ckpt": _bp}


def predict(spec: MemorySpec) -> Prediction:
    """Components and peak of one steady-state training step of `spec`."""
    fmt = spec.fmt
    pack = (NumberFormat.itemsize(fmt.input_bits), 4) if fmt.input_bits else None
    ctx = replace(spec.ctx, acc_bytes=fmt.acc_bytes)
    spec = replace(spec, ctx=ctx)
    tape = Tape(pack=pack)
    net = _setup(tape, spec)
    tape.peak = tape.cur
    SCHEDULES[spec.method](tape, spec, net)
    comps = dict(net.static)
    comps["activations"] = tape.saved_peak
    comps["workspace"] = tape.peak - sum(v for k, v in comps.items() if k != "workspace")
    return Prediction(comps, tape.peak, tape.peak_phase)
