"""`onchip-ff deploy`: a trained run programmed onto pcm tiles, evaluated over time after programming."""

import csv
import json

from experiments.cli import main

from test_cli import DF_MLP, TINY

ZERO_NOISE = ["hardware.pcm.prog_noise_scale=0", "hardware.pcm.drift_scale=0",
              "hardware.pcm.read_noise_scale=0", "hardware.out_noise=0", "hardware.adc_bits=0", "hardware.dac_bits=0"]


def _trained(tmp_path):
    run = tmp_path / "run"
    assert main(["train", DF_MLP, *TINY, "--out", str(run), "--no-progress"]) == 0
    return run, json.loads((run / "metrics.json").read_text())["test_accuracy"]


def test_zero_noise_deployment_equals_the_trained_model(tmp_path, capsys):
    run, float_acc = _trained(tmp_path)
    argv = ["deploy", str(run), "--out", str(tmp_path / "dep")]
    for s in ZERO_NOISE:
        argv += ["--set", s]
    assert main(argv) == 0
    rows = list(csv.DictReader(open(tmp_path / "dep" / "deploy.csv")))
    assert len(rows) == 10 and set(rows[0]) == {"seed", "compensation", "time", "time_s", "test_accuracy"}
    assert all(float(r["test_accuracy"]) == float_acc for r in rows)


def test_noisy_deployment_writes_csv_and_plot_and_rejects_bad_input(tmp_path, capsys):
    run, _ = _trained(tmp_path)
    assert main(["deploy", str(run), "--seeds", "2", "--out", str(tmp_path / "dep")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "dep" / "deploy.csv")))
    assert len(rows) == 20 and {r["time"] for r in rows} == {"1 s", "1 h", "1 day", "1 month", "1 year"}
    assert all(0 <= float(r["test_accuracy"]) <= 1 for r in rows)
    assert (tmp_path / "dep" / "drift.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()
    assert main(["deploy", str(tmp_path / "nothing")]) == 2
    assert "checkpoint.pt" in capsys.readouterr().err
    assert main(["deploy", str(run), "--set", "hardware.pcm.drift_nu_std=-1", "--out", str(tmp_path / "x")]) == 2
    assert "hardware.pcm.drift_nu_std" in capsys.readouterr().err
