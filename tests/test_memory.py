"""Memory accountant against measurement: per-layer-type saved bytes vs saved_tensors_hooks,
components and peak vs torch.profiler, linear growth in batch with the predicted slope, a DF peak
that does not grow with depth while BP's does, checkpointed BP, fixed-point formats."""

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from accountant import layers as ml
from accountant.memory import (METHODS, SCHEDULES, MemorySpec, NumberFormat, _setup, cnn_layers,
                              mlp_layers, predict, resnet_layers, spec_from_config)
from accountant.layers import Ctx, LayerSpec
from accountant.measure import (CheckpointedBackprop, SavedBytesMeter, cuda_peak, measure,
                                      storage_bytes)
from accountant.tape import Tape
from onchip_ff import config
from onchip_ff.network import ConvLayer, DenseLayer, normalize
from onchip_ff.objectives.distance_forward import Centroids, npair_margin_loss
from onchip_ff.objectives.forward_forward import ff_goodness, ff_loss
from onchip_ff.methods.bp import Backprop

CTX = Ctx("cpu", 16)
CLASSIC = ("df", "dfo", "ff", "bp", "bp_ckpt")  # DeeperForward, IntFF: tests/test_memory_new_methods.py


def _measured_saved(fn, x, modules=(), extra_exclude=()):
    """Live saved bytes after fn(x) (forward only), excluding parameters, buffers and x; checks
    that the count drops to 0 once backward has run."""
    exclude = [x, *extra_exclude] + [t for m in modules for t in (*m.parameters(), *m.buffers())]
    with SavedBytesMeter(exclude) as meter:
        out = fn(x)
    saved = meter.peak
    out.float().sum().backward()
    del out
    assert meter.cur == 0, "saved tensors still counted after backward"
    return saved


def _tape(x_numel, rows, requires_grad):
    tape = Tape()
    return tape, tape.new(x_numel, rows=rows, kind="input", requires_grad=requires_grad)


def _params(tape, spec):
    return [tape.new(numel, kind="param", requires_grad=True) for numel, _, _ in spec.params()]


LAYER_CASES = [
    (LayerSpec("dense", (1, 6, 6), 20), False),
    (LayerSpec("dense", (24,), 16), True),
    (LayerSpec("dense", (24,), 16, batchnorm=True, dropout=0.3), True),
    (LayerSpec("conv", (1, 8, 8), 6, 3, 2), False),
    (LayerSpec("conv", (4, 8, 8), 6, 3, 1), True),
    (LayerSpec("conv", (3, 9, 9), 5, 3, 2, batchnorm=True, dropout=0.25), True),
]


