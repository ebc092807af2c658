"""Integrated Forward-Forward: goodness, loss and gradients by hand (one layer and a two-layer block),
shuffled negatives, locality of the block schedule, determinism, training on synthetic data, the
ideal simulator, the CLI, the shipped config and objective.intff_blocks validation."""

from __future__ import annotations

import math

import pytest
import torch

from onchip_ff import config
from onchip_ff.data import load_dataset
from common.errors import ConfigError
from onchip_ff.network import DenseLayer
from onchip_ff.objectives.intff import block_goodness, block_loss, shuffled_wrong_labels
from onchip_ff.methods import build_learner
from onchip_ff.methods.intff import group_blocks
from onchip_ff.trainer import train

from learner_checks import (assert_same_seed_same_steps, assert_same_weights_and_scores, assert_step_grads_are_local,
                            cli_trains_and_rejects, float_and_ideal_sim, keep_grads)
from conftest import SYNTHETIC
from test_locality import _alive_graph_counts, _same, _snapshot

# the paper's 784-(200,200,200)-(50,50) in small, and one layer per block
DEEP = ["model.hidden=[24, 24, 24, 12, 12]", "objective.intff_blocks=[3, 2]"]
FLAT = ["model.hidden=[24, 24]", "objective.intff_blocks=[]"]


def _cfg(arch=DEEP, epochs=3, extra=()):
    return config.load(None, SYNTHETIC + arch + ["objective.method=intff", f"train.epochs={epochs}",
                                                 "train.lr=0.03"] + list(extra))


def _learner(arch=DEEP, extra=(), seed=0):
    cfg = _cfg(arch, extra=extra)
    data = load_dataset(cfg.data)
    learner = build_learner(cfg, data.input_shape, data.n_classes, torch.Generator().manual_seed(seed))
    return learner, torch.from_numpy(data.x_train[:50]), torch.from_numpy(data.y_train[:50])


def _stacked_input(learner, x, y):
    """[positives; negatives] exactly as the next train_step will build them (same generator)."""
    gen = torch.Generator().set_state(learner.generator.get_state())
    neg = shuffled_wrong_labels(y, learner.n_classes, gen)
    return torch.cat([learner.embed(x, y), learner.embed(x, neg)])


# ---- objective by hand ----------------------------------------------------------------------

def test_goodness_is_the_mean_square():
    out = torch.tensor([[1.0, 3.0], [2.0, 0.0], [0.0, 0.0]])
    assert block_goodness(out).tolist() == [5.0, 2.0, 0.0]  # (1 + 9) / 2, (4 + 0) / 2


def test_block_loss_value_and_gradient_by_hand():
    # row 0 positive, g = (1 + 9) / 2 = 5; row 1 negative, g = (4 + 0) / 2 = 2; theta = 4
    out = torch.tensor([[1.0, 3.0], [2.0, 0.0]], dtype=torch.float64, requires_grad=True)
    loss = block_loss(out, 1, 4.0)
    # (softplus(4 - 5) + softplus(2 - 4)) / 2
    assert loss.item() == pytest.approx(0.2200948492805977, rel=1e-12)
    # dL/dg_pos = -sigmoid(-1) / 2 = -0.13447071068499755, dL/dg_neg = sigmoid(-2) / 2 = 0.05960146101105877,
    # dg/dout_j = 2 out_j / D = out_j
    (grad,) = torch.autograd.grad(loss, out)
    expected = [[-0.13447071068499755, -3 * 0.13447071068499755], [2 * 0.05960146101105877, 0.0]]
    assert torch.allclose(grad, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=0)


def test_two_layer_block_gradient_by_hand():
    """Backprop inside a block: 1 -> 1 -> 1 ReLU units, w1 = 2, w2 = 1.5, zero biases, theta = 4.
    Positive x = 1: h1 = 2, h2 = 3, g = 9; negative x = 0.5: h1 = 1, h2 = 1.5, g = 2.25."""
    block = [DenseLayer(1, 1).double(), DenseLayer(1, 1).double()]
    with torch.no_grad():
        for layer, w in zip(block, (2.0, 1.5)):
            layer.linear.weight.fill_(w)
            layer.linear.bias.zero_()
    out = torch.tensor([[1.0], [0.5]], dtype=torch.float64)
    for layer in block:
        out = layer(out)
    loss = block_loss(out, 1, 4.0)
    # (softplus(-5) + softplus(-1.75)) / 2
    assert loss.item() == pytest.approx(0.08346974946360265, rel=1e-12)
    gw1, gw2 = torch.autograd.grad(loss, [block[0].linear.weight, block[1].linear.weight])
    # dL/dw2 = sum_i dL/dg_i 2 h2_i h1_i = -6 sigmoid(-5) + 1.5 sigmoid(-1.75)
    assert gw2.item() == pytest.approx(0.18191369150182507, rel=1e-12)
    # dL/dw1 = sum_i dL/dg_i 2 h2_i w2 x_i = -4.5 sigmoid(-5) + 1.125 sigmoid(-1.75): reaches layer 1
    assert gw1.item() == pytest.approx(0.13643526862636882, rel=1e-12)


