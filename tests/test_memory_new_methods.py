"""Memory accountant for DeeperForward (MLP, CNN with model.pool_every) and IntFF (blocks of several
layers): components equal the measured bytes, the peak matches torch.profiler, spec_from_config
reads pool_every / feature_norm / intff_blocks, and the memory report runs both methods."""

from dataclasses import replace

import pytest
import torch

from experiments.memory_report import Point, point_config, point_rows
from accountant.memory import METHODS, MemorySpec, NumberFormat, cnn_layers, mlp_layers, predict, spec_from_config
from accountant.measure import measure
from onchip_ff import config
from common.errors import ConfigError
from onchip_ff.methods.intff import IntegratedForwardForward

EXACT = ("weights", "optimizer", "inputs", "gradients", "activations")  # compared exactly
PEAK_TOL = 1e-3  # what is left is a few hundred bytes of oneDNN conv-backward scratch and scalar temporaries


def _cfg(method, arch, width, depth, opt, extra=()):
    return config.load(None, [f"model.arch={arch}", f"model.hidden={[width] * depth}",
                              f"model.channels={[width] * depth}", f"objective.method={method}",
                              f"train.optimizer={opt}", "train.threads=1", *extra])


CASES = [  # (method, arch, width, depth, optimizer, batch, overrides)
    ("deeperforward", "mlp", 40, 3, "adam", 16, ()),
    ("deeperforward", "mlp", 40, 3, "sgd", 37, ("objective.feature_norm=group",)),
    ("deeperforward", "cnn", 10, 3, "momentum", 8, ("model.pool_every=2",)),
    ("deeperforward", "cnn", 20, 2, "adam", 5, ("model.pool_every=2", "train.weight_decay=0.1")),
    ("intff", "mlp", 24, 3, "adam", 16, ("objective.intff_blocks=[2, 1]",)),
    ("intff", "mlp", 24, 3, "momentum", 37, ("objective.intff_blocks=[2, 1]",
                                             "objective.next_input_scale=unit")),
]


def assert_prediction_matches_measurement(cfg, method: str, batch: int) -> None:
    """On one thread, the components of EXACT equal the measured bytes and the peak is within
    PEAK_TOL of the profiler's."""
    torch.set_num_threads(1)
    pred = predict(spec_from_config(cfg, batch=batch, method=method))
    meas = measure(cfg, method, batch, steps=2, with_cuda=False)
    for comp in EXACT:
        assert pred.components[comp] == meas[comp], comp
    assert abs(pred.peak_bytes / meas["peak"] - 1) <= PEAK_TOL, (pred.peak_bytes, meas["peak"], pred.peak_phase)


def assert_fixed_point_components_match_the_simulator(cfg, method: str, batch: int) -> None:
    """On the simulator's digital array (8-bit activation codes), EXACT and master_copy equal the
    measured bytes."""
    pred = predict(spec_from_config(cfg, batch=batch))
    meas = measure(cfg, method, batch, act_itemsize=1, with_cuda=False)
    for comp in (*EXACT, "master_copy"):
        assert pred.components[comp] == meas[comp], comp


@pytest.mark.parametrize("method, arch, width, depth, opt, batch, extra", CASES)
def test_components_and_peak_match_measurement(method, arch, width, depth, opt, batch, extra):
    assert_prediction_matches_measurement(_cfg(method, arch, width, depth, opt, extra), method, batch)


@pytest.mark.parametrize("method, arch", [("df", "mlp"), ("bp", "mlp"), ("deeperforward", "cnn")])
@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_adamw_state_and_in_place_decay_match_measurement(method, arch, wd):
    """AdamW keeps Adam's state but decays the parameter in place: with weight decay the step has
    no grad + wd * param copy (Adam's prediction would be 63 kB over the measured peak here)."""
    cfg = _cfg(method, arch, 20, 2, "adamw", ("model.pool_every=2", f"train.weight_decay={wd}"))
    assert_prediction_matches_measurement(cfg, method, 5)


