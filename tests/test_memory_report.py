"""`onchip-ff memory`: config validation (one line + exit 2), memory.csv / memory.png / ratios.md,
the shipped config's coverage; and the predicted/measured peak that `train` writes to metrics.json."""

import csv
import json
from pathlib import Path

import pytest

from experiments.cli import main
from experiments.memory_report import CHIP_COLUMNS, CSV_COLUMNS, load_memory_config
from accountant.memory import METHODS
from common.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "experiments" / "configs" / "memory_fmnist.toml"
DF_MLP = str(ROOT / "experiments" / "configs" / "df_mlp_fmnist.toml")
TINY = """
[memory]
steps = 2
checkpoint_every = 2
map_batch = [64, 4096]
map_depth = [3, 24]
[memory.formats.w8]
weight_bits = 8
input_bits = 8
[memory.formats.pulses]
pulse_update = true
[[memory.grid]]
method = ["df", "dfo", "ff", "bp", "bp_ckpt"]
arch = ["mlp"]
batch = [8, 24]
depth = [4]
format = ["float32", "pulses"]
optimizer = ["sgd"]
mlp_width = 24
grads = ["kept", "freed"]
[[memory.grid]]
method = ["df", "bp"]
arch = ["cnn"]
batch = [8]
depth = [2]
format = ["float32"]
optimizer = ["adam"]
cnn_channels = [16]
[[memory.grid]]
method = ["df", "bp"]
arch = ["mlp"]
batch = [8]
depth = [2]
format = ["w8"]
optimizer = ["momentum"]
mlp_width = 16
"""


def test_shipped_config_covers_batch_and_depth():
    settings, formats, points = load_memory_config(SHIPPED)
    assert {p.batch for p in points} >= {32, 1024} and min(p.batch for p in points) == 32
    assert max(p.batch for p in points) == 1024
    assert {p.depth for p in points} >= {3, 6, 12} and max(p.depth for p in points) == 12
    assert {p.method for p in points} == set(METHODS)
    assert {p.kind for p in points if p.method == "deeperforward"} == {"mlp", "cnn"}
    assert {p.optimizer for p in points} == {"sgd", "momentum", "adam"}
    assert {p.kind for p in points} == {"mlp", "cnn", "resnet"}
    assert {p.kind for p in points if p.method == "sff"} == {"mlp", "cnn", "resnet"}
    assert {p.pool_every for p in points if p.kind == "resnet"} == {2}
    assert {formats[p.format].acc_bits for p in points if p.format != "float32"} == {16, 32}
    assert {p.grads for p in points} == {"kept", "freed"}


def test_cifar_scale_config_is_the_documented_study():
    """README "CIFAR-10-sized networks": 3x32x32 inputs, VGG- and ResNet-like depth 8, batch 32-256,
    three optimizers, DF / DF-O / BP / BP-ckpt, gradients freed: 72 points; predictions for one."""
    from accountant.memory import predict
    settings, formats, points = load_memory_config(ROOT / "experiments" / "configs" / "memory_cifar_scale.toml")
    assert len(points) == 72 and {p.input_shape for p in points} == {(3, 32, 32)}
    assert {p.kind for p in points} == {"cnn", "resnet"} and {p.depth for p in points} == {8}
    assert {p.batch for p in points} == {32, 128, 256} and {p.grads for p in points} == {"freed"}
    assert {p.optimizer for p in points} == {"sgd", "momentum", "adam"}
    assert {p.method for p in points} == {"df", "dfo", "bp", "bp_ckpt"}
    assert not any(p.shrinks(p.depth) for p in points)
    from experiments.memory_report import point_config
    from accountant.memory import spec_from_config
    p = next(p for p in points if p.method == "df" and p.kind == "cnn" and p.batch == 32)
    cfg = point_config(p, settings, formats[p.format])
    assert predict(spec_from_config(cfg, batch=32, method="df", input_shape=(3, 32, 32))).peak_bytes > 0