def test_gradcheck():
    gen = torch.Generator().manual_seed(1)
    out = torch.randn(6, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: block_loss(t, 3, 0.7), (out,))
    block = [DenseLayer(5, 4).double(), DenseLayer(4, 3).double()]
    x = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    params = [p for layer in block for p in layer.parameters()]

    def loss_of(w1, b1, w2, b2):
        h = torch.relu(x @ w1.T + b1)
        return block_loss(torch.relu(h @ w2.T + b2), 3, 0.7)
    assert torch.autograd.gradcheck(loss_of, tuple(p.detach().requires_grad_() for p in params))


def test_shuffled_negatives_are_wrong_and_keep_the_batch_labels():
    gen = torch.Generator().manual_seed(3)
    y = torch.randint(0, 4, (200,), generator=gen)
    state = gen.get_state()
    neg = shuffled_wrong_labels(y, 4, gen)
    assert neg.shape == y.shape and neg.dtype == y.dtype
    assert bool((neg != y).all()) and int(neg.min()) >= 0 and int(neg.max()) <= 3
    shuffled = y[torch.randperm(200, generator=torch.Generator().set_state(state))]
    kept = shuffled != y
    assert torch.equal(neg[kept], shuffled[kept]) and kept.float().mean() > 0.6  # collisions ~ 1/4
    one_class = shuffled_wrong_labels(torch.full((20,), 2), 4, gen)
    assert bool((one_class != 2).all())
    a = shuffled_wrong_labels(y, 4, torch.Generator().manual_seed(9))
    assert torch.equal(a, shuffled_wrong_labels(y, 4, torch.Generator().manual_seed(9)))


# ---- blocks and configuration ---------------------------------------------------------------

def test_group_blocks():
    assert group_blocks((3, 2), 5) == [[0, 1, 2], [3, 4]]
    assert group_blocks((), 3) == [[0], [1], [2]]
    assert group_blocks((1, 2), 3) == [[0], [1, 2]]


@pytest.mark.parametrize("blocks", ["[3, 1]", "[3, 3]", "[5, 0]", "[0]", "[-1, 6]"])
def test_bad_intff_blocks_is_a_one_line_config_error(blocks):
    with pytest.raises(ConfigError, match="objective.intff_blocks") as err:
        _learner(extra=[f"objective.intff_blocks={blocks}"])
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("extra, field", [
    (["model.arch=cnn", "model.channels=[4, 4]"], "objective.method"),
    (["objective.eval_layers=[2]"], "objective.eval_layers")])
def test_unsupported_settings(extra, field):
    with pytest.raises(ConfigError, match=field) as err:
        _learner(extra=extra)
    assert "\n" not in str(err.value)


# ---- learner: locality --------------------------------------------------------------------

@pytest.mark.parametrize("arch", [DEEP, FLAT])
def test_gradients_equal_the_local_block_loss_alone(arch):
    """Grads recorded during a full train_step equal those of each block's own loss, computed
    separately on the block's detached, normalized input; every layer of a block (its first one
    included) receives gradient."""
    learner, x, y = _learner(arch)

    def local_losses(ref):
        h = _stacked_input(ref, x, y)  # ref's generator is in the state the step started from
        for k, block in enumerate(ref.blocks):
            out = ref.block_forward(k, h)
            yield (block_loss(out, len(y), ref.obj.threshold),
                   {f"layers.{i}.{n}": p for i in block for n, p in ref.layers[i].named_parameters()})
            h = ref.to_next_block(k, out)

    assert_step_grads_are_local(learner, x, y, local_losses)


def test_later_block_leaves_earlier_blocks_untouched():
    learner, x, y = _learner()
    keep_grads(learner)
    h1, _ = learner.train_block(0, _stacked_input(learner, x, y), len(y))
    assert h1.requires_grad is False
    first = [learner.layers[i] for i in learner.blocks[0]]
    before = [_snapshot(m) for m in first]
    learner.train_block(1, h1, len(y))
    assert all(_same(b, _snapshot(m)) for b, m in zip(before, first))
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for i in learner.blocks[1] for p in learner.layers[i].parameters())


