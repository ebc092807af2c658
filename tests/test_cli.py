"""The CLI contract: outputs of `train`, and one line + exit 2 for every kind of bad input."""

import csv
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from experiments.cli import main

ROOT = Path(__file__).resolve().parents[1]
DF_MLP = str(ROOT / "experiments" / "configs" / "df_mlp_fmnist.toml")
TINY = ["--set", "data.name=synthetic", "--set", "model.hidden=[16, 16]", "--set", "train.epochs=2",
        "--set", "data.synthetic_train=200", "--set", "data.synthetic_test=100", "--set", "train.threads=1"]


def _one_line_error(capsys, argv, *needles):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("onchip-ff: error:"), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err
    return err


def test_train_writes_metrics_checkpoint_and_resolved_config(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", DF_MLP, *TINY, "--out", str(out), "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("test_accuracy", "train_accuracy", "epochs", "wall_s", "method", "backend", "seed", "history"):
        assert key in metrics
    assert 0 <= metrics["test_accuracy"] <= 1 and metrics["epochs"] == 2 and len(metrics["history"]) == 2
    assert metrics["method"] == "df" and metrics["backend"] == "torch" and metrics["status"] == "done"
    resolved = tomllib.loads((out / "config.toml").read_text())
    assert resolved["model"]["hidden"] == [16, 16] and resolved["objective"]["scale"] == 16.0
    assert set(resolved) == {"data", "model", "objective", "train", "hardware", "deploy"}
    import torch
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    assert ckpt["epoch"] == 2 and "layers.0.linear.weight" in ckpt["model"]
    # the resolved config reproduces the run exactly
    out2 = tmp_path / "again"
    assert main(["train", str(out / "config.toml"), "--out", str(out2), "--no-progress"]) == 0
    again = json.loads((out2 / "metrics.json").read_text())
    assert [h["loss"] for h in again["history"]] == [h["loss"] for h in metrics["history"]]
    assert "test accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("override, needle", [
    ("objective.scal=1", "objective.scal"),
    ("train.epochs=two", "train.epochs"),
    ("train.lr=0", "train.lr"),
    ("model.arch=rnn", "model.arch"),
    ("hardware.backend=gpu", "hardware.backend"),
    ("hardware.preset=flash", "hardware.preset"),
    ("hardware.adc_bits=0.5", "hardware.adc_bits"),
])
def test_bad_config_values(tmp_path, capsys, override, needle):
    out = tmp_path / "never"
    _one_line_error(capsys, ["train", DF_MLP, *TINY, "--set", override, "--out", str(out)], needle)
    assert not out.exists()


def test_missing_data_says_how_to_get_it(tmp_path, capsys):
    _one_line_error(capsys, ["train", DF_MLP, "--set", f"data.root={tmp_path}", "--out", str(tmp_path / "o")],
                    "apt-get install dataset-fashion-mnist")


def test_missing_config_and_bad_usage(tmp_path, capsys):
    _one_line_error(capsys, ["train", str(tmp_path / "nope.toml")], "not found")
    _one_line_error(capsys, ["trian", DF_MLP], "invalid choice")
    _one_line_error(capsys, ["train", DF_MLP, "--set", "epochs"], "section.key=value")


