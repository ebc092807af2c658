"""Chip view of training memory: what a chip that trains in its arrays must hold during one
training step, next to the PyTorch view of accountant/memory.py.

The chip model.  Every layer matrix (Linear and Conv2d weights, class heads included) lives in a
crossbar array and is counted in devices, not bytes: an analog array holds a conductance pair per
weight (2 devices), a digital array one weight_bits-bit cell per weight.  Everything else is a
digital buffer, counted in bits:
- inputs: the staged data batch at the activation width, the labels at ceil(log2(classes)) bits;
- digital_params: biases, centroids, batch-norm parameters and buffers, and one float32 range or
  scale per array row (32 bits per element; buffers at their own width);
- optimizer: optimizer state at 32 bits (momentum 1x, Adam 2x the parameters + a step per tensor);
- activations: every tensor a layer keeps for its backward pass (what autograd saves), float
  tensors at the activation width (input_bits, 32 for float32), bool masks at 1 bit, integer
  pooling indices at 8 bits;
- errors: the error vectors of the backward pass (gradients of activations) at error_bits;
- weight_grads: weight-gradient accumulators (parameter gradients, from their computation to the
  optimizer step or, when kept, to the next step) at acc_bits; none for a matrix whose array is
  updated directly by pulse trains (format pulse_update under plain SGD): the pulses are made of
  the layer's saved input and its error vector, which are counted already.
Transients of the arithmetic units (products, partial sums, kernel workspaces) are not buffers.
The peak is the largest sum over the step, replayed on the accountant's tape with the learners'
update schedules; accountant/chip_tally.py measures the same quantity on a real simulator step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from accountant.memory import STATE_TENSORS, MemorySpec, NumberFormat, _Net, replay
from accountant.tape import CHIP_ROLES, ChipLedger

STATIC = ("inputs", "digital_params", "optimizer")
CHIP_COMPONENTS = STATIC + CHIP_ROLES
STATE_BITS = 32  # digital parameters, ranges and optimizer state
INDEX_BITS = 8  # a max-pool index within its window (windows up to 16 x 16)


@dataclass(frozen=True)
class ChipBits:
    """Bit widths of the chip's digital buffers for a number format."""

    act_bits: int  # saved activations and the staged input batch
    err_bits: int  # error vectors
    grad_bits: int  # weight-gradient accumulators
    label_bits: int
    analog: bool  # True: conductance pairs (2 devices per weight); False: digital weight cells

    @staticmethod
    def of(fmt: NumberFormat, n_classes: int) -> "ChipBits":
        act = fmt.input_bits or 32
        return ChipBits(act, fmt.error_bits or act, fmt.acc_bits, max(1, math.ceil(math.log2(n_classes))),
                        not fmt.weight_bits)

    def ledger(self) -> ChipLedger:
        return ChipLedger(self.act_bits, self.err_bits, self.grad_bits, INDEX_BITS)


@dataclass(frozen=True)
class ChipPrediction:
    """The chip view of one steady-state training step: bits per component at the peak, each
    component's own peak, the peak total, and the arrays."""

    at_peak: dict[str, int]
    role_peak: dict[str, int]
    peak_bits: int
    array_weights: int
    array_devices: int


def static_bits(spec: MemorySpec, net: _Net, bits: ChipBits) -> tuple[dict[str, int], int, int]:
    """Bits of the buffers live all step (inputs, digital_params, optimizer), the array weights and
    devices, from the parameters the accountant's setup made."""
    per_state = STATE_TENSORS[spec.optimizer]
    out = dict.fromkeys(STATIC, 0)
    weights = 0
    for numel, rows, matrix, learn in net.params:
        if matrix:
            weights += numel
            out["digital_params"] += rows * STATE_BITS
        else:
            out["digital_params"] += numel * STATE_BITS
        if learn:
            out["optimizer"] += per_state * numel * STATE_BITS + (STATE_BITS if spec.adam_family else 0)
    out["digital_params"] += net.buffer_bytes * 8
    out["inputs"] = spec.batch * math.prod(spec.input_shape) * bits.act_bits + spec.batch * bits.label_bits
    return out, weights, weights * (2 if bits.analog else 1)


def direct_update(spec: MemorySpec) -> bool:
    """Arrays updated directly by pulse trains: a pulse_update format stepped by plain SGD
    (hw_models/torch_layers.py AnalogLinear.pulse_stepped)."""
    return spec.fmt.pulse_update and spec.optimizer == "sgd" and not spec.weight_decay


def predict_chip(spec: MemorySpec) -> ChipPrediction:
    """The chip view of `spec` (its number format gives the widths)."""
    bits = ChipBits.of(spec.fmt, spec.n_classes)
    spec = replace(spec, ctx=replace(spec.ctx, direct_update=direct_update(spec)))
    ledger = bits.ledger()
    parts: dict[str, object] = {}

    def static(net: _Net) -> int:
        parts["static"], parts["weights"], parts["devices"] = static_bits(spec, net, bits)
        return sum(parts["static"].values())

    replay(spec, ledger, static)
    fixed = parts["static"]
    return ChipPrediction({**fixed, **{r: ledger.at_peak.get(r, 0) for r in CHIP_ROLES}},
                          {**fixed, **ledger.role_peak}, ledger.peak, parts["weights"], parts["devices"])