def test_memory_command_writes_csv_png_and_ratios(tmp_path, capsys):
    cfg = tmp_path / "mem.toml"
    cfg.write_text(TINY)
    out = tmp_path / "out"
    assert main(["memory", str(cfg), "--out", str(out), "--no-progress"]) == 0
    with (out / "memory.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == CSV_COLUMNS and CSV_COLUMNS[:10] == (
        "method", "arch", "batch", "depth", "format", "optimizer", "component", "predicted_bytes",
        "measured_bytes", "rel_error")
    points = {(r["method"], r["arch"], r["batch"], r["depth"], r["format"], r["optimizer"], r["grads"])
              for r in rows}
    assert len(points) == 5 * 2 * 2 * 2 + 2 + 2
    for r in rows:
        if r["component"] in ("activations+gradients", "activations", "gradients", "weights") \
                or (r["component"] == "peak" and r["exact"] == "True"):
            assert r["measured_bytes"] and abs(float(r["rel_error"])) <= 0.05, r
    freed = [r for r in rows if r["grads"] == "freed" and r["component"] == "gradients"]
    assert freed and all(int(r["predicted_bytes"]) == int(r["measured_bytes"]) == 0 for r in freed)
    sim = [r for r in rows if r["format"] == "w8"]
    assert {r["component"] for r in sim} >= {"sim_cache", "master_copy"}
    assert not {r["component"] for r in sim} & {"peak", "workspace"}  # the simulator's are no chip's
    assert all(r["exact"] == "True" for r in rows if r["component"] != "peak_cuda")  # no unvalidated rows
    with (out / "chip.csv").open() as f:  # the chip view: every point, all rows equal to the tally
        chip = list(csv.DictReader(f))
    assert tuple(chip[0]) == CHIP_COLUMNS and len(chip) == len(points) * 12
    assert all(r["exact"] == "True" and float(r["rel_error"]) == 0.0 for r in chip)
    pulsed = [r for r in chip if r["format"] == "pulses" and r["component"] == "weight_grads_max"]
    # biases and centroids only: no accumulator of a 784 x 24 matrix
    assert len(pulsed) == 20 and all(0 < int(r["tallied"]) < 784 * 24 * 32 for r in pulsed)
    assert (out / "chip.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "memory.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ratios = (out / "ratios.md").read_text()
    assert "DF / BP" in ratios and "analytic map" in ratios and "| 24 |" in ratios
    assert "Chip view" in ratios and "tallied (predicted)" in ratios
    cnn_map = ratios.split("cnn-16-p2, float32, adam")[-1]  # the map; 24 pooled layers leave no pixel
    assert "| 24 | - | - |" in cnn_map and "-: no such network" in cnn_map
    assert "worst abs rel_error" in capsys.readouterr().out
    # results are never overwritten
    assert main(["memory", str(cfg), "--out", str(out)]) == 2
    assert "already holds" in capsys.readouterr().err


@pytest.mark.parametrize("text, needle", [
    ("[memory]\nstepz = 2\n[[memory.grid]]\n", "memory.stepz"),
    ('[memory]\n[[memory.grid]]\nmethod = ["dff"]\narch = ["mlp"]\nbatch = [8]\ndepth = [2]\n'
     'format = ["float32"]\noptimizer = ["sgd"]\n', "method"),
    ('[memory]\n[[memory.grid]]\nmethod = ["df"]\narch = ["cnn"]\nbatch = [8]\ndepth = [6]\n'
     'format = ["float32"]\noptimizer = ["sgd"]\n', "cnn_pool = 1"),
    ('[memory]\n[[memory.grid]]\nmethod = ["df"]\narch = ["mlp"]\nbatch = [0]\ndepth = [2]\n'
     'format = ["float32"]\noptimizer = ["sgd"]\n', "batch"),
    ('[memory]\n[memory.formats.x]\nweight_bits = 40\n[[memory.grid]]\n', "weight_bits"),
    ('[memory]\n[[memory.grid]]\nmethod = ["intff"]\narch = ["cnn"]\nbatch = [8]\ndepth = [2]\n'
     'format = ["float32"]\noptimizer = ["sgd"]\n', "arch 'mlp' only"),
    ('[memory]\n[[memory.grid]]\nmethod = ["deeperforward"]\narch = ["mlp"]\nbatch = [8]\ndepth = [2]\n'
     'format = ["float32"]\noptimizer = ["sgd"]\nmlp_width = 24\n', "multiples of the 10 classes"),
    ("[memory]\nintff_block_size = 0\n[[memory.grid]]\n", "intff_block_size"),
    ("[memory]\n", "no [[memory.grid]]"),
    ("[train]\nepochs = 1\n", "one [memory] table"),
])
def test_bad_memory_configs_are_one_line_errors(tmp_path, capsys, text, needle):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=needle.replace("[", r"\[")):
        load_memory_config(cfg)
    out = tmp_path / "never"
    assert main(["memory", str(cfg), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("onchip-ff: error:") and needle in err
    assert not out.exists()
    assert main(["memory", str(tmp_path / "missing.toml")]) == 2
    assert "not found" in capsys.readouterr().err


TRAIN_TINY = ["--set", "data.name=synthetic", "--set", "model.hidden=[32, 32]", "--set", "train.epochs=1",
              "--set", "data.synthetic_train=200", "--set", "data.synthetic_test=50", "--set", "train.threads=1",
              "--set", "train.batch_size=50", "--no-progress"]


@pytest.mark.parametrize("extra", [[], ["--set", "objective.method=bp"], ["--set", "objective.method=ff"],
                                   ["--set", "model.arch=cnn", "--set", "model.channels=[8, 16]"]])
def test_train_metrics_hold_predicted_and_measured_peak(tmp_path, capsys, extra):
    out = tmp_path / "run"
    assert main(["train", DF_MLP, *TRAIN_TINY, *extra, "--out", str(out)]) == 0
    assert "USDT" not in capsys.readouterr().err  # profiler chatter stays off the terminal
    mem = json.loads((out / "metrics.json").read_text())["memory"]
    assert mem["measured_steps"] == 2 and mem["predicted_peak_bytes"] > 0
    assert abs(mem["predicted_peak_bytes"] / mem["measured_peak_bytes"] - 1) <= 0.05
    assert mem["rel_error"] == pytest.approx(mem["predicted_peak_bytes"] / mem["measured_peak_bytes"] - 1)
    assert set(mem["predicted_components"]) >= {"weights", "optimizer", "activations", "gradients"}


def test_the_chip_view_is_compared_at_the_batch_the_tally_saw(tmp_path):
    """200 samples in batches of 128: the tallied second step holds 72; the chip view is predicted
    for 72 too (it was compared at 128: 58 % apart on pcm)."""
    tiny = [a if a != "train.batch_size=50" else "train.batch_size=128" for a in TRAIN_TINY]
    for preset in ("pcm", "fixed8"):
        out = tmp_path / preset
        assert main(["train", DF_MLP, *tiny, "--set", "hardware.backend=sim", "--set", f"hardware.preset={preset}",
                     "--out", str(out)]) == 0
        mem = json.loads((out / "metrics.json").read_text())["memory"]
        assert mem["chip_tallied_peak_bits"] == mem["chip_predicted_peak_bits"] > 0 and mem["chip_rel_error"] == 0


def test_train_metrics_on_the_simulator_and_without_a_prediction(tmp_path):
    out = tmp_path / "sim"
    assert main(["train", DF_MLP, *TRAIN_TINY, "--set", "hardware.backend=sim", "--set", "hardware.preset=fixed8",
                 "--out", str(out)]) == 0
    mem = json.loads((out / "metrics.json").read_text())["memory"]
    assert mem["measured_peak_bytes"] > mem["predicted_peak_bytes"] > 0 and mem["rel_error"] is None
    assert "hardware view" in mem["note"]
    assert mem["chip_tallied_peak_bits"] == mem["chip_predicted_peak_bits"] > 0 and mem["chip_rel_error"] == 0
    out = tmp_path / "hard"
    assert main(["train", DF_MLP, *TRAIN_TINY, "--set", "objective.method=ff", "--set",
                 "objective.negatives=hard", "--out", str(out)]) == 0
    mem = json.loads((out / "metrics.json").read_text())["memory"]
    assert mem["predicted_peak_bytes"] is None and "negatives" in mem["note"] and mem["measured_peak_bytes"] > 0


def test_memory_points_go_through_the_results_store_and_resume(tmp_path, capsys):
    """Each point is a run of the experiment runner: an interrupted command (outputs not written
    yet) resumes from OUT/memory.sqlite without measuring finished points again."""
    import sqlite3
    cfg = tmp_path / "mem.toml"
    cfg.write_text(TINY)
    out = tmp_path / "out"
    argv = ["memory", str(cfg), "--out", str(out), "--no-progress", "--executor", "inline"]
    assert main(argv) == 0
    first = (out / "memory.csv").read_text()
    db = sqlite3.connect(out / "memory.sqlite")
    runs = db.execute("SELECT key, status, attempts, started FROM runs ORDER BY key").fetchall()
    db.close()
    assert len(runs) == 44 and {(s, a) for _, s, a, _ in runs} == {("done", 1)}
    for name in ("memory.csv", "memory.png", "chip.csv", "chip.png", "ratios.md"):  # as if stopped before the outputs
        (out / name).unlink()
    capsys.readouterr()
    assert main(argv) == 0
    assert "44 done, 0 failed, 0 to run" in capsys.readouterr().err
    db = sqlite3.connect(out / "memory.sqlite")
    assert db.execute("SELECT key, status, attempts, started FROM runs ORDER BY key").fetchall() == runs
    db.close()
    assert (out / "memory.csv").read_text() == first
