"""The chip view of training memory (accountant/chip.py) against the simulator's tally of a real
training step (accountant/chip_tally.py): exact for every method on MLPs, CNNs and ResNets, float32
(ideal analog arrays), fixed-point (digital arrays) and pulse-train arrays, gradients freed and
kept; the tally's own parts checked by hand; the tally does not change what a step computes; a
pulse-stepped array forms no weight gradient and trains as before."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from accountant.chip import CHIP_COMPONENTS, ChipBits, predict_chip
from accountant.chip_tally import tally
from accountant.memory import NumberFormat, spec_from_config
from experiments.memory_report import Point, chip_config, chip_rows

SETTINGS = {"seed": 0, "block_size": 2, "intff_block_size": 2, "checkpoint_every": 0, "steps": 2}
W8 = NumberFormat("w8", 8, 8, 32)
W8E16 = NumberFormat("w8e16", 8, 8, 16, error_bits=16)
PULSES = NumberFormat("pulses", pulse_update=True)  # constant-step devices taking aihwkit pulse trains


def _mlp(method, fmt="float32", grads="freed", opt="adam", batch=12):
    return Point(method, "mlp-30", batch, 3, fmt, opt, "mlp", width=30, grads=grads)


def _cnn(method, opt="adam"):
    return Point(method, "cnn", 6, 2, "float32", opt, "cnn", channels=(10, 20), pool=2)


def _resnet(method):
    return Point(method, "resnet", 4, 3, "float32", "momentum", "resnet", channels=(10, 10, 20), pool=2,
                 pool_every=2)


def _both(p: Point, fmt: NumberFormat):
    cfg = chip_config(p, SETTINGS, fmt)
    spec = replace(spec_from_config(cfg, batch=p.batch, method=p.method, input_shape=p.input_shape),
                   fmt=fmt, free_grads=p.grads == "freed")
    got = tally(cfg, p.method, p.batch, ChipBits.of(fmt, 10), 2, 0, p.input_shape, 10, 0, p.grads == "freed")
    return predict_chip(spec), got


POINTS = ([(_mlp(m), NumberFormat()) for m in ("df", "dfo", "ff", "deeperforward", "intff", "sff", "bp",
                                                 "bp_ckpt")]
          + [(_mlp(m, "w8", opt="momentum"), W8) for m in ("df", "ff", "intff", "bp", "bp_ckpt")]
          + [(_mlp(m, "w8e16", opt="sgd"), W8E16) for m in ("df", "dfo", "deeperforward", "sff", "bp")]
          + [(_mlp(m, grads="kept", opt="sgd"), NumberFormat()) for m in ("df", "ff", "bp")]
          + [(_cnn(m), NumberFormat()) for m in ("df", "dfo", "ff", "sff", "bp", "bp_ckpt")]
          + [(_cnn("deeperforward", "sgd"), NumberFormat())]
          + [(_resnet(m), NumberFormat()) for m in ("sff", "bp", "bp_ckpt")]
          # a large batch: autograd sums the centroids' two gradients out of place, a buffer no node
          # holds until it runs (seen by the tally's dispatch mode)
          + [(replace(_mlp(m), width=100, batch=512), NumberFormat()) for m in ("df", "dfo")]
          + [(Point("df", "cnn-16-p1", 32, 3, "float32", "adam", "cnn", channels=(16,), pool=1), NumberFormat())]
          # checkpointed segments: the gradient of a segment's detached input is an error, not a weight's
          + [(replace(_mlp("bp_ckpt"), width=100, batch=128, depth=6), NumberFormat())]
          # arrays updated directly by pulse trains under plain SGD: no weight-gradient accumulator;
          # under Adam they take writes and keep theirs
          + [(_mlp(m, "pulses", opt="sgd"), PULSES) for m in ("df", "dfo", "ff", "deeperforward", "intff", "sff",
                                                                 "bp", "bp_ckpt")]
          + [(replace(_cnn(m, "sgd"), format="pulses"), PULSES) for m in ("df", "sff", "bp")]
          + [(_mlp(m, "pulses", opt="sgd", grads="kept"), PULSES) for m in ("df", "bp")]
          + [(_mlp("bp", "pulses", opt="adam"), PULSES)])


@pytest.mark.parametrize("p, fmt", POINTS, ids=lambda v: f"{v.method}-{v.kind}-{v.format}-{v.grads}"
                         if isinstance(v, Point) else None)
def test_chip_view_matches_the_simulator_tally_exactly(p, fmt):
    pred, got = _both(p, fmt)
    assert got.peak_bits == pred.peak_bits > 0
    assert got.at_peak == pred.at_peak
    assert got.role_peak == pred.role_peak  # each component's own peak too
    assert (got.array_weights, got.array_devices) == (pred.array_weights, pred.array_devices)


def test_tally_parts_by_hand():
    """A 784-30-30-30 BP MLP with SGD, batch 12, on the ideal analog array: the inputs, arrays and
    digital parameters counted from the network's shape; SGD keeps no state."""
    p = _mlp("bp", opt="sgd")
    pred, got = _both(p, NumberFormat())
    weights = 784 * 30 + 30 * 30 * 2 + 30 * 10  # three layers and the head, all on arrays
    assert got.array_weights == weights and got.array_devices == 2 * weights  # conductance pairs
    assert got.at_peak["inputs"] == 12 * 784 * 32 + 12 * 4  # float32 batch, 4-bit labels (10 classes)
    assert got.at_peak["digital_params"] == (3 * 30 + 10) * 32 * 2  # a bias and a range per row
    assert got.at_peak["optimizer"] == 0
    # BP's peak: every weight gradient is live at the end of the backward pass
    assert got.at_peak["weight_grads"] == (weights + 3 * 30 + 10) * 32
    digital = _both(_mlp("bp", "w8", opt="sgd"), W8)[1]
    assert digital.array_devices == weights  # one 8-bit cell per weight
    assert digital.at_peak["inputs"] == 12 * 784 * 8 + 12 * 4


