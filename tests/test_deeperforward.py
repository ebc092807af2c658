"""DeeperForward: normalization, class scores and loss by hand, gradients, locality, determinism,
training on synthetic data, the ideal simulator, the CLI, the configs and model.pool_every."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from onchip_ff import config
from onchip_ff.data import load_dataset
from common.errors import ConfigError
from onchip_ff.network import build_layers
from onchip_ff.objectives.deeperforward import class_cross_entropy, class_scores, feature_norm
from onchip_ff.methods import build_learner
from onchip_ff.trainer import train

from learner_checks import (assert_same_seed_same_steps, assert_same_weights_and_scores, assert_step_grads_are_local,
                            cli_trains_and_rejects, float_and_ideal_sim, keep_grads)
from conftest import SYNTHETIC
from test_locality import _alive_graph_counts, _same, _snapshot

ARCH = {"mlp": ["model.arch=mlp", "model.hidden=[40, 40, 40]"],
        "cnn": ["model.arch=cnn", "model.channels=[10, 20]"]}
CONFIGS = ["cnn4", "cnn14", "cnn17", "mlp", "tinycnn", "vgg14", "resnet17"]


def _cfg(arch="mlp", epochs=3, extra=()):
    return config.load(None, SYNTHETIC + ARCH[arch] + ["objective.method=deeperforward",
                       f"train.epochs={epochs}", "train.lr=0.03"] + list(extra))


def _learner(arch="mlp", extra=(), seed=0):
    cfg = _cfg(arch, extra=extra)
    data = load_dataset(cfg.data)
    learner = build_learner(cfg, data.input_shape, data.n_classes, torch.Generator().manual_seed(seed))
    return learner, torch.from_numpy(data.x_train[:50]), torch.from_numpy(data.y_train[:50])


# ---- objective by hand ----------------------------------------------------------------------

# 2 samples, 4 channels, 1x2 positions; class 0 owns channels 0-1, class 1 channels 2-3
H = [[[[1.0, 3.0]], [[2.0, 2.0]], [[0.0, 1.0]], [[1.0, 0.0]]],
     [[[0.0, 0.0]], [[1.0, 0.0]], [[2.0, 4.0]], [[3.0, 3.0]]]]
Y = [0, 0]


def test_class_scores_by_hand():
    s = class_scores(torch.tensor(H, dtype=torch.float64), 2)
    # sample 0: mean(1, 3, 2, 2) = 2, mean(0, 1, 1, 0) = 0.5; sample 1: 0.25, 3
    assert s.tolist() == [[2.0, 0.5], [0.25, 3.0]]
    mlp = torch.tensor([[1.0, 2.0, 3.0, 6.0, 0.0, 0.0]])
    assert class_scores(mlp, 3).tolist() == [[1.5, 4.5, 0.0]]


@pytest.mark.parametrize("scale", [1.0, 2.0])
def test_class_cross_entropy_value_and_gradient_by_hand(scale):
    h = torch.tensor(H, dtype=torch.float64, requires_grad=True)
    loss = class_cross_entropy(class_scores(h, 2), torch.tensor(Y), scale)
    # logits s * [[2, 0.5], [0.25, 3]], both labels 0: CE_i = log(1 + exp(s (z_i1 - z_i0)))
    d0, d1 = scale * (0.5 - 2.0), scale * (3.0 - 0.25)
    assert loss.item() == pytest.approx((math.log1p(math.exp(d0)) + math.log1p(math.exp(d1))) / 2, rel=1e-12)
    # dL/dz_ik = s (p_ik - [k = y_i]) / N; dz_ik/dh = 1 / (2 channels x 2 positions) on group k
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    g0, g1 = scale * sig(d0) / 2 / 4, scale * sig(d1) / 2 / 4
    expected = [[[[-g0, -g0]], [[-g0, -g0]], [[g0, g0]], [[g0, g0]]],
                [[[-g1, -g1]], [[-g1, -g1]], [[g1, g1]], [[g1, g1]]]]
    (grad,) = torch.autograd.grad(loss, h)
    assert torch.allclose(grad, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=0)


def test_feature_norm_by_hand():
    h = torch.tensor([[1.0, 2.0, 3.0, 6.0]], dtype=torch.float64)
    centered = torch.tensor([[-2.0, -1.0, 0.0, 3.0]], dtype=torch.float64)
    # layer: mean 3, biased var (4 + 1 + 0 + 9) / 4 = 3.5
    assert torch.allclose(feature_norm(h, 1, eps=0.0), centered / math.sqrt(3.5), rtol=1e-12)
    assert torch.allclose(feature_norm(h), centered / math.sqrt(3.5 + 1e-5), rtol=1e-12)
    # two groups: (1, 2) mean 1.5 var 0.25, (3, 6) mean 4.5 var 2.25
    expected = torch.tensor([[-1.0, 1.0, -1.0, 1.0]], dtype=torch.float64)
    assert torch.allclose(feature_norm(h, 2, eps=0.0), expected, rtol=1e-12)


def test_feature_norm_equals_torch_layer_and_group_norm():
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(3, 6, 4, 5, generator=gen, dtype=torch.float64)
    assert torch.allclose(feature_norm(h, 1), F.layer_norm(h, h.shape[1:], eps=1e-5))
    assert torch.allclose(feature_norm(h, 3), F.group_norm(h, 3, eps=1e-5))
    out = feature_norm(h, 1).flatten(1)
    assert torch.allclose(out.mean(1), torch.zeros(3, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(out.var(1, correction=0), torch.ones(3, dtype=torch.float64), atol=1e-5)


@pytest.mark.parametrize("shape, groups", [((3, 4, 2, 3), 1), ((3, 4, 2, 3), 2), ((3, 10), 5)])
def test_gradcheck(shape, groups):
    gen = torch.Generator().manual_seed(1)
    h = torch.randn(*shape, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([1, 0, 1])
    assert torch.autograd.gradcheck(lambda t: feature_norm(t, groups), (h,))
    assert torch.autograd.gradcheck(
        lambda t: class_cross_entropy(class_scores(t, 2), y, 3.0), (h,))


# ---- learner --------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_gradients_equal_the_local_layer_loss_alone(arch):
    """Grads recorded during a full train_step equal those of each layer's own loss, computed
    separately on the layer's detached, normalized input."""
    learner, x, y = _learner(arch)

    def local_losses(ref):
        inp = feature_norm(x)
        for k, layer in enumerate(ref.layers):
            h, s = ref.layer_forward(k, inp)
            yield (class_cross_entropy(s, y, ref.obj.score_scale),
                   {f"layers.{k}.{n}": p for n, p in layer.named_parameters()})
            inp = feature_norm(h.detach(), ref.groups)

    assert_step_grads_are_local(learner, x, y, local_losses)


