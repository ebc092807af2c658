"""Checks shared by the learner test files: same seed -> same steps, and the ideal simulator
against the float reference."""

from __future__ import annotations

import torch

from onchip_ff.data import load_dataset
from onchip_ff.reference import build_learner

# Ideal tiles are float32 matrix products in another order: after a few plain SGD steps the
# weights agree to rtol 1e-4 (atol 1e-6) and the class scores to rtol 1e-4 (atol 1e-5).
WEIGHT_TOL = {"rtol": 1e-4, "atol": 1e-6}
SCORE_TOL = {"rtol": 1e-4, "atol": 1e-5}


def assert_same_seed_same_steps(make) -> None:
    """make(seed) -> (learner, x, y): two learners of one seed take identical steps and end with
    identical weights and scores; another seed gives other weights."""
    (a, x, y), (b, _, _) = make(0), make(0)
    c, _, _ = make(1)
    for _ in range(2):
        assert a.train_step(x, y) == b.train_step(x, y)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert torch.equal(a.scores(x), b.scores(x))


def float_and_ideal_sim(cfg, sim_cfg, n: int = 50):
    """(float learner, sim learner, x, y) built from the same seed on the first n training samples;
    checks that every Linear/Conv2d of the float learner became a tile."""
    data = load_dataset(cfg.data)
    ref = build_learner(cfg, data.input_shape, data.n_classes, torch.Generator().manual_seed(0))
    sim = build_learner(sim_cfg, data.input_shape, data.n_classes, torch.Generator().manual_seed(0))
    n_mods = sum(isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)) for m in ref.modules())
    assert len(sim.analog_modules) == n_mods
    return ref, sim, torch.from_numpy(data.x_train[:n]), torch.from_numpy(data.y_train[:n])


def assert_same_weights_and_scores(ref, sim, x) -> None:
    sa, sb = ref.state_dict(), sim.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.allclose(sa[k], sb[k], **WEIGHT_TOL), k
    assert torch.allclose(ref.scores(x), sim.scores(x), **SCORE_TOL)