def test_widths_scale_their_roles():
    """error_bits scales the error vectors only, input_bits the activations and staged inputs,
    acc_bits the weight gradients; the chip view follows each (prediction = tally above)."""
    p = _mlp("df", "w8", opt="sgd")
    spec = replace(spec_from_config(chip_config(p, SETTINGS, W8), batch=12, method="df"), fmt=W8)
    base = predict_chip(spec)
    wide_err = predict_chip(replace(spec, fmt=replace(W8, error_bits=32)))
    assert wide_err.role_peak["errors"] == 4 * base.role_peak["errors"]
    assert wide_err.role_peak["activations"] == base.role_peak["activations"]
    acc16 = predict_chip(replace(spec, fmt=replace(W8, acc_bits=16)))
    assert 2 * acc16.role_peak["weight_grads"] == base.role_peak["weight_grads"]
    assert acc16.role_peak["errors"] == base.role_peak["errors"]
    a16 = predict_chip(replace(spec, fmt=replace(W8, input_bits=16, error_bits=8)))
    assert a16.at_peak["inputs"] == 12 * 784 * 16 + 12 * 4
    assert a16.role_peak["activations"] > base.role_peak["activations"]


def test_df_keeps_one_layer_of_activations_on_chip():
    """DF's layer-local schedule keeps one layer's saved tensors at a time: its activation peak does
    not grow with depth; BP keeps every layer's: each added hidden layer adds its ReLU output
    (batch x width at 32 bits) to BP's peak (tallied)."""
    peak = {(m, d): _both(replace(_mlp(m, opt="sgd"), depth=d), NumberFormat())[1].role_peak["activations"]
            for m in ("df", "bp") for d in (3, 6)}
    assert peak[("df", 3)] == peak[("df", 6)]
    assert peak[("bp", 6)] - peak[("bp", 3)] == 3 * 12 * 30 * 32


def test_the_tally_changes_nothing_a_step_computes():
    """Same weights after a step with and without the tally (its hooks hold no tensor: autograd
    frees and steals gradients as without it)."""
    from accountant.chip_tally import ChipTally
    from accountant.measure import build_memory_learner
    p = _cnn("bp")
    cfg = chip_config(p, SETTINGS, NumberFormat())
    out = []
    for with_tally in (False, True):
        gen = torch.Generator().manual_seed(3)
        learner = build_memory_learner(cfg, "bp", (1, 28, 28), 10, gen)
        x, y = torch.randn(6, 1, 28, 28, generator=gen), torch.randint(0, 10, (6,), generator=gen)
        if with_tally:
            with ChipTally(learner, x, y, ChipBits.of(NumberFormat(), 10)):
                learner.train_step(x, y)
        else:
            learner.train_step(x, y)
        out.append([q.detach().clone() for q in learner.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*out))


def test_chip_rows_are_all_exact():
    rows = chip_rows(_mlp("dfo", "w8", opt="momentum"), SETTINGS, W8)
    assert [r["component"] for r in rows] == [*CHIP_COMPONENTS, "activations_max", "errors_max", "weight_grads_max",
                                              "peak", "array_weights", "array_devices"]
    assert all(r["exact"] and r["rel_error"] == 0.0 for r in rows)


def test_pulse_stepped_arrays_form_no_weight_gradient():
    """Plain SGD on pulse-train arrays: the step is the pulse-train update of (x, d), so backward
    leaves weight.grad None (biases keep theirs) and the chip view has no weight-gradient
    accumulator for the matrices; the weights after three steps are those of the same run with
    dW formed (SGD's move of the Parameter is overwritten by what the devices hold)."""
    from accountant.measure import build_memory_learner
    from hw_models.torch_layers import AnalogLinear
    p = _mlp("bp", "pulses", opt="sgd")
    cfg = chip_config(p, SETTINGS, PULSES)
    runs = []
    for formed in (False, True):
        gen = torch.Generator().manual_seed(5)
        learner = build_memory_learner(cfg, "bp", (1, 28, 28), 10, gen, free_grads=False)
        if formed:
            for m in learner.analog_modules:
                m.pulse_stepped = lambda: False
        x, y = torch.randn(12, 1, 28, 28, generator=gen), torch.randint(0, 10, (12,), generator=gen)
        for _ in range(3):
            learner.train_step(x, y)
        mods = [m for m in learner.modules() if isinstance(m, AnalogLinear)]
        assert all((m.weight.grad is None) != formed and m.bias.grad is not None for m in mods)
        runs.append([q.detach().clone() for q in learner.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*runs))
    pred = predict_chip(replace(spec_from_config(cfg, batch=12, method="bp"), fmt=PULSES))
    assert pred.role_peak["weight_grads"] == (3 * 30 + 10) * 32  # biases only
