"""The layer options of DeeperForward's published networks (model.kernel_sizes, strides,
pool_layers, pool_kind, pool_input, bias, init, dropout, shortcuts; objective.eval_range;
train.optimizer = "adamw", train.lr_min, lr_schedule = "cosine_epoch"; data.resize_px): each
against a plain re-statement of what the published code does (model/resnet.py, model/cwconv.py,
model/tinycnn.py of Sun et al.'s code, read not copied) or against torch's own implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from common.errors import ConfigError, DataError
from onchip_ff import config
from onchip_ff.data import load_dataset, resize, standardize
from onchip_ff.methods import build_learner
from onchip_ff.network import SeededDropout, build_layers, deeperforward_shortcuts, init_parameters, make_optimizer
from onchip_ff.trainer import set_learning_rates, train

from conftest import SYNTHETIC

# the 17-layer network's shape at a tenth of its width: stages of 10/20/40/80 channels, stride-2
# convs opening stages 2-4, as in the published ResNet (planes 100/200/400/800)
RESNET17 = ["model.arch=cnn", "model.channels=[10,10,10,10,10,20,20,20,20,40,40,40,40,80,80,80,80]",
            "model.strides=[1,1,1,1,1,2,1,1,1,2,1,1,1,2,1,1,1]", "model.pool=1", "model.bias=false",
            "model.init=kaiming_normal_fan_out", "model.shortcuts=deeperforward",
            "objective.method=deeperforward", "objective.feature_norm=group"]
SIDE16 = ["data.synthetic_side_px=16"]


def _learner(extra, seed=0):
    cfg = config.load(None, SYNTHETIC + SIDE16 + list(extra))
    data = load_dataset(cfg.data)
    learner = build_learner(cfg, data.input_shape, data.n_classes, torch.Generator().manual_seed(seed))
    return learner, data


# ---- shortcuts: the published forward pass, restated -----------------------------------------

NO, ADD, CONCAT = 0, 1, 2


def _published_flags(n):
    """The flag lists of the published Resnet.__init__ (for n = 17), written out for n layers."""
    keep, join, down = [True], [NO], [False]
    for i in range(1, n):
        pos = (i - 1) % 4
        keep.append(pos in (1, 3))
        join.append({1: ADD, 3: CONCAT}.get(pos, NO))
        down.append(pos == 3)
    keep[-1] = False
    return keep, join, down


def _published_scores(learner, x, start, end):
    """Resnet.forward of the published code with the learner's convolutions: layer-normalized
    input; per layer conv -> ReLU -> class score (block means) -> group norm; add / concat the kept
    shortcut; keep (2x2 average-pooled where the flag says) ; sum the scores of layers start..end."""
    keep, join, down = _published_flags(len(learner.layers))
    x = F.layer_norm(x, x.shape[1:])
    total, shortcut = 0.0, None
    for i, layer in enumerate(learner.layers):
        y = F.relu(layer.conv(x))
        g = y.view(y.shape[0], 10, -1).mean(2)
        if start <= i <= end:
            total = total + g
        x = F.group_norm(y, 10)
        if join[i] == ADD:
            x = x + shortcut
        elif join[i] == CONCAT:
            x = torch.cat([x, shortcut], 1)
        if keep[i]:
            shortcut = F.avg_pool2d(x, 2, stride=2) if down[i] else x
    return total


def test_shortcut_plan_is_the_published_flags_for_17_layers():
    keep, join, _ = _published_flags(17)
    plan = deeperforward_shortcuts(17)
    assert [s.keep for s in plan] == keep
    assert [{"": NO, "add": ADD, "concat": CONCAT}[s.join] for s in plan] == join
    # the published lists, typed out: adds at 2, 6, 10, 14; concatenations at 4, 8, 12, 16
    assert [i for i, s in enumerate(plan) if s.join == "add"] == [2, 6, 10, 14]
    assert [i for i, s in enumerate(plan) if s.join == "concat"] == [4, 8, 12, 16]


@pytest.mark.jitfree
def test_resnet17_scores_equal_the_published_forward_pass():
    learner, data = _learner(RESNET17 + ["objective.eval_layers=[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]"])
    learner.eval()
    x = torch.from_numpy(data.x_test[:20])
    # in channels: concatenations double the input of the layers after them (5, 9, 13)
    assert [layer.conv.in_channels for layer in learner.layers][4:14:4] == [10, 20, 40]
    assert [layer.conv.in_channels for layer in learner.layers][5:14:4] == [20, 40, 80]
    assert all(layer.conv.bias is None for layer in learner.layers)
    assert torch.allclose(learner.scores(x), _published_scores(learner, x, 1, 16), atol=1e-5, rtol=1e-5)


def test_shortcut_channel_mismatch_and_other_methods_are_config_errors():
    with pytest.raises(ConfigError, match=r"adds a kept shortcut of 10 channels.*model.channels\[2\] = 10"):
        _learner([c if not c.startswith("model.channels") else
                  "model.channels=[10,10,20,10,10,20,20,20,20,40,40,40,40,80,80,80,80]" for c in RESNET17])
    with pytest.raises(ConfigError, match="model.shortcuts = 'deeperforward' is implemented for objective.method = "
                                          "'deeperforward' only, got 'df'"):
        _learner([c for c in RESNET17 if not c.startswith("objective")] + ["objective.method=df"])
    with pytest.raises(ConfigError, match="model.strides applies to model.arch = 'cnn' only"):
        config.load(None, ["model.arch=mlp", "model.strides=[1,1,1]"])
    with pytest.raises(ConfigError, match="model.strides"):
        config.load(None, ["model.arch=cnn", "model.channels=[10,20]", "model.strides=[1]"])
    from onchip_ff.pipeline import check_pipeline
    with pytest.raises(ConfigError, match="shortcuts"):
        check_pipeline(config.load(None, SYNTHETIC + SIDE16 + RESNET17))


def test_resnet17_trains_locally_and_deterministically():
    a, data = _learner(RESNET17 + ["model.dropout=0.2"])
    b, _ = _learner(RESNET17 + ["model.dropout=0.2"])
    x, y = torch.from_numpy(data.x_train[:50]), torch.from_numpy(data.y_train[:50])
    before = [p.detach().clone() for p in a.parameters()]
    for _ in range(2):
        la, lb = a.train_step(x, y), b.train_step(x, y)
        assert la == lb
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert all(not torch.equal(p, q) for p, q in zip(a.parameters(), before))  # every layer learned


# ---- per-layer kernels, strides, pooling ----------------------------------------------------------

@pytest.mark.jitfree
@pytest.mark.parametrize("extra", [
    ["model.kernel_sizes=[5,5,3,3]", "model.pool_layers=[1,2]", "model.pool_kind=avg", "model.pool_input=true"],
    ["model.kernel_sizes=[5,3,3,1]", "model.strides=[2,1,2,1]", "model.pool_layers=[0]"],
    ["model.pool_every=2", "model.pool_kind=avg"],
])
def test_build_layers_shapes_match_the_forward_pass(extra):
    cfg = config.load(None, ["model.arch=cnn", "model.channels=[10,20,40,40]"] + extra)
    layers, shapes = build_layers(cfg.model, (1, 16, 16))
    x = torch.randn(3, 1, 16, 16)
    for layer, shape in zip(layers, shapes):
        x = layer(x)
        assert tuple(x.shape[1:]) == shape


@pytest.mark.jitfree
def test_tinycnn_layer_pools_its_input_with_an_average_then_convolves():
    """TinyCNN's layers 1 and 2: nn.Sequential(AvgPool2d(2, 2), CWConv(...)) on the previous
    layer's normalized output; its layer 0's scores are those of the unpooled output."""
    cfg = config.load(None, ["model.arch=cnn", "model.channels=[10,20,40,40]", "model.kernel_sizes=[5,5,3,3]",
                             "model.pool_layers=[1,2]", "model.pool_kind=avg", "model.pool_input=true"])
    layers, shapes = build_layers(cfg.model, (1, 32, 32))
    assert shapes == [(10, 32, 32), (20, 16, 16), (40, 8, 8), (40, 8, 8)]  # the published sizes
    x = torch.randn(2, 10, 32, 32)
    want = F.relu(F.conv2d(F.avg_pool2d(x, 2, stride=2), layers[1].conv.weight, layers[1].conv.bias, padding=2))
    assert torch.allclose(layers[1](x), want, atol=1e-6)


# ---- initialization, drop-out ----------------------------------------------------------------------

def test_kaiming_normal_fan_out_moments_and_zero_bias():
    """Weights N(0, 2 / fan_out), fan_out = out channels x kernel area: the sample variance of
    n = 204 800 weights is within 4 standard errors (SE = var * sqrt(2 / n)) of it, the mean within
    4 SE of 0; the biases are 0."""
    conv = torch.nn.Conv2d(80, 160, 4)
    init_parameters(conv, torch.Generator().manual_seed(3), "kaiming_normal_fan_out")
    w = conv.weight.detach().double().flatten()
    var = 2.0 / (160 * 16)
    assert abs(w.var().item() - var) < 4 * var * math.sqrt(2 / w.numel())
    assert abs(w.mean().item()) < 4 * math.sqrt(var / w.numel())
    assert torch.count_nonzero(conv.bias) == 0


def test_seeded_dropout_share_scale_seed_and_resume():
    d = SeededDropout(0.2)
    d.set_seed(7)
    h = torch.ones(200, 500)
    out = d(h)
    dropped = (out == 0).double().mean().item()
    assert abs(dropped - 0.2) < 4 * math.sqrt(0.2 * 0.8 / h.numel())
    assert torch.allclose(out[out != 0], torch.tensor(1 / 0.8))
    second = d(h)
    assert not torch.equal(out, second)  # a new mask per call
    again = SeededDropout(0.2)
    again.load_state_dict(d.state_dict())  # resumed after two calls: the third mask is the same
    assert torch.equal(again(h), d(h))
    d.eval()
    assert torch.equal(d(h), h)
    fresh = SeededDropout(0.2)
    fresh.set_seed(7)
    assert torch.equal(fresh(h), out)  # same seed, same first mask


def test_dropout_off_adds_no_module_and_no_state():
    """p = 0 adds no module and no state (and init_parameters draws no seed), so configs without
    drop-out build the layers and state_dict they built before the option existed."""
    cfg = config.load(None, ["model.arch=cnn", "model.channels=[10,20]"])
    layers = torch.nn.ModuleList(build_layers(cfg.model, (1, 8, 8))[0])
    init_parameters(layers, torch.Generator().manual_seed(0))
    assert all(layer.drop is None for layer in layers)
    assert sorted(layers.state_dict()) == ["0.conv.bias", "0.conv.weight", "1.conv.bias", "1.conv.weight"]


def test_published_recipe_trains_seeded_and_resumes_to_the_uninterrupted_run(tmp_path):
    """Drop-out, the chosen layer range, AdamW and the per-epoch cosine through the trainer: the same
    seed gives the same weights; a run checkpointed after epoch 1 (saved and loaded as the files
    observer does) and resumed ends with the uninterrupted run's weights, losses and layers."""
    from test_augment import _Snapshot, _weights
    from onchip_ff.checkpoint import load_file
    cfg = config.load(None, SYNTHETIC + ["model.arch=cnn", "model.channels=[10,20,20]", "model.dropout=0.2",
                                         "model.bias=false", "model.init=kaiming_normal_fan_out",
                                         "objective.method=deeperforward", "objective.eval_range=validation",
                                         "data.val_fraction=0.2", "train.optimizer=adamw", "train.weight_decay=5e-4",
                                         "train.lr=0.03", "train.lr_min=0.003", "train.lr_schedule=cosine_epoch",
                                         "train.epochs=3"])
    data = load_dataset(cfg.data)
    snap = _Snapshot(1)
    full = train(cfg, data, [snap])
    again = train(cfg, data)
    w_full, w_again = _weights(full), _weights(again)
    assert all(torch.equal(w_full[k], w_again[k]) for k in w_full)
    torch.save(snap.saved["checkpoint"], tmp_path / "checkpoint.pt")
    saved = {"checkpoint": load_file(tmp_path / "checkpoint.pt", "checkpoint"), "metrics": snap.saved["metrics"]}
    resumed = train(cfg, data, resume=saved)
    w_res = _weights(resumed)
    assert all(torch.equal(w_full[k], w_res[k]) for k in w_full)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    assert resumed.model.eval_layers == full.model.eval_layers
    assert int(w_full["layers.0.drop.counter"][1]) == 3 * 10  # one mask per training batch (480 / 50 -> 10)


