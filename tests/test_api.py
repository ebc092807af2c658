"""The public Python API (onchip_ff/api.py): the README's example, verbatim; save/load round trips
of models on every preset with identical predictions; convert of a CNN and an MLP (inference on pcm,
one day of drift, an epoch of the user's own SGD loop) and its refusals; thread settings restored
after fit; exported names documented."""

from __future__ import annotations

import re
from pathlib import Path

import numba
import numpy as np
import pytest
import torch
from torch import nn

import onchip_ff
from common.errors import ConfigError, OnchipError
from hw_models.presets import PRESETS
from hw_models.torch_layers import AnalogLinear

ROOT = Path(__file__).resolve().parent.parent


def test_readme_example_runs_verbatim(tmp_path, monkeypatch, capsys):
    text = (ROOT / "README.md").read_text()
    section = text.split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "trained on pcm:" in out and "after one day:" in out and "converted CNN after one day:" in out
    acc = float(re.search(r"trained on pcm: (\S+)", out).group(1))
    assert acc > 0.6  # 3 classes: chance is 1/3
    assert (tmp_path / "df_pcm.pt").is_file()


def _arrays(n=400, side=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    protos = rng.integers(0, 256, (classes, side, side))
    y = rng.integers(0, classes, n)
    x = np.clip(protos[y] + rng.normal(0, 40, (n, side, side)), 0, 255).astype(np.uint8)
    return {"x_train": x[:300], "y_train": y[:300], "x_test": x[300:], "y_test": y[300:]}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_save_load_round_trip_on_every_preset(preset, tmp_path):
    a = _arrays()
    run = onchip_ff.fit({"model": {"hidden": [12]}, "train": {"epochs": 1, "threads": 1, "batch_size": 50},
                         "hardware": {"backend": "sim", "preset": preset}}, a)
    model = run.model
    model.set_time(3600.0)
    model.save(tmp_path / "m.pt")
    again = onchip_ff.load(tmp_path / "m.pt")
    assert len(again.tiles) == len(model.tiles) == 1  # DF: one layer, no head
    np.testing.assert_array_equal(again(a["x_test"]).numpy(), model(a["x_test"]).numpy())  # noise streams too
    assert again.accuracy(a["x_test"], a["y_test"]) == model.accuracy(a["x_test"], a["y_test"])
    for t1, t2 in zip(model.tiles, again.tiles):
        np.testing.assert_array_equal(t1.weights(), t2.weights())
    for m in (again, model):  # the optimizer state came back too: the same next step
        m.set_time(0.0)
        m.train_step(a["x_train"][:50], a["y_train"][:50])
    np.testing.assert_array_equal(model.tiles[0].weights(), again.tiles[0].weights())


def test_load_refuses_what_model_save_did_not_write(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ConfigError, match="not a readable model file.*truncated or corrupt"):
        onchip_ff.load(tmp_path / "junk.pt")
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="not a model file"):
        onchip_ff.load(tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="not found"):
        onchip_ff.load(tmp_path / "none.pt")


def test_program_deploys_a_float_model_and_prepared_inputs(tmp_path):
    a = _arrays()
    run = onchip_ff.fit({"model": {"hidden": [16]}, "train": {"epochs": 2, "threads": 1, "lr": 3e-3}}, a)
    data = onchip_ff.dataset(a)
    assert run.model.accuracy(data.x_test, data.y_test, prepared=True) == run.model.accuracy(a["x_test"], a["y_test"])
    deployed = onchip_ff.program(run.model, "pcm", ["hardware.pcm.prog_noise_scale=0", "hardware.pcm.drift_scale=0",
                                                    "hardware.pcm.read_noise_scale=0", "hardware.out_noise=0",
                                                    "hardware.adc_bits=0", "hardware.dac_bits=0"])
    assert deployed.config.hardware.backend == "sim" and len(deployed.tiles) == 1
    assert deployed.accuracy(a["x_test"], a["y_test"]) == run.model.accuracy(a["x_test"], a["y_test"])
    with pytest.raises(ConfigError, match="samples of shape"):
        run.model.predict(np.zeros((2, 5, 5), np.uint8))


NETS = {"cnn": lambda: nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                     nn.Linear(4 * 3 * 3, 3)),
        "mlp": lambda: nn.Sequential(nn.Flatten(), nn.Linear(36, 16), nn.ReLU(), nn.Sequential(nn.Linear(16, 3)))}


