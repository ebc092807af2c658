"""train.eval_every: accuracies are measured after every N-th epoch and after the last; the other
history rows hold None; training itself is unchanged (same weights and final accuracy as measuring
every epoch on the float backend, where evaluation draws no random numbers); a run stopped after
an unmeasured epoch resumes to the same end."""

from __future__ import annotations

import json

import pytest
import torch

from common.errors import ConfigError
from experiments.observers import RunFiles, resume_state
from onchip_ff import config
from onchip_ff.data import load_dataset
from onchip_ff.trainer import Observer, train

from conftest import tiny_config

VAL = ["data.val_fraction=0.2"]


def _same_weights(a, b):
    sa, sb = a.model.state_dict(), b.model.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("method", ["df", "ff"])
def test_unmeasured_epochs_hold_none_and_training_is_unchanged(method):
    every = tiny_config(method, epochs=5, extra=VAL)
    sparse = tiny_config(method, epochs=5, extra=[*VAL, "train.eval_every=2"])
    data = load_dataset(every.data)
    a, b = train(every, data), train(sparse, data)
    measured = [h["epoch"] for h in b.history if h["test_accuracy"] is not None]
    assert measured == [2, 4, 5]  # every 2nd epoch and the last
    for h in b.history:
        if h["epoch"] not in measured:
            assert h["train_accuracy"] is None and h["val_accuracy"] is None and h["loss"] > 0
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    assert _same_weights(a, b)
    for key in ("test_accuracy", "train_accuracy", "val_accuracy"):
        assert a.metrics[key] == b.metrics[key] == b.history[-1][key]
    assert [a.history[i]["test_accuracy"] for i in (1, 3)] == [b.history[i]["test_accuracy"] for i in (1, 3)]


class _StopAfter(Observer):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch(self, run):
        if run.epoch == self.epoch:
            raise KeyboardInterrupt


def test_a_run_stopped_after_an_unmeasured_epoch_resumes_to_the_same_end(tmp_path):
    cfg = tiny_config("df", epochs=4, extra=["train.eval_every=2"])
    data = load_dataset(cfg.data)
    whole = train(cfg, data)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, data, [RunFiles(tmp_path), _StopAfter(3)])  # epoch 3 is not measured
    got_cfg, state = resume_state(tmp_path)
    assert state["checkpoint"]["epoch"] == 3
    assert state["metrics"]["test_accuracy"] == state["metrics"]["history"][1]["test_accuracy"] is not None
    resumed = train(got_cfg, data, [RunFiles(tmp_path)], resume=state)
    assert _same_weights(whole, resumed) and resumed.metrics["test_accuracy"] == whole.metrics["test_accuracy"]
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "done"


@pytest.mark.jitfree
def test_eval_every_below_one_is_a_config_error():
    with pytest.raises(ConfigError, match="train.eval_every"):
        config.load(None, ["train.eval_every=0"])
