"""The IntFF noisy-input mix: part sizes, the statistics of each part, seeding, config and CLI wiring."""

import json
from pathlib import Path

import numpy as np
import pytest

from experiments.cli import main
from onchip_ff import config
from onchip_ff.corruption import intff_mix, intff_mix_parts, part_counts
from onchip_ff.data import load_dataset
from common.errors import ConfigError

from conftest import SYNTHETIC, TINY_MLP

jitfree = pytest.mark.jitfree
DF_MLP = str(Path(__file__).resolve().parents[1] / "experiments" / "configs" / "df_mlp_fmnist.toml")
SETTINGS = dict(gaussian_fraction=0.25, dropout_fraction=0.25, noise_fraction=0.25,
                gaussian_std=0.3, dropout_p=0.3)


def _data(n, side=8, n_classes=10, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.05, 1.0, size=(n, 1, side, side)).astype(np.float32)  # no exact zeros
    return x, rng.integers(0, n_classes, size=n).astype(np.int64)


def _mix(x, y, seed=1, n_classes=10, **overrides):
    return intff_mix_parts(x, y, **{**SETTINGS, **overrides}, n_classes=n_classes,
                           rng=np.random.default_rng(seed))


@jitfree
@pytest.mark.parametrize("n, expected", [
    (1, (1, 0, 0, 0)), (3, (3, 0, 0, 0)), (4, (1, 1, 1, 1)), (7, (4, 1, 1, 1)),
    (10, (4, 2, 2, 2)), (1001, (251, 250, 250, 250)), (0, (0, 0, 0, 0)),
])
def test_part_counts_floor_corrupted_parts_rest_clean(n, expected):
    counts = part_counts(n, 0.25, 0.25, 0.25)
    assert tuple(counts[p] for p in ("clean", "gaussian", "dropout", "noise")) == expected
    x, y = _data(n)
    _, _, parts = _mix(x, y)
    assert {p: len(i) for p, i in parts.items()} == counts
    assert np.array_equal(np.sort(np.concatenate(list(parts.values()))), np.arange(n))


@jitfree
def test_part_counts_absorb_float_error_and_reject_overfull():
    assert part_counts(100, 0.29, 0.0, 0.0)["gaussian"] == 29  # 0.29 * 100 = 28.999999999999996
    assert part_counts(10, 0.1, 0.2, 0.7) == {"clean": 0, "gaussian": 1, "dropout": 2, "noise": 7}
    with pytest.raises(ValueError):
        part_counts(10, 0.5, 0.5, 0.5)


@jitfree
def test_each_part_has_its_property():
    n, n_classes, std, p = 4000, 10, 0.3, 0.3
    x, y = _data(n, n_classes=n_classes)
    x_in, y_in = x.copy(), y.copy()
    xo, yo, parts = _mix(x, y, n_classes=n_classes)
    assert np.array_equal(x, x_in) and np.array_equal(y, y_in)  # inputs untouched
    assert xo.dtype == np.float32 and yo.dtype == np.int64 and xo.shape == x.shape
    c, g, d, z = (parts[k] for k in ("clean", "gaussian", "dropout", "noise"))
    # clean: bit-identical, labels too; labels of gaussian/dropout parts are kept
    assert np.array_equal(xo[c], x[c]) and np.array_equal(yo[c], y[c])
    assert np.array_equal(yo[g], y[g]) and np.array_equal(yo[d], y[d])
    # gaussian: residual ~ N(0, std^2)
    res = (xo[g].astype(np.float64) - x[g]).ravel()
    se = std / np.sqrt(res.size)
    assert abs(res.mean()) < 4 * se
    assert abs(res.std() - std) < 4 * std / np.sqrt(2 * res.size)
    # dropout: zeros where dropped, original values elsewhere, rate ~ p
    dropped = xo[d] == 0
    assert np.array_equal(xo[d][~dropped], x[d][~dropped])
    rate = dropped.mean()
    assert abs(rate - p) < 4 * np.sqrt(p * (1 - p) / dropped.size)
    # pure noise: uniform over the data's range, independent of the original images
    lo, hi = float(x.min()), float(x.max())
    noise = xo[z].astype(np.float64)
    assert noise.min() >= lo and noise.max() <= hi
    assert abs(noise.mean() - (lo + hi) / 2) < 4 * (hi - lo) / np.sqrt(12 * noise.size)
    corr = np.corrcoef(noise.ravel(), x[z].ravel())[0, 1]
    assert abs(corr) < 4 / np.sqrt(noise.size)
    # pure-noise labels: uniform (chi-square, df = 9, p ~ 1e-4 cut) and unrelated to the originals
    counts = np.bincount(yo[z], minlength=n_classes)
    expected = len(z) / n_classes
    assert ((counts - expected) ** 2 / expected).sum() < 33.7
    agree = (yo[z] == y[z]).mean()
    assert abs(agree - 1 / n_classes) < 4 * np.sqrt(0.1 * 0.9 / len(z))