def test_schedule_keeps_one_block_graph_alive():
    learner, x, y = _learner()  # blocks [0, 1, 2], [3, 4]
    counts = _alive_graph_counts(learner, x, y, range(5))
    assert counts[0] == 0 and counts[3] == 0  # nothing alive when a block starts
    assert 0 < counts[1] < counts[2] and 0 < counts[4]  # inside a block its own graph is, as it must be
    flat, x, y = _learner(FLAT)
    assert _alive_graph_counts(flat, x, y, range(2)) == [0, 0]


# ---- learner: determinism, scores, training -------------------------------------------------

def test_same_seed_same_steps():
    assert_same_seed_same_steps(lambda seed: _learner(seed=seed))


def test_scores_sum_block_goodness_over_labels():
    learner, x, _ = _learner(extra=["objective.eval_layers=[1]"])
    assert learner.scores(x).shape == (50, 10)
    full, _, _ = _learner()
    with torch.no_grad():
        for label in (0, 7):
            h = full.embed(x, torch.full((50,), label))
            per_block = []
            for k in range(2):
                out = full.block_forward(k, h)
                per_block.append(block_goodness(out))
                h = full.to_next_block(k, out)
            assert torch.allclose(full.scores(x)[:, label], per_block[0] + per_block[1])
            assert torch.allclose(learner.scores(x)[:, label], per_block[1])


def test_hard_negatives_step():
    learner, x, y = _learner(extra=["objective.negatives=hard"])
    m = learner.train_step(x, y)
    assert set(m) == {"loss", "loss_0", "loss_1"} and math.isfinite(m["loss"])


@pytest.mark.parametrize("arch", [DEEP, FLAT])
def test_training_beats_chance(arch):
    cfg = _cfg(arch)
    m = train(cfg, load_dataset(cfg.data)).metrics
    assert m["history"][-1]["loss"] < m["history"][0]["loss"]
    assert m["test_accuracy"] > 0.6, m["history"]  # chance is 0.1


def test_ideal_sim_steps_match_the_float_reference():
    """Ideal tiles are float32 matrix products in another order: 3 steps agree to rel 1e-5 (loss)
    and 1e-4 (weights, scores).  Plain SGD: Adam turns the reordering noise of gradients near its
    eps into step differences of order lr.  Both generators are reset before each step because
    attaching the simulator draws a seed from the sim learner's generator."""
    sgd = ["train.optimizer=sgd"]
    cfg = _cfg(extra=sgd)
    sim_cfg = _cfg(extra=sgd + ["hardware.backend=sim", "hardware.preset=ideal"])
    ref, sim, x, y = float_and_ideal_sim(cfg, sim_cfg)
    assert len(sim.analog_modules) == 5
    for _ in range(3):
        state = torch.Generator().manual_seed(5).get_state()
        ref.generator.set_state(state)
        sim.generator.set_state(state)
        a, b = ref.train_step(x, y), sim.train_step(x, y)
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    assert_same_weights_and_scores(ref, sim, x)


def test_pcm_preset_trains_a_step():
    learner, x, y = _learner(extra=["hardware.backend=sim", "hardware.preset=pcm"])
    m = learner.train_step(x, y)
    assert math.isfinite(m["loss"]) and learner.scores(x).shape == (50, 10)


# ---- CLI and shipped config -----------------------------------------------------------------

def test_cli_trains_and_rejects_bad_blocks(tmp_path, capsys):
    metrics = cli_trains_and_rejects("experiments/configs/intff_mlp_fmnist.toml", tmp_path, capsys,
                                     "objective.intff_blocks=[3, 3]", "objective.intff_blocks",
                                     hidden="[20, 20, 20, 10, 10]")
    assert metrics["method"] == "intff"


def test_shipped_config_builds_and_scores():
    cfg = config.load("experiments/configs/intff_mlp_fmnist.toml", ["train.threads=1"])
    assert cfg.objective.method == "intff" and cfg.model.hidden == (200, 200, 200, 50, 50)
    learner = build_learner(cfg, (1, 28, 28), 10, torch.Generator().manual_seed(0))
    assert learner.blocks == [[0, 1, 2], [3, 4]]
    assert learner.scores(torch.randn(2, 1, 28, 28)).shape == (2, 10)