def _module(spec):
    """The real layer the spec describes: onchip_ff's DenseLayer / ConvLayer, or the accountant's
    documented order Linear/Conv, BatchNorm, ReLU, [MaxPool], Dropout for the extended layers."""
    if not spec.batchnorm and not spec.dropout:
        if spec.kind == "dense":
            return DenseLayer(math.prod(spec.in_shape), spec.out)
        return ConvLayer(spec.in_shape[0], spec.out, spec.kernel, spec.pool)
    if spec.kind == "dense":
        mods = [nn.Flatten(), nn.Linear(math.prod(spec.in_shape), spec.out), nn.BatchNorm1d(spec.out), nn.ReLU()]
    else:
        mods = [nn.Conv2d(spec.in_shape[0], spec.out, spec.kernel, padding=spec.kernel // 2),
                nn.BatchNorm2d(spec.out), nn.ReLU(), nn.MaxPool2d(spec.pool)]
    return nn.Sequential(*mods, nn.Dropout(spec.dropout))


@pytest.mark.parametrize("spec, input_grad", LAYER_CASES)
@pytest.mark.parametrize("n", [2, 7])
def test_layer_saved_bytes_match_saved_tensors_hooks(spec, input_grad, n):
    module = _module(spec).train()
    x = torch.randn(n, *spec.in_shape, requires_grad=input_grad)
    measured = _measured_saved(module, x, [module])
    tape, tx = _tape(x.numel(), n, input_grad)
    running = tape.new(spec.buffer_bytes(), 1, kind="state") if spec.batchnorm else None
    ml.layer_forward(tape, CTX, spec, tx, _params(tape, spec), running)
    assert tape.saved_peak == measured > 0


@pytest.mark.parametrize("shape", [(5, 12), (3, 4, 6, 6)])
def test_batchnorm_and_dropout_tables(shape):
    n, c = shape[0], shape[1]
    bn = (nn.BatchNorm1d(c) if len(shape) == 2 else nn.BatchNorm2d(c)).train()
    x = torch.randn(shape, requires_grad=True)
    tape, tx = _tape(x.numel(), n, True)
    params = [tape.new(c, kind="param", requires_grad=True) for _ in range(2)]
    ml.batchnorm(tape, tx, c, params, tape.new(2 * c + 2, kind="state"))
    assert tape.saved_peak == _measured_saved(bn, x, [bn]) == 2 * c * 4  # input excluded, 2 stats
    drop = nn.Dropout(0.4).train()
    tape, tx = _tape(x.numel(), n, True)
    ml.dropout(tape, CTX, tx, 0.4)
    assert tape.saved_peak == _measured_saved(drop, x) == x.numel() * 4  # CPU: float32 noise
    assert ml.dropout(Tape(), CTX, 0, 0.0) == 0  # p = 0 is the identity


def test_loss_head_tables():
    n, d, c = 6, 20, 10
    y = torch.randint(0, c, (n,))
    for mode in ("learnable", "ema"):
        head = Centroids(d, c, mode, 0.9, torch.Generator().manual_seed(0))
        h = torch.randn(n, d, requires_grad=True)
        measured = _measured_saved(lambda t: npair_margin_loss(head.goodness(normalize(t)), y, 16.0, 0.2),
                                   h, [head], [y])
        tape, th = _tape(n * d, n, True)
        ty = tape.new(n, 8, rows=n, kind="input")
        raw = tape.new(c * d, kind="param" if mode == "learnable" else "state", requires_grad=mode == "learnable")
        ml.npair_loss(tape, ml.df_goodness(tape, ml.normalize(tape, th), raw, c), ty, c)
        assert tape.saved_peak == measured, mode
    out = torch.randn(2 * n, d, requires_grad=True)
    measured = _measured_saved(lambda t: (lambda g: ff_loss(g[:n], g[n:], 2.0))(ff_goodness(t)), out)
    tape, to = _tape(2 * n * d, 2 * n, True)
    ml.ff_loss(tape, ml.ff_goodness(tape, to))
    assert tape.saved_peak == measured == 2 * n * 4  # the softplus inputs (out itself excluded)
    lin = nn.Linear(d, c)
    measured = _measured_saved(lambda t: F.cross_entropy(lin(t), y), out[:n].detach().requires_grad_(), [lin], [y])
    tape, tx = _tape(n * d, n, True)
    ty = tape.new(n, 8, rows=n, kind="input")
    w, b = (tape.new(k, kind="param", requires_grad=True) for k in (c * d, c))
    logits = tape.op((tx, w, b), (n * c, 4, n), saves=(tx,), grads=(n * d * 4, c * d * 4, c * 4))
    ml.cross_entropy(tape, logits, ty)
    assert tape.saved_peak == measured


def _cfg(method, arch="mlp", depth=3, width=48, opt="sgd", extra=()):
    base = {"dfo": "df", "bp_ckpt": "bp"}.get(method, method)
    return config.load(None, [f"model.arch={arch}", f"model.hidden={[width] * depth}",
                              f"model.channels={[16, 16, 32][:depth]}", f"objective.method={base}",
                              f"objective.df.block_size={2 if method == 'dfo' else 1}",
                              f"train.optimizer={opt}", "train.threads=1", *extra])


def _compare(method, batch, every=2, **kw):
    cfg = _cfg(method, **kw)
    pred = predict(spec_from_config(cfg, batch=batch, method=method, checkpoint_every=every))
    meas = measure(cfg, method, batch, steps=2, checkpoint_every=every, with_cuda=False)
    return pred, meas


@pytest.mark.parametrize("method", CLASSIC)
@pytest.mark.parametrize("arch, opt", [("mlp", "adam"), ("cnn", "momentum"), ("mlp", "sgd")])
def test_components_and_peak_match_measurement(method, arch, opt):
    pred, meas = _compare(method, 24, arch=arch, opt=opt, depth=3 if arch == "mlp" else 2)
    for comp in ("weights", "optimizer", "inputs", "gradients"):
        assert pred.components[comp] == meas[comp], comp
    acts_grads = pred.components["activations"] + pred.components["gradients"]
    assert abs(acts_grads / (meas["activations"] + meas["gradients"]) - 1) <= 0.05
    assert pred.components["activations"] == meas["activations"]
    assert abs(pred.peak_bytes / meas["peak"] - 1) <= 0.05, (pred.peak_bytes, meas["peak"], pred.peak_phase)


def test_bytes_grow_linearly_in_batch_with_the_predicted_slope():
    """Within one peak phase the peak is linear in the batch (batches where the predicted peak
    falls in the same phase: with gradients freed after each step, FF's peak moves from layer 0's
    backward at batch 16 to the embedding from batch ~40 on, a max of two lines)."""
    batches = (40, 64, 88)
    for method in ("df", "ff", "bp"):
        preds, meas = zip(*(_compare(method, b, width=32) for b in batches))
        assert len({p.peak_phase for p in preds}) == 1, [p.peak_phase for p in preds]
        for key in ("activations", "peak"):
            m = [x[key] for x in meas]
            p = [x.peak_bytes if key == "peak" else x.components[key] for x in preds]
            slopes = [(m[i + 1] - m[i]) / (batches[i + 1] - batches[i]) for i in range(2)]
            predicted = (p[-1] - p[0]) / (batches[-1] - batches[0])
            assert slopes[0] > 0 and abs(slopes[1] / slopes[0] - 1) < 0.01, (method, key, slopes)
            assert abs(slopes[0] / predicted - 1) < 0.02, (method, key, slopes, predicted)


def _persistent(x):
    comps = x if isinstance(x, dict) else x.components
    return sum(comps[c] for c in ("weights", "optimizer", "gradients", "inputs"))


def test_df_peak_does_not_grow_with_depth_but_bp_peak_does():
    # depth >= 4: with gradients freed after each step BP's peak sits at the end of its backward,
    # where the first layer's 784 x 64 weight gradient is added; at depth 2 it falls before that
    depths = (4, 6, 8)
    transient = {}
    for method in ("df", "bp"):
        runs = [_compare(method, 256, depth=d, width=64) for d in depths]
        transient[method] = [m["peak"] - _persistent(m) for _, m in runs]
        assert [p.peak_bytes - _persistent(p) for p, _ in runs] == pytest.approx(transient[method], rel=0.01)
    assert max(transient["df"]) / min(transient["df"]) < 1.01  # one block's graph, whatever the depth
    bp = transient["bp"]
    assert 0 < bp[1] - bp[0] == bp[2] - bp[1]  # every layer adds its saved activations
    spec = MemorySpec(mlp_layers((1, 28, 28), (256,) * 3), method="df", batch=512, optimizer="sgd")
    over = {}
    for method in ("df", "bp"):
        over[method] = [predict(replace(spec, method=method, layers=mlp_layers((1, 28, 28), (256,) * d)))
                        for d in (3, 12, 24)]
        over[method] = [p.peak_bytes - _persistent(p) for p in over[method]]
    assert len(set(over["df"])) == 1 and over["bp"][0] < over["bp"][1] < over["bp"][2]
    assert over["bp"][2] > 2 * over["df"][2]


def test_checkpointed_bp_is_real_and_saves_activations():
    cfg = _cfg("bp", depth=6, width=40)
    x, y = torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,))
    plain = Backprop(cfg, (1, 28, 28), 10, torch.Generator().manual_seed(0))
    ckpt = CheckpointedBackprop(cfg, (1, 28, 28), 10, torch.Generator().manual_seed(0), every=2)
    plain.train_step(x, y)
    ckpt.train_step(x, y)
    for (name, a), b in zip(plain.named_parameters(), ckpt.parameters()):
        assert torch.allclose(a, b, atol=1e-6), name  # same update, first segment included
    pb, mb = _compare("bp", 256, depth=6, width=64)
    pc, mc = _compare("bp_ckpt", 256, depth=6, width=64)
    assert mc["activations"] < 0.7 * mb["activations"] and pc.components["activations"] == mc["activations"]
    p1, m1 = _compare("bp_ckpt", 256, every=1, depth=6, width=64)  # a dense layer saves only its
    assert m1["activations"] == mb["activations"] == p1.components["activations"]  # input and output


