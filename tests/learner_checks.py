"""Checks shared by the learner test files: same seed -> same steps, the ideal simulator
against the float reference, locality of the gradients, and `onchip-ff train` on a shipped config."""

from __future__ import annotations

import copy
import json
from typing import Callable, Iterable

import torch

from experiments.cli import main

from onchip_ff.data import load_dataset
from onchip_ff.methods import build_learner

from conftest import SYNTHETIC

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


def cli_trains_and_rejects(config_path: str, out, capsys, bad: str, key: str, hidden: str = "[20, 20]") -> dict:
    """`onchip-ff train` of a shipped config on the synthetic set (model.hidden = hidden, 1 epoch)
    writes a finished metrics.json, which is returned; with `--set bad` it exits 2 with one line
    naming key."""
    argv = ["train", config_path] + [
        a for s in SYNTHETIC + [f"model.hidden={hidden}", "train.epochs=1"] for a in ("--set", s)]
    assert main(argv + ["--out", str(out / "run"), "--no-progress"]) == 0
    metrics = json.loads((out / "run" / "metrics.json").read_text())
    assert metrics["status"] == "done"
    capsys.readouterr()
    assert main(argv + ["--set", bad, "--out", str(out / "bad"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and key in err
    return metrics


def assert_step_grads_are_local(learner, x, y,
                                local_losses: Callable[[object], Iterable[tuple[torch.Tensor, dict]]]) -> None:
    """Record the gradient every parameter receives during one full train_step. local_losses(ref),
    given a copy of the learner taken before the step, yields each block's own loss (computed on
    the block's detached input) and its {name: parameter}; the recorded gradients must equal
    torch.autograd.grad of that loss alone (rtol 1e-5, atol 1e-7) and be nonzero, and every
    parameter of the learner must have received one."""
    ref = copy.deepcopy(learner)
    recorded = {}
    for name, p in learner.named_parameters():
        p.register_hook(lambda grad, name=name: recorded.setdefault(name, grad.clone()))
    learner.train_step(x, y)
    for loss, params in local_losses(ref):
        grads = torch.autograd.grad(loss, list(params.values()))
        for (name, _), grad in zip(params.items(), grads):
            assert torch.allclose(recorded[name], grad, rtol=1e-5, atol=1e-7), name
            assert grad.abs().sum() > 0, name
    assert set(recorded) == {n for n, _ in learner.named_parameters()}


def keep_grads(learner) -> None:
    """Make the learner's optimizers keep their .grad after each step (the learners free them;
    onchip_ff/methods/local_update.py KEEP_GRADS), so that a test can look at what a step computed."""
    from onchip_ff.methods.local_update import KEEP_GRADS
    for opt in learner.optimizers:
        setattr(opt, KEEP_GRADS, True)