@pytest.mark.parametrize("kind", NETS)
def test_convert_for_inference_drift_and_own_training(kind):
    torch.manual_seed(0)
    net = NETS[kind]()
    a = _arrays()
    x = torch.from_numpy(a["x_train"][:, None] / np.float32(255))
    x = (x - x.mean()) / x.std()
    y = torch.from_numpy(a["y_train"])
    before = {k: v.clone() for k, v in net.state_dict().items()}
    analog = onchip_ff.convert(net, "pcm", seed=1)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())  # the original is untouched
    layers = [m for m in analog.modules() if isinstance(m, AnalogLinear)]
    assert len(layers) == 2 and not any(isinstance(m, AnalogLinear) for m in net.modules())
    with torch.no_grad():
        err = (analog(x) - net(x)).abs().mean() / net(x).abs().mean()
    assert 0 < err < 0.3  # programming noise, converters: close to float, not equal
    opt = torch.optim.SGD(analog.parameters(), lr=0.05)
    w0 = layers[0].tile.weights().copy()
    with torch.no_grad():
        before_loss = nn.functional.cross_entropy(analog(x), y).item()
    for i in range(0, 300, 30):  # one epoch of the user's own loop
        loss = nn.functional.cross_entropy(analog(x[i:i + 30]), y[i:i + 30])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert not np.array_equal(layers[0].tile.weights(), w0)  # the steps reached the devices
    with torch.no_grad():
        analog(x[:1])  # the last step is written before this read; the Parameter then holds the devices'
    np.testing.assert_array_equal(layers[0].weight.detach().numpy().reshape(w0.shape), layers[0].tile.weights())
    with torch.no_grad():
        trained = nn.functional.cross_entropy(analog(x), y).item()
    assert trained < before_loss
    onchip_ff.set_time(analog, 86400.0)  # inference one day after programming
    assert all(m.tile.t_s == 86400.0 for m in layers)
    with torch.no_grad():
        assert nn.functional.cross_entropy(analog(x), y).item() < before_loss
    loss = nn.functional.cross_entropy(analog(x[:30]), y[:30])
    opt.zero_grad()
    loss.backward()
    opt.step()
    with pytest.raises(OnchipError, match="set_time"):  # one clock per array: no writes at 1 day
        analog(x[:1])
    onchip_ff.set_time(analog, 0.0)
    analog(x[:1])


def test_convert_refuses_in_one_line_before_changing_anything():
    net = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    with pytest.raises(ConfigError, match="BatchNorm1d has parameters but is not Linear or Conv2d") as exc:
        onchip_ff.convert(net, "pcm", inplace=True)
    assert "\n" not in str(exc.value) and isinstance(net[0], nn.Linear)  # nothing swapped
    with pytest.raises(ConfigError, match="groups 2"):
        onchip_ff.convert(nn.Conv2d(4, 4, 3, groups=2), "pcm")
    with pytest.raises(ConfigError, match="no Linear or Conv2d"):
        onchip_ff.convert(nn.ReLU(), "pcm")
    with pytest.raises(ConfigError, match="hardware.preset"):
        onchip_ff.convert(nn.Linear(2, 2), "nope")


def test_fit_restores_the_callers_thread_settings():
    torch.set_num_threads(2)
    numba.set_num_threads(2)
    onchip_ff.fit({"model": {"hidden": [8]}, "train": {"epochs": 1, "threads": 1}}, _arrays())
    assert torch.get_num_threads() == 2 and numba.get_num_threads() == 2


def test_fit_reads_given_arrays_with_the_configs_data_settings(tmp_path):
    arrays = _arrays()
    n = len(arrays["y_train"])
    run = onchip_ff.fit({"model": {"hidden": [8]}, "train": {"epochs": 1, "threads": 1},
                         "data": {"train_limit": n // 2, "test_limit": 30, "val_fraction": 0.25}}, arrays)
    m = run.metrics
    assert m["n_train"] == n // 2 - round(0.25 * (n // 2)) and m["n_test"] == 30 and "val_accuracy" in m
    same = onchip_ff.dataset(arrays)  # the same arrays as a Dataset or an .npz file: the same content hash
    np.savez(tmp_path / "a.npz", **arrays)
    from onchip_ff.config import DataConfig
    from onchip_ff.data import load_dataset
    assert load_dataset(DataConfig(name="npz", path=str(tmp_path / "a.npz"))).sha256 == same.sha256
    full = onchip_ff.fit({"model": {"hidden": [8]}, "train": {"epochs": 1, "threads": 1}}, arrays)
    assert full.metrics["dataset_sha256"] == same.sha256 and full.metrics["n_train"] == n


def test_every_exported_name_has_a_docstring():
    for name in onchip_ff.__all__:
        obj = getattr(onchip_ff, name)
        assert name == "__version__" or (obj.__doc__ or "").strip(), name
    with pytest.raises(AttributeError):
        onchip_ff.nope  # noqa: B018


def test_learners_are_callable_and_attach_refuses_a_plain_module():
    from hw_models.presets import preset
    from hw_models.torch_layers import attach_simulator
    run = onchip_ff.fit({"model": {"hidden": [8]}, "train": {"epochs": 1, "threads": 1}}, _arrays())
    x = torch.from_numpy(onchip_ff.dataset(_arrays()).x_test)
    assert torch.equal(run.model.learner(x), run.model.learner.scores(x))
    net = nn.Sequential(nn.Linear(3, 3))
    with pytest.raises(ConfigError, match="onchip_ff.convert"):
        attach_simulator(net, preset("pcm"), 0)
    assert isinstance(net[0], nn.Linear)  # nothing swapped
