"""`onchip-ff crosscheck aihwkit` without aihwkit: a one-line error; with aihwkit's half replaced by
a second run of ours (another seed), the command's comparison, tables and files."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

import experiments.crosscheck as cc
from experiments.cli import main


def test_missing_aihwkit_is_one_line_and_exit_2(tmp_path, capsys):
    for python in (str(tmp_path / "nope"), sys.executable):  # absent; present but without aihwkit
        assert main(["crosscheck", "aihwkit", "--python", python, "--out", str(tmp_path / "cc")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "make aihwkit-venv" in err
    assert main(["crosscheck", "aihwkit", "--draws", "1"]) == 2
    assert "--draws must be >= 2" in capsys.readouterr().err
    assert not (tmp_path / "cc").exists()


def _ours_as_aihwkit(python, settings, out_dir):
    """Stand-in for aihwkit's half: our model with another seed, in aihwkit_side.py's format."""
    dev = cc.our_device_moments(int(settings["n_devices"]), int(settings["seed"]) + 77)
    mean, std, alpha = cc.our_layer_outputs(settings["weight"], settings["x"], int(settings["draws"]),
                                            int(settings["seed"]) + 77)
    return {"dev_mean": dev["mean"], "dev_std": dev["std"], "layer_mean": mean, "layer_std": std,
            "alpha": alpha, "seconds": np.array([0.0, 0.0]), "version": np.array("stand-in")}


def test_comparison_of_two_runs_of_the_same_model(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cc, "find_python", lambda explicit: "python")
    monkeypatch.setattr(cc, "run_aihwkit", _ours_as_aihwkit)
    rc = main(["crosscheck", "aihwkit", "--out", str(tmp_path), "--devices", "20000", "--draws", "4",
               "--batch", "2"])
    out = capsys.readouterr().out
    assert "pcm vs aihwkit stand-in" in out
    data = json.loads((tmp_path / "crosscheck_aihwkit.json").read_text())
    cmp = data["comparison"]
    # 4 programmings: the per-output layer maxima are sampling-dominated and may exceed the bound
    worst = max(np.max(cmp[k]) for k in ("device_rel_mean", "device_rel_std", "layer_dmean_max",
                                         "layer_dstd_max"))
    assert rc == (0 if worst <= cc.TOLERANCE else 1)
    assert ("within the 3 % bound" in out) == (rc == 0)
    rel_mean, rel_std = np.array(cmp["device_rel_mean"]), np.array(cmp["device_rel_std"])
    assert rel_mean.shape == (len(cc.G_NORM), len(cc.DEVICE_TIMES_S))
    assert rel_mean.max() < 0.02 and rel_std.max() < 0.05  # same model: sampling differences only
    ours = data["ours"]  # the formula against our own samples, within 5 standard errors
    se = np.array(ours["std"]) / np.sqrt(20000)
    assert np.all(np.abs(np.array(ours["mean"]) - np.array(ours["formula_mean"])) < 5 * se)
    # identical simulators: the systematic layer difference is small next to the sampling floor
    assert np.all(np.array(cmp["layer_dmean_systematic"]) <= 2 * np.array(cmp["layer_dmean_floor"]))
    md = (tmp_path / "crosscheck_aihwkit.md").read_text()
    assert md.count("\n| 0.05 |") == len(cc.DEVICE_TIMES_S) and "| 1 year |" in md


def test_a_model_off_by_10_percent_fails_the_check(tmp_path, monkeypatch, capsys):
    def off(python, settings, out_dir):
        res = _ours_as_aihwkit(python, settings, out_dir)
        return {**res, "dev_mean": res["dev_mean"] * 1.1}
    monkeypatch.setattr(cc, "find_python", lambda explicit: "python")
    monkeypatch.setattr(cc, "run_aihwkit", off)
    assert main(["crosscheck", "aihwkit", "--out", str(tmp_path), "--devices", "20000", "--draws", "2",
                 "--batch", "1"]) == 1
    assert "BEYOND the 3 % bound" in capsys.readouterr().out
    md = (tmp_path / "crosscheck_aihwkit.md").read_text()
    device_rows = [line for line in md.splitlines() if line.startswith("| 0.") or line.startswith("| 1.0 |")]
    assert device_rows and all("✗" in line.split("|")[6] for line in device_rows)


def test_compare_of_identical_results_is_zero():
    rng = np.random.default_rng(0)
    dev = {"mean": rng.uniform(0.1, 1, (6, 4)), "std": rng.uniform(0.01, 0.1, (6, 4))}
    mean, std = rng.standard_normal((3, 2, 5)), rng.uniform(0.1, 0.2, (3, 2, 5))
    alpha = np.ones((3, 4))
    aih = {"dev_mean": dev["mean"], "dev_std": dev["std"], "layer_mean": mean, "layer_std": std, "alpha": alpha}
    cmp = cc.compare(dev, aih, (mean, std, alpha), mean[None, 0], draws=4)
    for key in ("device_rel_mean", "device_rel_std", "layer_dmean_max", "layer_dstd_max",
                "layer_dmean_systematic", "layer_dstd_systematic"):
        assert np.all(np.asarray(cmp[key]) == 0), key
    assert np.allclose(cmp["layer_dmean_floor"], np.sqrt(np.mean(2 * std ** 2 / 4, axis=(1, 2))) / cmp["output_rms"])


@pytest.mark.parametrize("bad", [["--devices", "10"], ["--batch", "0"], ["--threads", "0"]])
def test_bad_sizes_are_refused(bad, capsys):
    assert main(["crosscheck", "aihwkit", *bad]) == 2
    assert bad[0] in capsys.readouterr().err
