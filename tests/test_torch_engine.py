"""The torch engine (hw_models/torch_engine: the simulator's GPU path), run here on the CPU: the same
formulas as the numba engine — exact where nothing is random (ideal arrays), equal in distribution
where it is (PCM conductances against PCM.conductance_moments over 10^6 devices, reads of the same
programmed array on both engines, granular writes) — plus its scope, state and training.  The other
noise models and digital arrays: tests/test_torch_engine_models.py."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from common.errors import ConfigError
from hw_models.noise.pcm import PCM
from hw_models.presets import preset
from hw_models.tiles import make_tile
from hw_models.tiles.analog import AnalogTile
from hw_models.torch_engine import devices
from hw_models.torch_engine import pcm as tpcm
from hw_models.torch_engine import unsupported
from hw_models.torch_engine.tile import TorchTile

from test_noise_models import assert_moments

GMAX = 25.0
# every test that runs the engine runs on the CPU here and, where a GPU is present, on it too
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _torch(name: str, **changes):
    return dataclasses.replace(preset(name), engine="torch", **changes)


def _weights(m=60, k=300, seed=0):
    return (np.random.default_rng(seed).standard_normal((m, k)) * 0.05).astype(np.float32)


def test_scope_is_every_preset_and_every_twinned_model(monkeypatch):
    assert all(unsupported(preset(p)) is None for p in ("ideal", "pcm", "fixed8", "reram_pulsed"))
    from hw_models.noise import get
    chain = dataclasses.replace(preset("pcm"), noise=(PCM(), get("stuck_at")(), get("gmax_variability")()))
    assert unsupported(chain) is None
    monkeypatch.delitem(devices.STAGES, "stuck_at")  # a model without a torch twin
    assert "['stuck_at']" in unsupported(chain)
    monkeypatch.undo()
    assert isinstance(make_tile(_weights(), _torch("pcm"), np.random.default_rng(0)), TorchTile)


@pytest.mark.parametrize("dev", DEVICES)
def test_ideal_arrays_compute_what_the_numba_engine_computes(dev):
    w = _weights()
    x = np.random.default_rng(1).standard_normal((8, 300)).astype(np.float32)
    d = np.random.default_rng(2).standard_normal((8, 60)).astype(np.float32)
    a = make_tile(w, preset("ideal"), np.random.default_rng(0))
    t = TorchTile(w, _torch("ideal"), np.random.default_rng(0), dev)
    cpu = lambda v: v.cpu().numpy()  # noqa: E731
    np.testing.assert_allclose(cpu(t.weights()), a.weights(), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(cpu(t.forward(x)), a.forward(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cpu(t.backward(d)), a.backward(d), rtol=1e-5, atol=1e-6)
    delta = (np.random.default_rng(3).standard_normal(w.shape) * 1e-3).astype(np.float32)
    a.update(delta)
    t.update(delta)
    np.testing.assert_allclose(cpu(t.weights()), a.weights(), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(cpu(t.write(w)), a.write(w), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("dev", DEVICES)
@pytest.mark.parametrize("g_norm", (0.05, 0.25, 1.0))
def test_pcm_conductances_match_the_model_moments(g_norm, dev):
    """10^6 devices programmed to g gmax, read at t0, 1 day and 1 year (drift, frozen read noise):
    sample moments within 3 standard errors of PCM.conductance_moments (as the numba engine's in
    tests/test_pcm_statistics.py)."""
    model = PCM()
    gen = torch.Generator(device=dev).manual_seed(int(g_norm * 1000))
    target = torch.full((1_000_000,), g_norm * GMAX, device=dev)
    g_prog, state = tpcm.program(model, target, GMAX, gen)
    for t_s in (0.0, 86400.0, 3.1536e7):
        g, var = devices.read_out((model,), g_prog, state, t_s, gen)
        assert var is None and float(g.min()) >= 0
        mean, std = model.conductance_moments(g_norm * GMAX, GMAX, t_s)
        assert_moments(g.double().cpu().numpy() / GMAX, float(mean) / GMAX, float(std) / GMAX, f"torch G({t_s})/gmax at {g_norm}")


def test_pcm_per_read_and_constant_law_moments():
    for model in (PCM(read_noise="per_read"), PCM(drift_law="constant")):
        gen = torch.Generator().manual_seed(3)
        g_prog, state = tpcm.program(model, torch.full((1_000_000,), 0.5 * GMAX), GMAX, gen)
        g, var = devices.read_out((model,), g_prog, state, 86400.0, gen)
        if var is not None:
            g = g + var.sqrt() * torch.randn(g.shape, generator=gen)
        mean, std = model.conductance_moments(0.5 * GMAX, GMAX, 86400.0)
        assert_moments(g.double().numpy() / GMAX, float(mean) / GMAX, float(std) / GMAX, f"{model.drift_law}/{model.read_noise}")


def _two_sample_close(a: np.ndarray, b: np.ndarray, k: float):
    """Per-output means and variances of two samples (draws along axis 0) agree within k standard
    errors of their difference (Bonferroni-sized k)."""
    n = a.shape[0]
    se_mean = np.sqrt((a.var(0) + b.var(0)) / n)
    assert np.all(np.abs(a.mean(0) - b.mean(0)) <= k * se_mean + 1e-6)
    def var_se(s):
        c = s - s.mean(0)
        return np.sqrt(np.maximum((c ** 4).mean(0) - c.var(0) ** 2, 0) / n)
    assert np.all(np.abs(a.var(0) - b.var(0)) <= k * np.hypot(var_se(a), var_se(b)) + 1e-9)


@pytest.mark.parametrize("dev", DEVICES)
@pytest.mark.parametrize("t_s", [0.0, 86400.0])
def test_reads_of_the_same_array_agree_in_distribution(t_s, dev):
    """The pcm preset (8-bit DAC/ADC, output noise, bound management, compensation) programmed once
    on the numba engine and copied to the torch engine: 2000 reads of the same inputs on each,
    every output's mean and variance agree (two-sample, k from Bonferroni over all outputs)."""
    w = _weights(40, 300)
    x = np.abs(np.random.default_rng(1).standard_normal((4, 300))).astype(np.float32) * 3  # saturates some tiles
    a = make_tile(w, preset("pcm"), np.random.default_rng(0))
    a.set_time(t_s)
    t = TorchTile.from_analog(a, dev)
    assert t.compensation == a.compensation
    reads = 2000
    ya = np.stack([a.forward(x) for _ in range(reads)]).reshape(reads, -1).astype(np.float64)
    yt = np.stack([t.forward(x).cpu().numpy() for _ in range(reads)]).reshape(reads, -1).astype(np.float64)
    from scipy.stats import norm
    k = float(norm.isf(0.001 / (4 * ya.shape[1])))
    _two_sample_close(ya, yt, k)
    da = np.random.default_rng(2).standard_normal((4, 40)).astype(np.float32)
    ba = np.stack([a.backward(da) for _ in range(reads)]).reshape(reads, -1).astype(np.float64)
    bt = np.stack([t.backward(da).cpu().numpy() for _ in range(reads)]).reshape(reads, -1).astype(np.float64)
    _two_sample_close(ba, bt, float(norm.isf(0.001 / (4 * ba.shape[1]))))