def test_fixed_point_components_match_the_simulator():
    cfg = _cfg("intff", "mlp", 20, 3, "adam", ["objective.intff_blocks=[2, 1]", "hardware.backend=sim",
                                               "hardware.preset=fixed8"])
    assert_fixed_point_components_match_the_simulator(cfg, "intff", 12)


def test_spec_from_config_reads_pool_every_groups_and_blocks():
    cfg = _cfg("deeperforward", "cnn", 10, 4, "sgd", ["model.pool_every=2", "objective.feature_norm=group"])
    spec = spec_from_config(cfg, batch=4)
    assert [layer.pool for layer in spec.layers] == [1, 2, 1, 2] and spec.feature_groups == 10
    assert spec.layers[-1].out_shape == (10, 7, 7)
    spec = spec_from_config(_cfg("intff", "mlp", 8, 3, "sgd", ["objective.intff_blocks=[2, 1]"]), batch=4)
    assert spec.method == "intff" and spec.blocks == (2, 1)
    assert spec_from_config(_cfg("intff", "mlp", 8, 3, "sgd"), batch=4).blocks == (1, 1, 1)
    with pytest.raises(ConfigError, match="negatives"):
        spec_from_config(_cfg("intff", "mlp", 8, 2, "sgd", ["objective.negatives=hard"]))


@pytest.mark.parametrize("kw, needle", [
    (dict(method="intff", layers=cnn_layers((1, 8, 8), (4, 4))), "MLP"),
    (dict(method="intff", intff_blocks=(2, 2)), "summing to its 3 layers"),
    (dict(method="deeperforward"), "multiple of n_classes"),
])
def test_specs_the_learners_reject_are_config_errors(kw, needle):
    base = dict(layers=mlp_layers((1, 8, 8), (16, 12, 8)), input_shape=(1, 8, 8), batch=4)
    with pytest.raises(ConfigError, match=needle):
        MemorySpec(**{**base, **kw})


def test_transient_peak_does_not_grow_with_depth():
    """One layer's (DeeperForward) or one block's (IntFF) graph at a time, as DF."""
    for method, blocks in (("deeperforward", lambda d: ()), ("intff", lambda d: (2,) * (d // 2))):
        peaks = []
        for depth in (4, 12, 24):
            spec = MemorySpec(mlp_layers((1, 28, 28), (250,) * depth), method=method, batch=256,
                              optimizer="sgd", intff_blocks=blocks(depth))
            p = predict(spec).components
            peaks.append(p["activations"] + p["workspace"])
        assert len(set(peaks)) == 1, (method, peaks)


def test_memory_report_runs_both_methods_exactly():
    settings = {"steps": 2, "threads": 1, "seed": 0, "checkpoint_every": 0, "block_size": 2,
                "intff_block_size": 2, "cuda": False}
    intff = Point("intff", "mlp-20", 8, 3, "float32", "adam", "mlp", 20)
    cfg = point_config(intff, settings, NumberFormat())
    assert cfg.objective.intff_blocks == (2, 1)
    assert IntegratedForwardForward(cfg, (1, 28, 28), 10, torch.Generator()).blocks == [[0, 1], [2]]
    dfw = Point("deeperforward", "cnn-10-p2", 8, 2, "float32", "momentum", "cnn", channels=(10,), pool=2)
    for p in (intff, dfw):
        rows = point_rows(p, settings, NumberFormat())
        assert {r["method"] for r in rows} == {p.method}
        for r in rows:
            if r["exact"] and r["component"] not in ("peak", "workspace"):
                assert r["rel_error"] == 0, r
        peak = next(r for r in rows if r["component"] == "peak")
        assert abs(peak["rel_error"]) <= 1e-3, peak


def test_every_method_is_a_memory_method():
    assert {"deeperforward", "intff"} <= set(METHODS)
    spec = MemorySpec(mlp_layers((1, 8, 8), (20, 10)), (1, 8, 8), method="deeperforward", batch=3)
    assert predict(replace(spec, method="intff")).peak_bytes > 0
