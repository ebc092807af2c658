"""Memory accountant for Scalable FF (MLP, CNN, ResNet) and for the ResNet (residual blocks) under
BP, checkpointed BP and the other layer-local methods: components equal the measured bytes, the
peak matches torch.profiler, the memory report and `train`'s metrics.json carry SFF and ResNet
predictions."""

import json
from pathlib import Path

import pytest
import torch

from experiments.cli import main
from experiments.memory_report import load_memory_config, point_rows
from accountant.memory import MemorySpec, NumberFormat, mlp_layers, predict, resnet_layers, spec_from_config
from onchip_ff import config
from common.errors import ConfigError
from onchip_ff.methods.sff import ScalableForwardForward

from test_memory_new_methods import (PEAK_TOL, assert_fixed_point_components_match_the_simulator,
                                     assert_prediction_matches_measurement)

ROOT = Path(__file__).resolve().parents[1]


def _cfg(method, arch, widths, opt, extra=()):
    base = {"dfo": "df", "bp_ckpt": "bp"}.get(method, method)
    return config.load(None, [f"model.arch={arch}", f"model.hidden={widths}", f"model.channels={widths}",
                              f"objective.method={base}", f"train.optimizer={opt}", "train.threads=1",
                              *extra])


# Channels are multiples of the 16-channel oneDNN block: below 16 channels oneDNN picks other
# layouts in a conv's backward than hw_models/memory_layers._onednn describes (also for plain CNNs).
# Batches below 16 on one thread run the 1x1 convolutions (SFF heads, shortcuts) without oneDNN.
CASES = [  # (method, arch, widths, optimizer, batch, overrides)
    ("sff", "mlp", [40, 30, 20], "adam", 16, ()),
    ("sff", "mlp", [40, 30, 20], "sgd", 37, ()),
    ("sff", "cnn", [16, 32], "momentum", 8, ()),
    ("sff", "cnn", [16, 32], "adam", 24, ("train.weight_decay=0.1",)),
    ("sff", "resnet", [16, 32], "adam", 8, ()),
    ("sff", "resnet", [16, 16, 32], "adam", 20, ("model.pool_every=2",)),
    ("bp", "resnet", [16, 32], "adam", 8, ()),
    ("bp", "resnet", [16, 32], "sgd", 24, ()),
    ("bp", "resnet", [16, 16, 32], "momentum", 20, ("model.pool_every=2",)),
    ("bp_ckpt", "resnet", [16, 16, 32], "adam", 20, ()),
    ("df", "resnet", [16, 32], "adam", 16, ()),
    ("ff", "resnet", [16, 32], "sgd", 8, ()),
    ("deeperforward", "resnet", [20, 40], "adam", 16, ()),
]


@pytest.mark.parametrize("method, arch, widths, opt, batch, extra", CASES)
def test_components_and_peak_match_measurement(method, arch, widths, opt, batch, extra):
    assert_prediction_matches_measurement(_cfg(method, arch, widths, opt, extra), method, batch)


def test_fixed_point_sff_components_match_the_simulator():
    cfg = _cfg("sff", "mlp", [20, 20], "adam", ["hardware.backend=sim", "hardware.preset=fixed8"])
    assert_fixed_point_components_match_the_simulator(cfg, "sff", 12)


def test_spec_from_config_reads_resnet_blocks_and_sff_heads():
    cfg = _cfg("sff", "resnet", [16, 16, 32], "adam", ["model.pool_every=2"])
    spec = spec_from_config(cfg, batch=4)
    assert spec.method == "sff" and [layer.kind for layer in spec.layers] == ["res"] * 3
    assert [layer.pool for layer in spec.layers] == [1, 2, 1] and spec.layers[-1].out_shape == (32, 14, 14)
    learner = ScalableForwardForward(cfg, (1, 28, 28), 10, torch.Generator())
    assert 4 * sum(p.numel() for p in learner.parameters()) == predict(spec).components["weights"]
    with pytest.raises(ConfigError, match="MLP"):
        MemorySpec(resnet_layers((1, 8, 8), (16,)), (1, 8, 8), method="intff", batch=4)


def test_sff_transient_peak_does_not_grow_with_depth():
    """One block's graph at a time, as DF."""
    peaks = []
    for depth in (4, 12, 24):
        spec = MemorySpec(mlp_layers((1, 28, 28), (250,) * depth), method="sff", batch=256, optimizer="sgd")
        p = predict(spec).components
        peaks.append(p["activations"] + p["workspace"])
    assert len(set(peaks)) == 1, peaks


def test_memory_report_accepts_sff_and_resnet(tmp_path):
    torch.set_num_threads(1)  # memory.threads, as execute_point sets it (oneDNN scratch grows with threads)
    cfg = tmp_path / "mem.toml"
    cfg.write_text('[memory]\n[[memory.grid]]\nmethod = ["sff", "bp"]\narch = ["resnet"]\nbatch = [16]\n'
                   'depth = [2]\nformat = ["float32"]\noptimizer = ["adam"]\ncnn_channels = [16]\n'
                   'cnn_pool_every = 2\n')
    settings, _, points = load_memory_config(cfg)
    assert {p.arch for p in points} == {"resnet-16-p2e2"} and {p.method for p in points} == {"sff", "bp"}
    cfg.write_text(cfg.read_text().replace("depth = [2]", "depth = [12]"))
    with pytest.raises(ConfigError, match="shrinks 28x28"):
        load_memory_config(cfg)
    settings["cuda"] = False
    for p in points:
        rows = point_rows(p, settings, NumberFormat())
        for r in rows:
            if r["exact"] and r["component"] not in ("peak", "workspace"):
                assert r["rel_error"] == 0, r
        peak = next(r for r in rows if r["component"] == "peak")
        assert abs(peak["rel_error"]) <= PEAK_TOL, peak


TRAIN_TINY = ["--set", "data.name=synthetic", "--set", "train.epochs=1", "--set", "data.synthetic_train=100",
              "--set", "data.synthetic_test=20", "--set", "train.threads=1", "--set", "train.batch_size=50",
              "--set", "objective.method=sff", "--no-progress"]


@pytest.mark.parametrize("arch", [["--set", "model.hidden=[32, 32]"],
                                  ["--set", "model.arch=resnet", "--set", "model.channels=[16, 16]"]])
def test_train_metrics_of_an_sff_run_hold_a_prediction(tmp_path, arch):
    out = tmp_path / "run"
    assert main(["train", str(ROOT / "experiments" / "configs" / "df_mlp_fmnist.toml"), *TRAIN_TINY, *arch,
                 "--out", str(out)]) == 0
    mem = json.loads((out / "metrics.json").read_text())["memory"]
    assert "note" not in mem and mem["measured_steps"] == 2 and mem["predicted_peak_bytes"] > 0
    # the tolerance of tests/test_memory_report.py for `train` (the probe sees the whole run's allocator)
    assert abs(mem["rel_error"]) <= 0.05, mem