def test_fixed_point_formats_use_the_format_bit_widths():
    assert NumberFormat.itemsize(8) == 1 and NumberFormat.itemsize(12) == 2
    cfg = _cfg("df", extra=["hardware.backend=sim", "hardware.preset=fixed8"])
    spec = spec_from_config(cfg, batch=16)
    assert spec.fmt.weight_bits == 8 and spec.fmt.input_bits == 8
    pred = predict(spec)
    meas = measure(cfg, "df", 16, act_itemsize=1, with_cuda=False)
    for comp in ("weights", "master_copy", "optimizer", "gradients", "activations"):
        assert pred.components[comp] == meas[comp], comp
    assert meas["sim_cache"] == pred.components["master_copy"]
    f32 = predict(replace(spec, fmt=NumberFormat()))
    assert pred.components["weights"] < f32.components["weights"] / 3
    assert pred.components["activations"] < f32.components["activations"] / 2
    acc16 = predict(replace(spec, fmt=replace(spec.fmt, acc_bits=16)))
    assert acc16.peak_bytes <= pred.peak_bytes


_NETS = [mlp_layers((1, 8, 8), (16, 12, 8)), cnn_layers((3, 8, 8), (4, 8), batchnorm=True, dropout=0.2),
         resnet_layers((1, 8, 8), (4, 4, 8), pool_every=2)]


@pytest.mark.parametrize("method, layers", [(m, net) for m in METHODS for net in _NETS
                                            if m != "intff" or net[0].kind == "dense"])  # IntFF: MLPs only
def test_schedule_leaves_nothing_behind(method, layers):
    spec = MemorySpec(layers, (layers[0].in_shape), n_classes=4, method=method, batch=5, optimizer="adam",
                      accumulate_goodness=True, weight_decay=0.1, intff_blocks=(2, 1))
    tape = Tape()
    net = _setup(tape, spec)
    before = tape.cur
    SCHEDULES[method](tape, spec, net)
    assert tape.cur == before and tape.saved_live == 0 and not tape.grad and not tape.nodes
    assert tape.peak > before and tape.saved_peak > 0


def test_cuda_peak_is_skipped_without_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("GPU present: cuda_peak measures")
    assert cuda_peak(lambda device: None, 1) == (None, "no CUDA device")


def test_storage_bytes_counts_shared_storage_once():
    t = torch.zeros(10)
    assert storage_bytes([t, t[:5], t.view(2, 5), None]) == 40
