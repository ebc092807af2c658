"""End-to-end training on the synthetic set: learning happens, same seed gives the same result."""

import pytest
import torch

from onchip_ff.data import load_dataset
from onchip_ff.trainer import train

from conftest import tiny_config


@pytest.mark.parametrize("method, arch, extra, epochs, floor", [  # chance is 0.1
    ("df", "mlp", [], 8, 0.9),
    ("df", "mlp", ["objective.block_size=2"], 8, 0.9),
    ("df", "mlp", ["objective.accumulate_goodness=true"], 8, 0.9),
    ("df", "mlp", ["objective.centroids=ema"], 8, 0.9),
    ("df", "cnn", [], 8, 0.9),
    ("ff", "mlp", [], 20, 0.8),
    ("ff", "mlp", ["objective.negatives=hard"], 8, 0.8),
    ("bp", "mlp", [], 8, 0.9),
    ("bp", "cnn", [], 8, 0.9),
])
def test_learns_synthetic_well_above_chance(method, arch, extra, epochs, floor):
    cfg = tiny_config(method, arch, epochs=epochs, extra=extra)
    m = train(cfg, load_dataset(cfg.data)).metrics
    assert m["status"] == "done" and m["epochs"] == epochs and len(m["history"]) == epochs
    assert m["test_accuracy"] >= floor, m["history"]


@pytest.mark.parametrize("method", ["df", "ff", "bp"])
def test_same_seed_same_result(method):
    cfg = tiny_config(method, epochs=1)
    data = load_dataset(cfg.data)
    a = train(cfg, data)
    b = train(cfg, data)
    c = train(tiny_config(method, epochs=1, extra=["train.seed=1"]), data)
    sa, sb, sc = (r.model.state_dict() for r in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_dfr_changes_the_loss_of_later_layers_only():
    cfg_plain = tiny_config("df", epochs=1)
    cfg_dfr = tiny_config("df", epochs=1, extra=["objective.accumulate_goodness=true"])
    data = load_dataset(cfg_plain.data)
    from onchip_ff.methods import build_learner
    x, y = torch.from_numpy(data.x_train[:50]), torch.from_numpy(data.y_train[:50])
    a = build_learner(cfg_plain, data.input_shape, 10, torch.Generator().manual_seed(0)).train_step(x, y)
    b = build_learner(cfg_dfr, data.input_shape, 10, torch.Generator().manual_seed(0)).train_step(x, y)
    assert a["loss_0"] == b["loss_0"] and a["loss_1"] != b["loss_1"]


def test_eval_layers_out_of_range_is_a_config_error():
    from common.errors import ConfigError
    cfg = tiny_config("df", extra=["objective.eval_layers=[5]"])
    with pytest.raises(ConfigError, match="objective.eval_layers"):
        train(cfg, load_dataset(cfg.data))


def test_cosine_schedule_decays_the_learning_rate_to_near_zero():
    cfg = tiny_config("df", epochs=2, extra=["train.lr_schedule=cosine"])
    model = train(cfg, load_dataset(cfg.data)).model
    lrs = [g["lr"] for opt in model.optimizers for g in opt.param_groups]
    assert all(0 < lr < 0.01 * cfg.train.lr for lr in lrs)
    flat = train(tiny_config("df", epochs=2), load_dataset(cfg.data)).model
    assert all(g["lr"] == cfg.train.lr for opt in flat.optimizers for g in opt.param_groups)


def test_centroid_learning_rate_scale():
    from onchip_ff.methods import build_learner
    cfg = tiny_config("df", extra=["objective.centroid_lr_scale=10"])
    learner = build_learner(cfg, (1, 8, 8), 10, torch.Generator().manual_seed(0))
    for opt in learner.optimizers:
        layer_group, head_group = opt.param_groups
        assert head_group["lr"] == pytest.approx(10 * layer_group["lr"])
        assert head_group["params"][0].shape[0] == 10  # the centroid matrix
    ema = build_learner(tiny_config("df", extra=["objective.centroids=ema"]), (1, 8, 8), 10,
                        torch.Generator().manual_seed(0))
    assert all(len(opt.param_groups) == 1 for opt in ema.optimizers)
