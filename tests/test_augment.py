"""Training-batch augmentation (onchip_ff/augment.py, train.augment_shift_px / augment_flip): the
vectorized gather equals a per-image pad-slice-mirror loop bit for bit; shifts are uniform over
-s..+s and flips happen half the time (moments within 4 standard errors over 20 000 draws); the
trainer draws them from their own seeded stream (same seed, same run; resume equals an
uninterrupted run) and refuses what it cannot augment."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from common.errors import ConfigError
from onchip_ff import config
from onchip_ff.augment import augment
from onchip_ff.checkpoint import load_file
from onchip_ff.data import Dataset, load_dataset
from onchip_ff.pipeline import check_pipeline
from onchip_ff.trainer import Observer, checkpoint, train

from conftest import tiny_config

jitfree = pytest.mark.jitfree


def naive_augment(x, rng, shift_px, flip, fill):
    """One image at a time: draw the row offsets, then the column offsets, then the flips (the
    documented order); pad with fill, slice the window, mirror it.  Exact (same floats moved)."""
    n = len(x)
    rows = rng.integers(0, 2 * shift_px + 1, n) if shift_px else [0] * n
    cols = rng.integers(0, 2 * shift_px + 1, n) if shift_px else [0] * n
    mirror = rng.random(n) < 0.5 if flip else [False] * n
    out = np.empty_like(x)
    for i in range(n):
        img = np.pad(x[i], ((0, 0), (shift_px, shift_px), (shift_px, shift_px)), constant_values=fill)
        win = img[:, rows[i]:rows[i] + x.shape[2], cols[i]:cols[i] + x.shape[3]]
        out[i] = win[:, :, ::-1] if mirror[i] else win
    return out


@jitfree
@pytest.mark.parametrize("shift_px,flip", [(0, True), (1, False), (2, True), (4, True)])
def test_augment_equals_the_per_image_loop_bit_for_bit(shift_px, flip):
    x = np.random.default_rng(0).normal(size=(64, 3, 7, 9)).astype(np.float32)
    before = x.copy()
    got = augment(x, np.random.default_rng(5), shift_px, flip, fill=-0.8)
    want = naive_augment(x, np.random.default_rng(5), shift_px, flip, fill=np.float32(-0.8))
    assert got.dtype == np.float32 and np.array_equal(got, want)
    assert np.array_equal(x, before)  # the input is left alone


@jitfree
def test_no_augmentation_is_a_copy_and_draws_nothing():
    x = np.arange(2 * 1 * 4 * 4, dtype=np.float32).reshape(2, 1, 4, 4)
    rng = np.random.default_rng(3)
    state = copy.deepcopy(rng.bit_generator.state)
    out = augment(x, rng, 0, False)
    assert np.array_equal(out, x) and out is not x and rng.bit_generator.state == state


@jitfree
def test_shifts_are_uniform_over_minus_s_to_s_and_flips_happen_half_the_time():
    """One bright pixel in the middle of an otherwise black 11x11 image: where it lands gives the
    shift (and the mirror sends column c to 10 - c, so the middle stays put: flips are read from a
    second, off-centre pixel).  Moments vs the discrete uniform on -s..s: mean 0, variance
    ((2s+1)^2 - 1)/12; flip share 1/2; within 4 standard errors over n = 20 000 images."""
    s, n, side = 3, 20000, 11
    x = np.zeros((n, 1, side, side), np.float32)
    x[:, 0, 5, 5] = 1.0  # the middle
    x[:, 0, 5, 4] = 2.0  # one column left of it
    out = augment(x, np.random.default_rng(11), s, True, fill=0.0)
    r, c = np.nonzero(out[:, 0] == 1.0)[1:]
    _, r2, c2 = np.nonzero(out[:, 0] == 2.0)
    assert len(r) == len(r2) == n  # never shifted out of the frame (s < 5)
    dr, dc = r - 5, c - 5
    var = ((2 * s + 1) ** 2 - 1) / 12
    for d in (dr, dc):
        assert set(np.unique(d)) == set(range(-s, s + 1))
        assert abs(d.mean()) < 4 * math.sqrt(var / n)
        assert abs(d.var() - var) < 4 * math.sqrt((np.mean((d - d.mean()) ** 4) - var ** 2) / n)
    flipped = (c2 - c) == 1  # the left neighbour is now on the right
    assert np.all((c2 - c == 1) | (c2 - c == -1)) and np.all(r2 == r)
    assert abs(flipped.mean() - 0.5) < 4 * math.sqrt(0.25 / n)
    assert np.corrcoef(flipped, dc)[0, 1] ** 2 < 16 / n  # flip independent of the shift
    # the uncovered border is the fill: a shifted image keeps its sum only inside the frame
    assert np.allclose(out.sum(axis=(1, 2, 3)), 3.0)


@jitfree
def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="N, C, H, W"):
        augment(np.zeros((4, 16), np.float32), np.random.default_rng(0), 2, False)
    with pytest.raises(ValueError, match="shift_px"):
        augment(np.zeros((4, 1, 4, 4), np.float32), np.random.default_rng(0), -1, False)
    with pytest.raises(ConfigError, match="train.augment_shift_px"):
        config.load(None, ["train.augment_shift_px=-1"])


class _Snapshot(Observer):
    """Keeps a deep copy of the checkpoint and metrics after epoch `at`."""

    def __init__(self, at):
        self.at, self.saved = at, None

    def on_epoch(self, run):
        if run.epoch == self.at:
            self.saved = copy.deepcopy({"checkpoint": checkpoint(run), "metrics": run.metrics})


AUG = ["train.augment_shift_px=2", "train.augment_flip=true"]


def _weights(result):
    return {k: v.clone() for k, v in result.model.state_dict().items()}


def test_augmented_training_is_seeded_and_resumes_to_the_uninterrupted_weights(tmp_path):
    cfg = tiny_config("df", "cnn", epochs=3, extra=AUG)
    data = load_dataset(cfg.data)
    snap = _Snapshot(1)
    full = train(cfg, data, [snap])
    again = train(cfg, data)
    plain = train(tiny_config("df", "cnn", epochs=3), data)
    w_full, w_again, w_plain = _weights(full), _weights(again), _weights(plain)
    assert all(torch.equal(w_full[k], w_again[k]) for k in w_full)  # same seed, same run
    assert not all(torch.equal(w_full[k], w_plain[k]) for k in w_full)  # augmentation changes training
    assert "augment_rng" in snap.saved["checkpoint"]
    torch.save(snap.saved["checkpoint"], tmp_path / "checkpoint.pt")  # as the files observer writes it
    saved = {"checkpoint": load_file(tmp_path / "checkpoint.pt", "checkpoint"), "metrics": snap.saved["metrics"]}
    resumed = train(cfg, data, resume=saved)
    w_res = _weights(resumed)
    assert all(torch.equal(w_full[k], w_res[k]) for k in w_full)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]


def test_augmentation_leaves_the_shuffling_and_initialization_streams_alone():
    """The first batch of an augmented run holds the same samples as the plain run's, each shifted
    or mirrored: captured through an observer's step hook."""

    class FirstBatch(Observer):
        x = None

        def step(self, run, x, y):
            if self.x is None:
                self.x, self.y = x.clone(), y.clone()
            return super().step(run, x, y)

    cfgs = [tiny_config("df", "cnn", epochs=1, extra=extra) for extra in ([], ["train.augment_flip=true"])]
    data = load_dataset(cfgs[0].data)
    seen = []
    for cfg in cfgs:
        obs = FirstBatch()
        train(cfg, data, [obs])
        seen.append(obs)
    assert torch.equal(seen[0].y, seen[1].y)
    same = (seen[0].x == seen[1].x).flatten(1).all(1)
    mirrored = (seen[0].x.flip(-1) == seen[1].x).flatten(1).all(1)
    assert bool((same | mirrored).all()) and 0 < int(mirrored.sum()) < len(mirrored)


def test_trainer_and_pipeline_refuse_what_they_cannot_augment():
    cfg = tiny_config("df", "mlp", epochs=1, extra=["train.augment_shift_px=1"])
    rng = np.random.default_rng(0)
    vectors = Dataset("vectors", rng.normal(size=(40, 6)).astype(np.float32), rng.integers(0, 2, 40),
                      rng.normal(size=(10, 6)).astype(np.float32), rng.integers(0, 2, 10), 2)
    with pytest.raises(ConfigError, match="gives vectors of shape"):
        train(cfg, vectors)
    dfr = tiny_config("df", "cnn", extra=["objective.method=deeperforward", "train.augment_flip=true"])
    with pytest.raises(ConfigError, match="augment"):
        check_pipeline(dfr)