@jitfree
def test_zero_strength_settings_and_zero_fractions():
    x, y = _data(50)
    xo, yo, parts = _mix(x, y, gaussian_std=0.0, dropout_p=0.0)
    keep = np.concatenate([parts["clean"], parts["gaussian"], parts["dropout"]])
    assert np.array_equal(xo[keep], x[keep]) and np.array_equal(yo[keep], y[keep])
    xo, _, _ = _mix(x, y, dropout_p=1.0)
    assert not xo[parts["dropout"]].any()
    xo, yo = intff_mix(x, y, **{**SETTINGS, "gaussian_fraction": 0, "dropout_fraction": 0,
                                "noise_fraction": 0}, n_classes=10, rng=np.random.default_rng(0))
    assert np.array_equal(xo, x) and np.array_equal(yo, y)


@jitfree
def test_same_seed_same_output_different_seed_different():
    x, y = _data(200)
    a, b, c = (intff_mix(x, y, **SETTINGS, n_classes=10, rng=np.random.default_rng(s)) for s in (5, 5, 6))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def _synthetic(**kw):
    return config.DataConfig(name="synthetic", synthetic_train=400, synthetic_test=100, **kw)


@jitfree
@pytest.mark.parametrize("normalize", [True, False])
def test_load_dataset_corrupts_training_split_only(normalize):
    clean = load_dataset(_synthetic(normalize=normalize))
    mixed = load_dataset(_synthetic(normalize=normalize, corruption="intff_mix"))
    assert np.array_equal(clean.x_test, mixed.x_test) and np.array_equal(clean.y_test, mixed.y_test)
    assert mixed.x_train.shape == clean.x_train.shape and mixed.x_train.dtype == np.float32
    assert mixed.y_train.dtype == np.int64
    same = (mixed.x_train == clean.x_train).all(axis=(1, 2, 3))
    assert same.sum() == 100  # the clean quarter of 400
    again = load_dataset(_synthetic(normalize=normalize, corruption="intff_mix"))
    assert np.array_equal(again.x_train, mixed.x_train)
    other = load_dataset(_synthetic(normalize=normalize, corruption="intff_mix", corruption_seed=1))
    assert not np.array_equal(other.x_train, mixed.x_train)


@jitfree
@pytest.mark.parametrize("kw, field", [
    (dict(corruption="gauss"), "data.corruption"),
    (dict(corruption_gaussian_fraction=1.5), "data.corruption_gaussian_fraction"),
    (dict(corruption_dropout_fraction=-0.1), "data.corruption_dropout_fraction"),
    (dict(corruption_noise_fraction=0.6), "data.corruption_noise_fraction"),  # sum 1.1 > 1
    (dict(corruption_gaussian_std=-1.0), "data.corruption_gaussian_std"),
    (dict(corruption_dropout_p=1.5), "data.corruption_dropout_p"),
])
def test_config_rejects_bad_corruption_settings(kw, field):
    with pytest.raises(ConfigError, match=field):
        config.DataConfig(**kw)


@jitfree
def test_config_accepts_fractions_summing_to_one():
    cfg = config.DataConfig(corruption="intff_mix", corruption_gaussian_fraction=0.1,
                            corruption_dropout_fraction=0.2, corruption_noise_fraction=0.7)
    assert cfg.corruption == "intff_mix"


def test_cli_train_with_intff_mix(tmp_path, capsys):
    out = tmp_path / "run"
    sets = [a for kv in SYNTHETIC + TINY_MLP + ["train.epochs=1", "data.corruption=intff_mix",
                                                "data.corruption_gaussian_std=0.2"] for a in ("--set", kv)]
    assert main(["train", DF_MLP, *sets, "--out", str(out), "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["test_accuracy"] <= 1 and metrics["epochs"] == 1
    capsys.readouterr()


def test_cli_bad_corruption_is_one_line_error(tmp_path, capsys):
    code = main(["train", DF_MLP, "--set", "data.name=synthetic", "--set", "data.corruption=salt",
                 "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "data.corruption" in err and len(err.strip().splitlines()) == 1