# ---- evaluated layers chosen on validation -----------------------------------------------------

def test_choose_eval_layers_is_the_best_contiguous_range_by_brute_force():
    learner, data = _learner(["model.arch=cnn", "model.channels=[10,20,20,20]", "model.pool=1", "model.dropout=0.2",
                              "objective.method=deeperforward", "objective.eval_range=validation"])
    x, y = torch.from_numpy(data.x_train[:200]), torch.from_numpy(data.y_train[:200])
    for _ in range(3):
        learner.train_step(x[:100], y[:100])
    xv, yv = data.x_train[100:200], data.y_train[100:200]
    counters = [layer.drop.counter.clone() for layer in learner.layers]
    acc = learner.choose_eval_layers(xv, yv, 30)  # called in training mode: measures in eval mode
    assert learner.training and all(torch.equal(layer.drop.counter, c) for layer, c in zip(learner.layers, counters))
    chosen = learner.eval_layers
    learner.eval()
    best, pick = -1, None
    for j in range(4):  # the published search order: end layer, then start layer; strictly better wins
        for i in range(j + 1):
            learner.set_eval_range(i, j)
            correct = int((learner.scores(torch.from_numpy(xv)).argmax(1).numpy() == yv).sum())
            if correct > best:
                best, pick = correct, list(range(i, j + 1))
    assert chosen == pick and acc == best / 100


