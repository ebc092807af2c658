"""Memory accountant: analytic training-memory model of DF (local and DF-O), FF, DeeperForward,
IntFF, Scalable FF, BP and BP with activation checkpointing, per architecture (MLP, CNN, ResNet),
number format, optimizer and batch size.

`predict(spec)` replays one steady-state training step (grads and optimizer state from the
previous step alive) on the symbolic tape with the layer tables of accountant/layers.py,
following the learners' real update schedules (accountant/schedules.py after
onchip_ff/methods/*.py; BP with checkpointing as accountant/measure.CheckpointedBackprop),
and returns the components and the peak.

Components (bytes): weights (float32 parameters and buffers; with hardware.weight_bits the layer
matrices as integer codes of FixedPointFormat(weight_bits).dtype plus one float32 scale per
output, biases/centroids/batch-norm float32), master_copy (float32 copy of those matrices kept
next to the codes, 0 for float32), optimizer (SGD 0, momentum 1x, Adam 2x parameters + a float32
step per tensor), gradients (float32 .grad held between steps: none as the learners run —
they free every optimizer's gradients after its step, so a layer-local learner holds one block's
at a time, inside the step — all parameters with free_grads False, the learners' old way), inputs (the data batch and labels), activations (peak of live
saved-for-backward bytes; with hardware.input_bits every saved float activation is stored as
codes of FixedPointFormat(input_bits).dtype plus one float32 scale per row), workspace
(everything else live at the peak: outputs not saved, activation gradients, kernel and optimizer
temporaries, accumulators of acc_bits per MVM output; peak minus the other components).
"""

from __future__ import annotations

import math
from typing import Callable
from dataclasses import dataclass, field, replace

from accountant.layers import Ctx, LayerSpec, cnn_layers, mlp_layers, resnet_layers  # noqa: F401
from accountant.schedules import SCHEDULES
from accountant.sff import head_spec
from accountant.tape import ChipLedger, Tape
from common.errors import ConfigError
from onchip_ff import methods

# the registered methods whose schedule the accountant models (Method.memory), each followed by its
# study variants: DF-O (DF with objective.block_size > 1) and BP with activation checkpointing
VARIANTS = {"df": ("dfo",), "bp": ("bp_ckpt",)}
METHODS = tuple(v for name in methods.names() if methods.get(name).memory for v in (name, *VARIANTS.get(name, ())))
# float32 state tensors per parameter of each optimizer (Adam and AdamW also keep a step count);
# AdamW keeps Adam's state and applies its weight decay to the parameter in place
STATE_TENSORS = {"sgd": 0, "momentum": 1, "adam": 2, "adamw": 2}
OPTIMIZERS = tuple(STATE_TENSORS)
COMPONENTS = ("weights", "master_copy", "optimizer", "inputs", "activations", "gradients", "workspace")