@pytest.mark.parametrize("norm", ["layer", "group"])
def test_later_layer_leaves_earlier_layers_untouched(norm):
    learner, x, y = _learner("cnn", extra=[f"objective.feature_norm={norm}"])
    keep_grads(learner)
    x1, _ = learner.train_layer(0, feature_norm(x), y)
    assert x1.requires_grad is False
    before = _snapshot(learner.layers[0])
    learner.train_layer(1, x1, y)
    assert _same(before, _snapshot(learner.layers[0]))
    assert all(p.grad is not None for p in learner.layers[1].parameters())


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_schedule_keeps_one_layer_graph_alive(arch):
    learner, x, y = _learner(arch)
    n = len(learner.layers)
    assert _alive_graph_counts(learner, x, y, range(n)) == [0] * n


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_same_seed_same_steps(arch):
    assert_same_seed_same_steps(lambda seed: _learner(arch, seed=seed))


def test_scores_sum_the_eval_layers():
    learner, x, _ = _learner("mlp", extra=["objective.eval_layers=[0, 2]"])
    per_layer = []
    inp = feature_norm(x)
    with torch.no_grad():
        for k in range(3):
            h, s = learner.layer_forward(k, inp)
            per_layer.append(s)
            inp = learner.to_next_layer(h, k)
    assert learner.scores(x).shape == (50, 10)
    assert torch.allclose(learner.scores(x), per_layer[0] + per_layer[2])