def test_eval_range_validation_trains_records_and_needs_a_split():
    base = SYNTHETIC + ["model.arch=cnn", "model.channels=[10,20,20]", "objective.method=deeperforward",
                        "objective.eval_range=validation", "train.epochs=2", "train.lr=0.03"]
    cfg = config.load(None, base + ["data.val_fraction=0.2"])
    result = train(cfg, load_dataset(cfg.data))
    rows = result.metrics["history"]
    assert all(r["eval_layers"] == list(range(r["eval_layers"][0], r["eval_layers"][-1] + 1)) for r in rows)
    assert result.model.eval_layers == rows[-1]["eval_layers"]
    assert "eval_mask" in result.model.state_dict()  # checkpoints and saved models keep the range
    fixed_cfg = config.load(None, [b for b in base if not b.startswith("objective.eval_range")])
    fixed = build_learner(fixed_cfg, (1, 8, 8), 10, torch.Generator().manual_seed(1))
    assert "eval_mask" not in fixed.state_dict()  # a fixed range: the weights only, as before
    no_split = config.load(None, base)
    with pytest.raises(ConfigError, match="data.val_fraction > 0"):
        train(no_split, load_dataset(no_split.data))


# ---- optimizer and schedules ----------------------------------------------------------------------

def test_cosine_epoch_with_lr_min_equals_torch_cosine_annealing_stepped_per_epoch():
    t = config.load(None, ["train.lr=0.08", "train.lr_min=0.008", "train.lr_schedule=cosine_epoch",
                           "train.epochs=7"]).train
    ours = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=t.lr)
    ref_opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=t.lr)
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(ref_opt, T_max=7, eta_min=0.008)
    steps = 5
    for epoch in range(7):
        for s in range(steps):
            set_learning_rates([ours], t, epoch * steps + s, 7 * steps)
            assert ours.param_groups[0]["lr"] == pytest.approx(ref_opt.param_groups[0]["lr"], rel=1e-12)
        ref_opt.step()
        ref.step()