def test_unwritable_out(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _one_line_error(capsys, ["train", DF_MLP, *TINY, "--out", str(blocker / "sub")], "--out", "not writable")
    _one_line_error(capsys, ["train", DF_MLP, *TINY, "--out", str(blocker)], "is a file")


def test_existing_results_are_never_overwritten(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text("precious")
    _one_line_error(capsys, ["train", DF_MLP, *TINY, "--out", str(out)], "already holds metrics.json")
    assert (out / "metrics.json").read_text() == "precious"
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json"]


def test_debug_shows_traceback(capsys):
    assert main(["--debug", "train", DF_MLP, "--set", "train.lr=0"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "train.lr" in err.strip().splitlines()[-1]


def test_console_script_exit_code_and_progress_bar(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    bad = subprocess.run([sys.executable, "-m", "experiments.cli", "train", DF_MLP, "--set", "train.lr=-1"],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "train.lr" in bad.stderr
    ok = subprocess.run([sys.executable, "-m", "experiments.cli", "train", DF_MLP, *TINY,
                         "--out", str(tmp_path / "r")], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "step" in ok.stderr and "100%" in ok.stderr  # tqdm bar on stderr


def test_demo_writes_plot_summary_and_runs(tmp_path, capsys):
    from experiments.demo import run_demo
    tiny = ["data.name=synthetic", "model.hidden=[16, 16]", "data.synthetic_train=200",
            "data.synthetic_test=100", "train.threads=1", "data.train_limit=0"]
    assert run_demo(tmp_path, epochs=2, progress=False, overrides=tiny) == 0
    assert (tmp_path / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary) == {"df", "bp", "df_sim_fixed8", "df_sim_pcm"}
    assert all(0 <= s["test_accuracy"] <= 1 and s["epochs"] == 2 for s in summary.values())
    for run, preset in (("df_sim_fixed8", "fixed8"), ("df_sim_pcm", "pcm")):
        assert json.loads((tmp_path / run / "metrics.json").read_text())["backend"] == "sim"
        assert tomllib.loads((tmp_path / run / "config.toml").read_text())["hardware"]["preset"] == preset
    for name in ("robustness.png", "drift.png"):
        assert (tmp_path / "robustness" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader(open(tmp_path / "robustness" / "robustness.csv")))
    assert {r["method"] for r in rows} == {"df", "bp"} and {r["status"] for r in rows} == {"done"}
    assert "df_sim_pcm" in capsys.readouterr().out
    assert main(["demo", "--epochs", "0", "--out", str(tmp_path / "x")]) == 2


def test_bench_writes_entries(tmp_path, monkeypatch):
    import experiments.bench as bench
    monkeypatch.setattr(bench, "LAYERS", (784, 16, 16, 16))
    assert main(["bench", "--out", str(tmp_path), "--batch", "4", "--repeats", "1", "--contention"]) == 0
    entries = json.loads((tmp_path / "bench.json").read_text())["entries"]
    names = {e["name"] for e in entries}
    steps = {f"{m} train step sim/{p}" for m in ("DF", "BP") for p in bench.STEP_CONFIGS}
    assert steps | {"fixed8 MVM", "pcm noisy forward MVM", "pcm inference forward, 1 day",
                    "pcm program + 1 day drift"} <= names
    contention = [e for e in entries if "slowdown" in e]
    assert len(contention) == 1 + len(bench.STEP_CONFIGS)
    for e in entries:
        if "slowdown" in e:
            assert e["slowdown"] == e["shared_s"] / e["alone_s"] and e["met"] == (e["slowdown"] <= 2)
            continue
        assert e["sim_s"] > 0
        if e["name"] == "pcm program + 1 day drift":  # no torch equivalent
            assert e["torch_s"] is None and e["ratio_to_torch"] is None
        else:
            assert e["torch_s"] > 0 and e["ratio_to_torch"] == e["sim_s"] / e["torch_s"]
        if e["name"] in steps:
            assert e["target"] == 2 and e["met"] == (e["ratio_to_torch"] <= 2)
            assert ("pulses_per_step" in e) == ("pulsed" in e["name"])
            if "pulses_per_step" in e:
                assert e["pulses_per_step"] > 0 and e["max_pulses_per_device"] > 0
    table = (tmp_path / "bench.md").read_text()
    assert table.count("\n") == len(entries) + 2 and "DF train step sim/pulsed_constant" in table


def test_bench_refuses_a_missing_aihwkit_interpreter(tmp_path, capsys):
    assert main(["bench", "--out", str(tmp_path / "b"), "--aihwkit", str(tmp_path / "no-python")]) == 2
    assert "no such interpreter" in capsys.readouterr().err


def test_busy_loops_are_stopped():
    import experiments.bench as bench
    with bench.busy_loops(2) as procs:
        assert len(procs) == 2 and all(p.poll() is None for p in procs)  # spinning
    assert all(p.returncode is not None for p in procs)  # killed and reaped