def test_drift_compensation_factor_matches_the_numba_engine():
    """Fresh programmings of one weight matrix on both engines, 1 year later: the compensation
    factors' means over 30 programmings agree within 4 standard errors."""
    w = _weights(100, 500)
    alpha = {"numba": [], "torch": []}
    for s in range(30):
        for eng, dev in (("numba", preset("pcm")), ("torch", _torch("pcm"))):
            tile = make_tile(w, dev, np.random.default_rng(s))
            tile.set_time(3.1536e7)
            alpha[eng].append(tile.compensation)
    a, b = np.array(alpha["numba"]), np.array(alpha["torch"])
    assert 1.5 < a.mean() < 2.5
    assert abs(a.mean() - b.mean()) <= 4 * math.sqrt((a.var() + b.var()) / 30)


def test_granular_writes_are_unbiased_and_move_the_expected_pairs():
    """write_granularity e: a pair moves n e with E[n e] = dw (stochastic rounding), so over many
    pairs the mean change equals the request and P(move) = |dw| / e for |dw| < e.  No noise here
    (exact programming) so the moves are exact."""
    dev = _torch("pcm", noise=(), periphery=dataclasses.replace(preset("pcm").periphery, drift_compensation=False))
    w = np.full((500, 400), 0.25, np.float32)
    w[:, 0] = 0.5  # w_max 0.5: the other pairs sit at mid range, room to move
    t = make_tile(w, dev, np.random.default_rng(0))
    before = t.weights().clone()
    dw = 0.3 * 0.038 * float(t.w_max[0, 0])  # 0.3 increments
    t.update(np.full(w.shape, dw, np.float32))
    moved = (t.weights() - before)[:, 1:]
    frac = float((moved != 0).double().mean())
    n = moved.numel()
    assert abs(frac - 0.3) <= 4 * math.sqrt(0.3 * 0.7 / n)
    assert abs(float(moved.double().mean()) - dw) <= 4 * dw * math.sqrt(0.7 / 0.3 / n)