def test_cosine_epoch_period_longer_than_training_stops_early_like_the_published_cnn14():
    """The published CNN-14 (model/vgg.py) anneals over T_max = 150 epochs whatever the epoch count."""
    t = config.load(None, ["train.lr=0.08", "train.lr_min=0.008", "train.lr_schedule=cosine_epoch",
                           "train.epochs=20", "train.lr_period_epochs=150"]).train
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=t.lr)
    set_learning_rates([opt], t, 19 * 3, 20 * 3)  # first step of the last epoch (e = 19)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.008 + 0.072 * (1 + math.cos(math.pi * 19 / 150)) / 2)
    with pytest.raises(ConfigError, match="train.lr_period_epochs"):
        config.load(None, ["train.epochs=20", "train.lr_period_epochs=10"])


def test_cosine_lr_min_is_the_floor_and_zero_keeps_the_old_schedule():
    t = config.load(None, ["train.lr=0.1", "train.lr_min=0.01", "train.lr_schedule=cosine", "train.epochs=1"]).train
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    for step, want in [(0, 0.1), (50, 0.055), (100, 0.01)]:
        set_learning_rates([opt], t, step, 100)
        assert opt.param_groups[0]["lr"] == pytest.approx(want, rel=1e-12)
    t0 = config.load(None, ["train.lr=0.1", "train.lr_schedule=cosine"]).train
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    set_learning_rates([opt], t0, 37, 100)
    assert opt.param_groups[0]["lr"] == 0.1 * 0.5 * (1.0 + math.cos(math.pi * 37 / 100))  # bit for bit
    with pytest.raises(ConfigError, match="train.lr_min"):
        config.load(None, ["train.lr=0.1", "train.lr_min=0.2"])