@dataclass(frozen=True)
class NumberFormat:
    """float32 (weight_bits = 0) or a fixed-point MAC array: weight/activation codes and
    accumulator width, as hardware.weight_bits / input_bits / acc_bits.  error_bits: the width of
    stored error vectors in the chip view (accountant/chip.py; 0 = as the activations).
    pulse_update: analog arrays whose devices take aihwkit pulse trains; stepped by plain SGD they
    are updated directly (no weight-gradient accumulator in the chip view; the PyTorch view is
    float32's)."""

    name: str = "float32"
    weight_bits: int = 0
    input_bits: int = 0
    acc_bits: int = 32
    error_bits: int = 0
    pulse_update: bool = False  # chip view: analog arrays stepped by plain SGD take pulse trains

    def __post_init__(self) -> None:
        for key in ("weight_bits", "input_bits"):
            bits = getattr(self, key)
            if bits and not 2 <= bits <= 16:
                raise ConfigError(f"memory format {self.name!r}: {key} must be 0 or 2..16, got {bits}")
        if self.acc_bits not in (16, 32, 64):
            raise ConfigError(f"memory format {self.name!r}: acc_bits must be 16, 32 or 64, "
                              f"got {self.acc_bits}")
        if self.error_bits and not 2 <= self.error_bits <= 32:
            raise ConfigError(f"memory format {self.name!r}: error_bits must be 0 (as the activations) "
                              f"or 2..32, got {self.error_bits}")
        if self.pulse_update and self.weight_bits:
            raise ConfigError(f"memory format {self.name!r}: pulse_update is for analog arrays "
                              "(weight_bits = 0)")
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
    feature_groups: int = 1  # DeeperForward: feature_norm groups (objective.feature_norm "group" = n_classes)
    intff_blocks: tuple[int, ...] = ()  # IntFF: layers per block, summing to the depth; () = 1 each
    # True (the learners, onchip_ff/methods/local_update.py): .grad freed right after each optimizer
    # step (one block's gradients at a time); False: every .grad survives to the next step (the
    # learners before issue 20; optimizer.keep_grads)
    free_grads: bool = True
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
        if self.method == "intff" and (any(layer.kind != "dense" for layer in self.layers)
                                       or sum(self.blocks) != self.depth or min(self.blocks) < 1):
            raise ConfigError(f"memory: intff needs an MLP and intff_blocks (layers per block, each "
                              f">= 1) summing to its {self.depth} layers, got {list(self.intff_blocks)}")
        if self.method == "deeperforward" and any(
                (layer.out_shape[0] % self.n_classes or layer.out_shape[0] % self.feature_groups)
                for layer in self.layers):
            raise ConfigError(f"memory: deeperforward splits every layer into {self.n_classes} class "
                              "groups; each layer width (channels) must be a multiple of n_classes "
                              "and of feature_groups")

    @property
    def depth(self) -> int:
        return len(self.layers)

    @property
    def adam_family(self) -> bool:
        """Adam or AdamW: two state tensors per parameter and a step count, the denominator temporaries."""
        return self.optimizer in ("adam", "adamw")

    @property
    def blocks(self) -> tuple[int, ...]:
        """IntFF layers per block."""
        return tuple(self.intff_blocks) or (1,) * self.depth

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
    schedule: tuple[tuple[str, int], ...] = ()  # ("forward", layer) and ("step", optimizer) as replayed


def default_ctx(device: str = "cpu") -> Ctx:
    """oneDNN pads conv channels to 16 on AVX-512 machines, to 8 otherwise; the torch threads now."""
    if device != "cpu":
        return Ctx(device=device, conv_block=0)
    import torch
    cap = torch.backends.cpu.get_cpu_capability()
    return Ctx(device="cpu", conv_block=16 if "512" in cap else 8, threads=torch.get_num_threads())


def spec_from_config(cfg, batch: int | None = None, method: str | None = None,
                     input_shape: tuple[int, ...] = (1, 28, 28), n_classes: int = 10,
                     checkpoint_every: int = 0, device: str = "cpu") -> MemorySpec:
    """The MemorySpec of a resolved onchip_ff Config (method "dfo" when objective.block_size > 1;
    the fixed-point format when hardware.backend = "sim" on a digital array).  The published
    DeeperForward layer options (ModelConfig.layer_options, the initialization aside) and
    objective.eval_range = "validation" are ConfigErrors: not modelled."""
    obj, m = cfg.objective, cfg.model
    if getattr(obj, "negatives", "random") != "random":
        raise ConfigError("the memory accountant models objective.negatives = 'random' only "
                          f"(got {obj.negatives!r}: hard negatives add an inference pass per class)")
    unmodelled = [k for k in m.layer_options() if k != "model.init"]  # the initialization takes no memory
    if unmodelled:
        raise ConfigError(f"the memory accountant models plain stacks (max-pool after the layer, stride 1, one "
                          f"kernel size, biases, no drop-out or shortcuts); this config sets {', '.join(unmodelled)}")
    if getattr(obj, "eval_range", "fixed") != "fixed":
        raise ConfigError("the memory accountant models objective.eval_range = 'fixed' (a range chosen on "
                          "validation adds a buffer of one flag per layer and a validation pass it does not count)")
    if m.arch == "mlp":
        layers = mlp_layers(input_shape, m.hidden)
    else:
        build = resnet_layers if m.arch == "resnet" else cnn_layers
        layers = build(input_shape, m.channels, m.kernel_size, m.pool, pool_every=m.pool_every)
    dev = cfg.hardware.device
    fmt = NumberFormat()
    if cfg.hardware.backend == "sim" and dev.digital:
        fmt = NumberFormat(f"w{dev.weight_bits}a{dev.input_bits}acc{dev.acc_bits}", dev.weight_bits,
                           dev.input_bits, dev.acc_bits)
    block_size = getattr(obj, "block_size", 1)  # the keys of the methods that have them (onchip_ff/methods/)
    if method is None:
        method = "dfo" if obj.method == "df" and block_size > 1 else obj.method
    if method not in METHODS:
        raise ConfigError(f"the memory accountant has no schedule of objective.method = {obj.method!r} "
                          f"(it models {', '.join(METHODS)})")
    return MemorySpec(layers, tuple(input_shape), n_classes, method, batch or cfg.train.batch_size,
                      cfg.train.optimizer, cfg.train.weight_decay, block_size=block_size,
                      checkpoint_every=checkpoint_every, centroids=getattr(obj, "centroids", "learnable"),
                      accumulate_goodness=getattr(obj, "accumulate_goodness", False),
                      feature_groups=n_classes if getattr(obj, "feature_norm", "layer") == "group" else 1,
                      intff_blocks=tuple(getattr(obj, "intff_blocks", ())), fmt=fmt, ctx=default_ctx(device))