def test_state_round_trip_and_clock():
    t = make_tile(_weights(), _torch("pcm"), np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((5, 300)).astype(np.float32)
    saved = t.state()
    y1 = t.forward(x)
    t2 = make_tile(_weights(seed=9), _torch("pcm"), np.random.default_rng(7))
    t2.load_state(saved)
    assert torch.equal(t2.forward(x), y1) and torch.equal(t2.weights(), t.weights())
    t.set_time(3600.0)
    from common.errors import OnchipError
    with pytest.raises(OnchipError, match="set_time"):
        t.update(np.zeros((60, 300), np.float32))
    with pytest.raises(ValueError, match="torch-engine"):
        t.load_state(make_tile(_weights(), preset("pcm"), np.random.default_rng(0)).state())


def test_training_on_the_torch_engine_learns_like_the_numba_engine():
    """DF on synthetic data, sim/pcm, both engines: test accuracies within 5 points (different
    random streams, same physics) and far above chance."""
    from conftest import tiny_config
    from onchip_ff.data import load_dataset
    from onchip_ff.trainer import train
    acc = {}
    for eng in ("numba", "torch"):
        cfg = tiny_config("df", extra=["hardware.backend=sim", "hardware.preset=pcm", f"hardware.engine={eng}"])
        acc[eng] = train(cfg, load_dataset(cfg.data)).metrics["test_accuracy"]
    assert min(acc.values()) > 0.5, acc
    assert abs(acc["numba"] - acc["torch"]) < 0.05, acc


def test_cuda_requests_are_checked_before_anything_runs():
    from conftest import tiny_config
    from onchip_ff.trainer import check_device
    for extra, match in ((["hardware.preset=reram_pulsed", 'hardware.noise=["pulsed_constant"]',
                           'hardware.pulsed_constant.update_scheme="pulse_train"'], "pulse_train"),
                         (["hardware.engine=numba"], "engine = 'numba'")):
        cfg = tiny_config("df", extra=["hardware.backend=sim", "train.device=cuda"] + extra)
        with pytest.raises(ConfigError, match=match):
            check_device(cfg)
    if not torch.cuda.is_available():
        cfg = tiny_config("df", extra=["hardware.backend=sim", "hardware.preset=pcm", "train.device=cuda"])
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            check_device(cfg)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (experiments/gpu_check.sh)")
def test_training_on_cuda_runs_every_array_there():
    """train.device = "cuda" with the sim backend: the learner's arrays become torch-engine arrays on
    the GPU when it moves there, and DF on sim/pcm learns as on the CPU."""
    from conftest import tiny_config
    from onchip_ff.data import load_dataset
    from onchip_ff.trainer import train
    cfg = tiny_config("df", extra=["hardware.backend=sim", "hardware.preset=pcm", "train.device=cuda"])
    result = train(cfg, load_dataset(cfg.data))
    tiles = [m.tile for m in result.model.analog_modules]
    assert tiles and all(isinstance(t, TorchTile) and t.g_eff.is_cuda for t in tiles)
    assert result.metrics["test_accuracy"] > 0.5


@pytest.mark.parametrize("preset_name", ["pcm", "fixed8", "reram_pulsed"])
def test_a_checkpoint_of_torch_engine_arrays_resumes_bit_for_bit(preset_name):
    """learner_state -> torch.save -> torch.load(weights_only) -> restore_learner on a fresh learner:
    the next training step is the same, bit for bit (torch generators' states included), for
    analog, digital and pulsed arrays."""
    import io
    from conftest import tiny_config
    from onchip_ff.checkpoint import learner_state, restore_learner
    from onchip_ff.data import load_dataset
    from onchip_ff.methods import build_learner
    cfg = tiny_config("df", extra=["hardware.backend=sim", f"hardware.preset={preset_name}", "hardware.engine=torch"])
    data = load_dataset(cfg.data)
    x, y = torch.from_numpy(data.x_train[:50]), torch.from_numpy(data.y_train[:50])
    a = build_learner(cfg, data.input_shape, data.n_classes, torch.Generator().manual_seed(0))
    a.train_step(x, y)
    buf = io.BytesIO()
    torch.save(learner_state(a), buf)
    buf.seek(0)
    b = build_learner(cfg, data.input_shape, data.n_classes, torch.Generator().manual_seed(1))
    restore_learner(b, torch.load(buf, weights_only=True))
    assert a.train_step(x, y)["loss"] == b.train_step(x, y)["loss"]
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
