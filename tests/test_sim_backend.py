"""`hardware.backend = "sim"`: the learners run on simulated tiles; ideal equals the float reference,
every preset trains, device fields are overridable from the config and the CLI."""

from __future__ import annotations

import json
import tomllib

import numpy as np
import pytest
import torch

from experiments.cli import main
from hw_models.tiles.digital import DigitalTile
from hw_models.presets import PRESETS
from onchip_ff import config
from onchip_ff.data import load_dataset
from onchip_ff.methods import build_learner
from onchip_ff.trainer import train

from conftest import tiny_config


def _pair(method, arch="mlp", extra=()):
    cfg = tiny_config(method, arch, extra=list(extra))
    sim_cfg = tiny_config(method, arch, extra=list(extra) + ["hardware.backend=sim", "hardware.preset=ideal"])
    data = load_dataset(cfg.data)
    ref = build_learner(cfg, data.input_shape, data.n_classes, torch.Generator().manual_seed(0))
    sim = build_learner(sim_cfg, data.input_shape, data.n_classes, torch.Generator().manual_seed(0))
    return ref, sim, data


@pytest.mark.parametrize("method, arch", [("df", "mlp"), ("df", "cnn"), ("ff", "mlp"), ("bp", "mlp"), ("bp", "cnn")])
def test_ideal_sim_steps_match_the_float_reference(method, arch):
    ref, sim, data = _pair(method, arch)
    assert len(sim.analog_modules) == len(list(m for m in ref.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))))
    x, y = torch.from_numpy(data.x_train[:50]), torch.from_numpy(data.y_train[:50])
    for _ in range(3):
        if method == "ff":  # same negatives for both
            state = torch.Generator().manual_seed(5).get_state()
            ref.generator.set_state(state)
            sim.generator.set_state(state)
        a, b = ref.train_step(x, y), sim.train_step(x, y)
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    sa, sb = ref.state_dict(), sim.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.allclose(sa[k], sb[k], rtol=1e-4, atol=1e-6), k
    assert torch.allclose(ref.scores(x), sim.scores(x), rtol=1e-4, atol=1e-5)


def test_parameters_hold_the_device_weights_after_each_step():
    cfg = tiny_config("df", extra=["hardware.backend=sim", "hardware.preset=fixed8"])
    data = load_dataset(cfg.data)
    learner = build_learner(cfg, data.input_shape, data.n_classes, torch.Generator().manual_seed(0))
    learner.train_step(torch.from_numpy(data.x_train[:50]), torch.from_numpy(data.y_train[:50]))
    for m in learner.analog_modules:
        assert isinstance(m.tile, DigitalTile)
        assert np.array_equal(m.weight.detach().numpy(), m.tile.weights())
        codes = m.weight.detach().numpy() / m.tile.scale
        assert np.allclose(codes, np.rint(codes), atol=1e-3)  # on the 8-bit grid


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_trains(preset):
    cfg = tiny_config("df", epochs=3, extra=["hardware.backend=sim", f"hardware.preset={preset}"])
    m = train(cfg, load_dataset(cfg.data)).metrics
    assert m["backend"] == "sim" and np.isfinite(m["history"][-1]["loss"])
    assert m["test_accuracy"] > 0.5, m["history"]  # chance is 0.1


def test_sim_schedule_keeps_one_layer_graph_alive():
    from test_locality import _alive_graph_counts
    cfg = tiny_config("df", extra=["hardware.backend=sim", "hardware.preset=pcm"])
    data = load_dataset(cfg.data)
    learner = build_learner(cfg, data.input_shape, data.n_classes, torch.Generator().manual_seed(0))
    x, y = torch.from_numpy(data.x_train[:50]), torch.from_numpy(data.y_train[:50])
    assert _alive_graph_counts(learner, x, y, range(3)) == [0, 0, 0]


def test_device_fields_and_noise_model_fields_are_overridable(tmp_path):
    cfg = config.load(None, ["hardware.backend=sim", "hardware.preset=pcm", "hardware.adc_bits=6",
                             "hardware.tile_rows=128", 'hardware.pcm.drift_law="constant"',
                             "hardware.pcm.drift_nu_mean=0.07",
                             'hardware.noise=["pcm", "stuck_at"]', "hardware.stuck_at.p_stuck_low=0.01"])
    dev = cfg.hardware.device
    assert dev.periphery.adc_bits == 6 and dev.tile_rows == 128
    assert [m.name for m in dev.noise] == ["pcm", "stuck_at"]
    assert dev.noise[0].drift_nu_mean == 0.07 and dev.noise[1].p_stuck_low == 0.01
    path = tmp_path / "c.toml"
    path.write_text(config.dumps(cfg))
    assert config.load(path) == cfg
    resolved = tomllib.loads(path.read_text())
    assert resolved["hardware"]["pcm"]["drift_nu_mean"] == 0.07


@pytest.mark.parametrize("override, field", [
    ("hardware.pcm.drift_nu_std=-1", "drift_nu_std"),
    ("hardware.pcm.nope=1", "hardware.pcm.nope"),
    ("hardware.stuck_at.p_stuck_low=0.1", "not in this device's noise chain"),
    ('hardware.noise=["nonexistent"]', "unknown noise model"),
    ("hardware.weight_bits=8", "hardware.noise"),
])
def test_bad_device_overrides(override, field):
    from common.errors import ConfigError
    with pytest.raises(ConfigError, match=field):
        config.load(None, ["hardware.backend=sim", "hardware.preset=pcm", override])


def test_cli_trains_on_a_preset_and_records_it(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "experiments/configs/df_mlp_fmnist.toml", "--set", "data.name=synthetic",
            "--set", "model.hidden=[16, 16]", "--set", "train.epochs=1", "--set", "hardware.backend=sim",
            "--set", "hardware.preset=fixed8", "--set", "hardware.input_bits=6", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    assert json.loads((out / "metrics.json").read_text())["backend"] == "sim"
    hw = tomllib.loads((out / "config.toml").read_text())["hardware"]
    assert hw["preset"] == "fixed8" and hw["weight_bits"] == 8 and hw["input_bits"] == 6
    assert main(argv[:-3] + ["--set", "hardware.gmax_uS=-1", "--out", str(tmp_path / "bad")]) == 2
    assert "hardware.gmax_uS" in capsys.readouterr().err