# -- persistent state ---------------------------------------------------------------------------
@dataclass
class _Net:
    layer_params: list[list[int]]
    running: list[int | None]
    head_params: list[list[int]]  # DF: centroids per block; SFF: [weight, bias] per block; BP: one
    x: int
    y: int
    static: dict[str, int]
    # every parameter and state as _setup made it: (numel, rows, is_matrix, learnable); the chip
    # view (accountant/chip.py) places matrices in arrays and the rest in digital buffers
    params: list[tuple[int, int, bool, bool]] = field(default_factory=list)
    buffer_bytes: int = 0  # batch-norm running statistics


def _setup(tape: Tape, spec: MemorySpec) -> _Net:
    """Allocate weights (+ codes), buffers, optimizer state, steady-state grads and the batch."""
    fmt, n = spec.fmt, spec.batch
    static = dict.fromkeys(COMPONENTS, 0)
    trainable: list[tuple[int, int, bool]] = []
    made: list[tuple[int, int, bool, bool]] = []

    def param(numel: int, rows: int, matrix: bool, learn: bool = True) -> int:
        pid = tape.new(numel, kind="param" if learn else "state", requires_grad=learn)
        made.append((numel, rows, matrix, learn))
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
    elif spec.method == "sff":
        heads = [[param(*p) for p in head_spec(layer, c).params()] for layer in spec.layers]
    elif spec.method in ("bp", "bp_ckpt"):
        d = math.prod(spec.layers[-1].out_shape)
        heads = [[param(c * d, c, True), param(c, c, False)]]
    else:
        heads = []
    per = STATE_TENSORS[spec.optimizer]
    for pid, numel, _ in trainable:
        state = per * numel * 4 + (4 if spec.adam_family else 0)  # Adam(W): exp_avg, exp_avg_sq and the step count
        if state:
            tape.new(state, 1, kind="state")
        static["optimizer"] += state
        static["gradients"] += 0 if spec.free_grads else numel * 4
    if not spec.free_grads:
        tape.ensure_grads([pid for pid, _, matrix in trainable if not (matrix and spec.ctx.direct_update)])
    x = tape.new(n * math.prod(spec.input_shape), rows=n, kind="input")
    y = tape.new(n, 8, rows=n, kind="input")
    static["inputs"] = tape.nbytes(x) + tape.nbytes(y)
    buffers = sum(layer.buffer_bytes() for layer in spec.layers)
    return _Net(layer_params, running, heads, x, y, static, made, buffers)


def replay(spec: MemorySpec, chip: ChipLedger | None = None,
           static: Callable[[_Net], int] | None = None) -> tuple[Tape, _Net, MemorySpec]:
    """One steady-state training step of `spec` on a fresh tape; returns the tape, the network's
    persistent state and the spec as replayed.  With a ChipLedger the tape keeps the chip view
    too, `static(net)` giving the bits that stay live all step."""
    fmt = spec.fmt
    pack = (NumberFormat.itemsize(fmt.input_bits), 4) if fmt.input_bits else None
    spec = replace(spec, ctx=replace(spec.ctx, acc_bytes=fmt.acc_bytes))
    tape = Tape(pack=pack, chip=chip)
    net = _setup(tape, spec)
    tape.peak = tape.cur
    if chip is not None:
        chip.begin(static(net) if static else 0)
    SCHEDULES[spec.method](tape, spec, net)
    return tape, net, spec


def predict(spec: MemorySpec) -> Prediction:
    """Components and peak of one steady-state training step of `spec`."""
    tape, net, spec = replay(spec)
    comps = dict(net.static)
    comps["activations"] = tape.saved_peak
    comps["workspace"] = tape.peak - sum(v for k, v in comps.items() if k != "workspace")
    return Prediction(comps, tape.peak, tape.peak_phase, tuple(tape.events))