@pytest.mark.parametrize("arch, extra", [("mlp", []), ("cnn", []), ("cnn", ["objective.feature_norm=group"])])
def test_training_beats_chance(arch, extra):
    cfg = _cfg(arch, extra=extra)
    m = train(cfg, load_dataset(cfg.data)).metrics
    assert m["history"][-1]["loss"] < m["history"][0]["loss"]
    assert m["test_accuracy"] > 0.5, m["history"]  # chance is 0.1


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_ideal_sim_steps_match_the_float_reference(arch):
    """Ideal tiles are float32 matrix products in another order: 3 steps agree to rel 1e-5 (loss)
    and 1e-4 (weights, scores).  Plain SGD: Adam turns the reordering noise of gradients near its
    eps (|g| ~ 5e-8 here, 2 % apart) into step differences of order lr, even in the first step."""
    sgd = ["train.optimizer=sgd"]
    cfg = _cfg(arch, extra=sgd)
    sim_cfg = _cfg(arch, extra=sgd + ["hardware.backend=sim", "hardware.preset=ideal"])
    ref, sim, x, y = float_and_ideal_sim(cfg, sim_cfg)
    for _ in range(3):
        a, b = ref.train_step(x, y), sim.train_step(x, y)
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    assert_same_weights_and_scores(ref, sim, x)


@pytest.mark.parametrize("arch, override, field", [
    ("cnn", "model.channels=[12, 20]", "model.channels"),
    ("mlp", "model.hidden=[40, 45]", "model.hidden")])
def test_channels_not_divisible_by_classes(arch, override, field):
    cfg = _cfg(arch, extra=[override])
    with pytest.raises(ConfigError, match=field) as err:
        build_learner(cfg, (1, 8, 8), 10, torch.Generator().manual_seed(0))
    assert "\n" not in str(err.value) and "multiple of 10" in str(err.value)


def test_cli_trains_and_rejects_bad_channels(tmp_path, capsys):
    metrics = cli_trains_and_rejects("experiments/configs/deeperforward_mlp_fmnist.toml", tmp_path, capsys,
                                     "model.hidden=[20, 25]", "model.hidden")
    assert metrics["method"] == "deeperforward"


@pytest.mark.parametrize("name", CONFIGS)
def test_shipped_configs_build_and_score(name):
    cfg = config.load(f"experiments/configs/deeperforward_{name}_fmnist.toml", ["train.threads=1"])
    assert cfg.objective.method == "deeperforward"
    side = cfg.data.resize_px or 28
    learner = build_learner(cfg, (1, side, side), 10, torch.Generator().manual_seed(0))
    assert len(learner.layers) == {"cnn4": 4, "cnn14": 14, "cnn17": 17, "mlp": 3, "tinycnn": 4, "vgg14": 14,
                                   "resnet17": 17}[name]
    learner.eval()
    assert learner.scores(torch.randn(2, 1, side, side)).shape == (2, 10)


# ---- model.pool_every -----------------------------------------------------------------------

def test_pool_every_pools_after_every_kth_conv():
    cfg = config.load(None, ["model.arch=cnn", "model.channels=[10, 10, 10, 10, 10]", "model.pool_every=2"])
    _, shapes = build_layers(cfg.model, (1, 8, 8))
    assert [s[1:] for s in shapes] == [(8, 8), (4, 4), (4, 4), (2, 2), (2, 2)]
    default = config.load(None, ["model.arch=cnn", "model.channels=[10, 10]"])
    assert [s[1:] for s in build_layers(default.model, (1, 8, 8))[1]] == [(4, 4), (2, 2)]
    with pytest.raises(ConfigError, match="model.pool_every"):
        config.load(None, ["model.pool_every=0"])
    deep = config.load(None, ["model.arch=cnn", "model.channels=[10, 10, 10, 10]"])
    with pytest.raises(ConfigError, match="model.pool_every"):
        build_layers(deep.model, (1, 8, 8))