def test_adamw_is_torch_adamw_with_decoupled_decay():
    t = config.load(None, ["train.optimizer=adamw", "train.lr=0.08", "train.weight_decay=5e-4"]).train
    p = torch.nn.Parameter(torch.ones(3))
    opt = make_optimizer([p], t)
    assert type(opt) is torch.optim.AdamW and opt.param_groups[0]["weight_decay"] == 5e-4


# ---- resized inputs ------------------------------------------------------------------------------

def test_resize_is_bilinear_commutes_with_standardization_and_prepares_new_samples():
    cfg = config.load(None, SYNTHETIC + ["data.resize_px=12"])
    data = load_dataset(cfg.data)
    plain = load_dataset(config.load(None, SYNTHETIC).data)
    assert data.x_train.shape[1:] == (1, 12, 12) and data.resize_px == 12
    want = F.interpolate(torch.from_numpy(plain.x_test), size=(12, 12), mode="bilinear", align_corners=False)
    assert np.array_equal(data.x_test, want.numpy())
    # interpolation weights sum to 1: resizing then standardizing = standardizing then resizing
    raw = np.random.default_rng(0).random((4, 1, 8, 8), dtype=np.float32)
    assert np.allclose(resize(standardize(raw, 0.3, 0.2), 12), standardize(resize(raw, 12), 0.3, 0.2), atol=1e-5)
    # a sample given as raw pixels is prepared like the splits (standardized, then resized)
    pixels = plain.x_test[:3] * np.float32(plain.std) + np.float32(plain.mean)
    assert np.allclose(data.prepare(pixels), data.x_test[:3], atol=1e-5)
    with pytest.raises(DataError, match="data.resize_px resizes images"):
        resize(np.zeros((2, 5), np.float32), 4)


def test_accountant_refuses_published_layer_options_but_not_the_initialization():
    from accountant.memory import spec_from_config
    with pytest.raises(ConfigError, match="model.strides, model.bias"):
        spec_from_config(config.load(None, ["model.arch=cnn", "model.channels=[10,20]", "model.strides=[1,2]",
                                            "model.bias=false"]))
    spec = spec_from_config(config.load(None, ["train.optimizer=adamw", "model.init=kaiming_normal_fan_out"]))
    assert spec.optimizer == "adamw"  # modelled (tests/test_memory_new_methods.py); the init takes no memory


def test_shortcut_network_runs_on_the_ideal_simulator_like_the_float_reference():
    ref, data = _learner(RESNET17)
    sim, _ = _learner(RESNET17 + ["hardware.backend=sim", "hardware.preset=ideal"])
    x, y = torch.from_numpy(data.x_train[:20]), torch.from_numpy(data.y_train[:20])
    ref.train_step(x, y)
    sim.train_step(x, y)
    ref.eval()
    sim.eval()
    assert torch.allclose(ref.scores(x), sim.scores(x), atol=1e-3, rtol=1e-3)
