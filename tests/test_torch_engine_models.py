"""The torch engine's twins of the Gaussian, stuck-at, gmax-variability and weight-quantization noise
models and its digital arrays (hw_models/torch_engine/gaussian.py, stuck_at.py, gmax_variability.py,
weight_quantization.py, digital.py), on the CPU here and on a GPU where
there is one: program-stage moments over 10^6 devices against each model's documented moments;
reads and writes of one array with the robustness study's chain agree with the numba engine's in
distribution; faults persist across writes; digital reads equal the numba engine's bit for bit,
nearest-rounded updates too, stochastic ones are unbiased; state, device moves, training."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy.stats import norm

from common.errors import ConfigError
from hw_models.noise import get
from hw_models.noise.gaussian_read import GaussianRead
from hw_models.noise.gaussian_weight import GaussianWeight
from hw_models.noise.stuck_at import HIGH, LOW, STUCK_KEY, StuckAt
from hw_models.presets import preset
from hw_models.tiles import make_tile
from hw_models.torch_engine import devices
from hw_models.torch_engine.digital import TorchDigitalTile
from hw_models.torch_engine.tile import TorchTile

from test_noise_models import assert_moments
from test_torch_engine import DEVICES, GMAX, _two_sample_close, _weights

STUDY_CHAIN = ("gaussian_weight", "stuck_at", "gaussian_read")  # robustness_fmnist.toml's noise chain


def _study_device(engine: str = "numba", **periphery) -> object:
    """The ideal preset with the study's chain at its models' example settings (and periphery
    changes), on `engine`."""
    d = preset("ideal")
    return dataclasses.replace(d, engine=engine, noise=tuple(get(n).example() for n in STUDY_CHAIN),
                               periphery=dataclasses.replace(d.periphery, **periphery))


def _samples(g: torch.Tensor) -> np.ndarray:
    return g.double().cpu().numpy() / GMAX


@pytest.mark.parametrize("dev", DEVICES)
@pytest.mark.parametrize("g_norm", (0.0, 0.3, 1.0))
def test_gaussian_weight_programming_matches_its_moments(g_norm, dev):
    model = GaussianWeight(sigma_add_rel=0.02, sigma_mul_rel=0.05)
    gen = torch.Generator(device=dev).manual_seed(11)
    g, state = devices.program((model,), torch.full((1_000_000,), g_norm * GMAX, device=dev), GMAX, gen)
    mean, std = model.moments("program", np.full(1, g_norm * GMAX), GMAX)
    assert state == {}
    assert_moments(_samples(g), float(mean[0]) / GMAX, float(std[0]) / GMAX, f"gaussian_weight at {g_norm}")


@pytest.mark.parametrize("dev", DEVICES)
def test_stuck_at_programming_matches_its_moments_and_faults_persist(dev):
    model = StuckAt(p_stuck_low=0.02, p_stuck_high=0.05)
    gen = torch.Generator(device=dev).manual_seed(12)
    n = 1_000_000
    target = torch.full((n,), 0.4 * GMAX, device=dev)
    g, state = devices.program((model,), target, GMAX, gen)
    mean, std = model.moments("program", np.full(1, 0.4 * GMAX), GMAX)
    assert_moments(_samples(g), float(mean[0]) / GMAX, float(std[0]) / GMAX, "stuck_at")
    stuck = state[STUCK_KEY]
    assert stuck.dtype == torch.int8
    for flag, p in ((LOW, 0.02), (HIGH, 0.05)):
        share = float((stuck == flag).double().mean())
        assert abs(share - p) <= 4 * np.sqrt(p * (1 - p) / n), (flag, share)
    # a re-write of every third device keeps its fault (the earlier state passed as `old`)
    mask = torch.zeros(n, dtype=torch.bool, device=dev)
    mask[::3] = True
    g2, state2 = devices.program((model,), torch.full((int(mask.sum()),), 0.7 * GMAX, device=dev), GMAX, gen,
                                 devices.old_state(state, mask))
    assert torch.equal(state2[STUCK_KEY], stuck[mask])
    expect = torch.where(stuck[mask] == LOW, 0.0, torch.where(stuck[mask] == HIGH, GMAX, 0.7 * GMAX))
    assert torch.equal(g2, expect.float())


@pytest.mark.parametrize("dev", DEVICES)
def test_gaussian_read_variance_is_the_models(dev):
    model = GaussianRead(sigma_add_rel=0.01, sigma_mul_rel=0.03)
    gen = torch.Generator(device=dev).manual_seed(13)
    g, state = devices.program((model,), torch.full((1_000_000,), 0.6 * GMAX, device=dev), GMAX, gen)
    g_read, var = devices.read_out((model,), g, state, 0.0, gen)
    assert torch.equal(g_read, g)
    reads = g_read + var.sqrt() * torch.randn(g.shape, generator=gen, device=dev)
    mean, std = model.moments("read", np.full(1, 0.6 * GMAX), GMAX)
    assert_moments(_samples(reads), float(mean[0]) / GMAX, float(std[0]) / GMAX, "gaussian_read")


@pytest.mark.parametrize("dev", DEVICES)
def test_gmax_variability_matches_its_moments_and_devices_keep_their_gmax(dev):
    from hw_models.noise.gmax_variability import GMAX_KEY, GmaxVariability
    model = GmaxVariability(sigma_rel=0.3)
    gen = torch.Generator(device=dev).manual_seed(14)
    g, state = devices.program((model,), torch.full((1_000_000,), 0.5 * GMAX, device=dev), GMAX, gen)
    mean, std = model.moments("program", np.full(1, 0.5 * GMAX), GMAX)
    assert_moments(_samples(g), float(mean[0]) / GMAX, float(std[0]) / GMAX, "gmax_variability")
    assert torch.allclose(state[GMAX_KEY] * 0.5, g, rtol=1e-6)
    mask = torch.zeros(1_000_000, dtype=torch.bool, device=dev)
    mask[::2] = True
    g2, state2 = devices.program((model,), torch.full((500_000,), 0.2 * GMAX, device=dev), GMAX, gen,
                                 devices.old_state(state, mask))
    assert torch.equal(state2[GMAX_KEY], state[GMAX_KEY][mask])
    assert torch.allclose(g2, state[GMAX_KEY][mask] * 0.2, rtol=1e-6)


@pytest.mark.parametrize("levels", [2, 16, 255])
def test_weight_quantization_equals_the_numpy_model(levels):
    from hw_models.noise.weight_quantization import WeightQuantization
    model = WeightQuantization(levels=levels)
    target = np.concatenate([np.random.default_rng(15).uniform(-2, 27, 100_000),
                             np.arange(levels) * GMAX / (levels - 1) + GMAX / (levels - 1) / 2]).astype(np.float32)
    expect, _ = model.program(target, GMAX, np.random.default_rng(0))
    got, state = devices.program((model,), torch.from_numpy(target), GMAX, torch.Generator())
    assert state == {} and np.array_equal(got.numpy(), expect)


@pytest.mark.parametrize("dev", DEVICES)
def test_reads_of_a_study_array_agree_with_the_numba_engine(dev):
    """The study's chain (programming error, stuck devices, per-read noise) with an 8-bit DAC, a
    6-bit ADC and output noise, programmed once on the numba engine and copied: 2000 reads of the
    same inputs on each engine agree output by output in mean and variance, forward and
    transposed (two-sample, Bonferroni over all outputs)."""
    a = make_tile(_weights(40, 300), _study_device(dac_bits=8, adc_bits=6, out_noise=0.02), np.random.default_rng(0))
    t = TorchTile.from_analog(a, dev)
    assert all(torch.equal(t.states[i][STUCK_KEY].cpu(), torch.from_numpy(a.states[i][STUCK_KEY])) for i in (0, 1))
    x = np.abs(np.random.default_rng(1).standard_normal((4, 300))).astype(np.float32)
    d = np.random.default_rng(2).standard_normal((4, 40)).astype(np.float32)
    reads = 2000
    for read_a, read_t, arg in ((a.forward, t.forward, x), (a.backward, t.backward, d)):
        ya = np.stack([read_a(arg) for _ in range(reads)]).reshape(reads, -1).astype(np.float64)
        yt = np.stack([read_t(arg).cpu().numpy() for _ in range(reads)]).reshape(reads, -1).astype(np.float64)
        assert np.median(ya.var(0)) > 0  # the reads are noisy (an output at full scale need not be)
        _two_sample_close(ya, yt, float(norm.isf(0.001 / (4 * ya.shape[1]))))


@pytest.mark.parametrize("dev", DEVICES)
def test_writes_of_a_study_array_agree_with_the_numba_engine(dev):
    """One update of the same programmed array on each engine: stuck devices keep their fault
    (exactly), the error of the written weights (held minus requested) has the same mean and
    variance on both engines (two-sample over the 120 000 pairs)."""
    w = _weights(200, 600)
    a = make_tile(w, _study_device(), np.random.default_rng(0))
    t = TorchTile.from_analog(a, dev)
    delta = (np.random.default_rng(3).standard_normal(w.shape) * 1e-3).astype(np.float32)
    requested = a.weights() + delta
    a.update(delta)
    t.update(delta)
    for i in (0, 1):
        stuck = a.states[i][STUCK_KEY]
        g_t = t.g_prog[i].cpu().numpy()
        assert np.all(g_t[stuck == LOW] == 0) and np.all(g_t[stuck == HIGH] == a.g_prog[i][stuck == HIGH])
    free = (a.states[0][STUCK_KEY] == 0) & (a.states[1][STUCK_KEY] == 0)
    err_a = (a.weights() - requested)[free].astype(np.float64)
    err_t = (t.weights().cpu().numpy() - requested)[free].astype(np.float64)
    assert err_a.std() > 0
    _two_sample_close(err_a[:, None], err_t[:, None], 4.0)


# ---- pulsed devices (symmetric pairs) ----------------------------------------------------------------
UPDATE_CASES = [(0.5, 0.02), (0.5, -0.02), (0.3, 0.9), (0.9, 3.0), (0.1, -2.0), (0.5, 0.0)]  # (g/gmax, dg/step)


@pytest.mark.parametrize("dev", DEVICES)
@pytest.mark.parametrize("name", ["pulsed_nonlinear", "pulsed_constant"])
@pytest.mark.parametrize("g_norm, pulses", UPDATE_CASES)
def test_pulsed_updates_match_the_models_moments(name, g_norm, pulses, dev):
    """10^6 devices at g, one requested change of `pulses` nominal steps (fractions: stochastic
    rounding; near the bounds: clipping): mean and std within 3 SE of the model's exact update
    moments (the mixture over pulse counts of clipped Gaussians)."""
    model = get(name).example()
    step = GMAX / model.p_max if name == "pulsed_nonlinear" else model.dw_min_uS
    n = 1_000_000
    g = torch.full((n,), g_norm * GMAX, device=dev)
    dg = torch.full((n,), pulses * step, device=dev)
    device = dataclasses.replace(preset("reram_pulsed"), gmax_uS=GMAX, noise=(model,))
    out = devices.update(device, g, dg, {}, torch.Generator(device=dev).manual_seed(16))
    mean, std = model.moments("update", np.full(1, g_norm * GMAX, np.float32), GMAX,
                              dg_uS=np.full(1, pulses * step, np.float32))
    assert out.dtype == torch.float32 and float(out.min()) >= 0 and float(out.max()) <= GMAX
    assert_moments(_samples(out), float(mean[0]) / GMAX, float(std[0]) / GMAX, f"{name} at {g_norm}, {pulses} steps")


def test_pulsed_constant_device_spreads_match_the_numpy_model():
    """Per-device steps and bounds drawn at programming (d-t-d spreads of aihwkit's defaults):
    two-sample means and variances against the numpy model's draws; a re-write keeps them."""
    from hw_models.noise.pulsed_constant import PulsedConstant
    model = PulsedConstant()
    n = 200_000
    _, ref = model.program(np.full(n, 12.5, np.float32), GMAX, np.random.default_rng(0))
    _, got = devices.program((model,), torch.full((n,), 12.5), GMAX, torch.Generator().manual_seed(17))
    assert set(got) == set(ref) == set(model._keys)
    for key in ref:
        _two_sample_close(ref[key].astype(np.float64)[:, None], got[key].double().numpy()[:, None], 4.0)
    mask = torch.zeros(n, dtype=torch.bool)
    mask[:10] = True
    _, again = devices.program((model,), torch.full((10,), 3.0), GMAX, torch.Generator(), devices.old_state(got, mask))
    assert all(torch.equal(again[k], got[k][:10]) for k in got)


@pytest.mark.parametrize("dev", DEVICES)
@pytest.mark.parametrize("preset_name", ["reram_pulsed", "pulsed_constant"])
def test_pulsed_array_writes_and_reads_agree_with_the_numba_engine(preset_name, dev):
    """A symmetric-pair array (reram_pulsed; reram_pulsed with pulsed_constant's example device)
    programmed on the numba engine and copied: one update of the same request on each engine
    leaves the same distribution of errors (held minus requested weights, two-sample over 120 000
    pairs); then 500 reads of the same inputs agree output by output (8-bit DAC/ADC)."""
    d = preset("reram_pulsed")
    if preset_name == "pulsed_constant":
        d = dataclasses.replace(d, noise=(get("pulsed_constant").example(),))
    w = _weights(200, 600)
    a = make_tile(w, d, np.random.default_rng(0))
    t = TorchTile.from_analog(a, dev)
    delta = (np.random.default_rng(3).standard_normal(w.shape) * 2e-3).astype(np.float32)
    requested = a.weights() + delta
    a.update(delta)
    t.update(delta)
    err_a = (a.weights() - requested).reshape(-1, 1).astype(np.float64)
    err_t = (t.weights().cpu().numpy() - requested).reshape(-1, 1).astype(np.float64)
    assert err_a.std() > 0
    _two_sample_close(err_a, err_t, 4.0)
    t2 = TorchTile.from_analog(a, dev)  # the same devices on both engines now
    x = np.abs(np.random.default_rng(1).standard_normal((2, 600))).astype(np.float32)
    ya = np.stack([a.forward(x) for _ in range(500)]).reshape(500, -1).astype(np.float64)
    yt = np.stack([t2.forward(x).cpu().numpy() for _ in range(500)]).reshape(500, -1).astype(np.float64)
    np.testing.assert_allclose(yt.mean(0), ya.mean(0), rtol=1e-5, atol=1e-5)  # no read noise: the same reads


def test_pulse_trains_stay_on_the_numba_engine():
    from hw_models.torch_engine import unsupported
    d = dataclasses.replace(preset("reram_pulsed"), noise=(dataclasses.replace(get("pulsed_constant").example(),
                                                                               update_scheme="pulse_train"),))
    assert "pulse_train" in unsupported(d)
    with pytest.raises(ConfigError, match="pulse_train"):
        make_tile(_weights(), dataclasses.replace(d, engine="torch"), np.random.default_rng(0))


# ---- digital arrays ------------------------------------------------------------------------------
def _digital(engine: str, **changes):
    return dataclasses.replace(preset("fixed8"), engine=engine, **changes)


@pytest.mark.parametrize("dev", DEVICES)
@pytest.mark.parametrize("bits", [dict(), dict(weight_bits=4, input_bits=6), dict(weight_bits=2)])
def test_digital_reads_equal_the_numba_engine_bit_for_bit(bits, dev):
    w = _weights(60, 300)
    x = np.random.default_rng(1).standard_normal((8, 300)).astype(np.float32)
    d = np.random.default_rng(2).standard_normal((8, 60)).astype(np.float32)
    a = make_tile(w, _digital("numba", **bits), np.random.default_rng(0))
    t = TorchDigitalTile(w, _digital("torch", **bits), np.random.default_rng(0), dev)
    cpu = lambda v: v.cpu().numpy()  # noqa: E731
    assert np.array_equal(cpu(t.codes), a.codes.astype(np.float32))
    assert np.array_equal(cpu(t.weights()), a.weights()) and np.array_equal(cpu(t.weight_range()), a.weight_range())
    assert np.array_equal(cpu(t.forward(x)), a.forward(x))
    assert np.array_equal(cpu(t.backward(d)), a.backward(d))
    c = TorchDigitalTile.from_digital(a, dev)
    assert np.array_equal(cpu(c.forward(x)), a.forward(x))


def test_digital_float_inputs_match_the_numba_engine():
    """input_bits = 0: float inputs times the integer codes (float32 GEMMs on both engines)."""
    w = _weights(60, 300)
    x = np.random.default_rng(1).standard_normal((8, 300)).astype(np.float32)
    a = make_tile(w, _digital("numba", input_bits=0), np.random.default_rng(0))
    t = make_tile(w, _digital("torch", input_bits=0), np.random.default_rng(0))
    assert isinstance(t, TorchDigitalTile)
    np.testing.assert_allclose(t.forward(x).numpy(), a.forward(x), rtol=1e-5, atol=1e-6)


def test_digital_nearest_updates_equal_and_stochastic_updates_are_unbiased():
    w = _weights(200, 500)
    delta = (np.random.default_rng(4).standard_normal(w.shape) * 3e-3).astype(np.float32)
    a = make_tile(w, _digital("numba", update_rounding="nearest"), np.random.default_rng(0))
    t = make_tile(w, _digital("torch", update_rounding="nearest"), np.random.default_rng(0))
    a.update(delta)
    t.update(delta)
    assert np.array_equal(t.codes.numpy(), a.codes.astype(np.float32))
    # stochastic: a request of 0.3 LSB moves each code by 0 or 1, by 0.3 on average (away from the bounds)
    s = make_tile(w, _digital("torch"), np.random.default_rng(0))
    before = s.codes.clone()
    s.update(0.3 * s.scale.numpy() * np.ones(w.shape, np.float32))
    step = (s.codes - before)[before < s.qmax].double()
    assert set(step.unique().tolist()) <= {0.0, 1.0}
    assert abs(float(step.mean()) - 0.3) <= 4 * np.sqrt(0.3 * 0.7 / step.numel())
    for _ in range(2):  # one step moves a code by at most qmax (the step saturates too, as in formats.quantize)
        s.update(1e3 * s.scale.numpy() * np.ones(w.shape, np.float32))
    assert float(s.codes.min()) == s.qmax


def test_digital_accumulator_that_can_overflow_is_refused():
    with pytest.raises(ConfigError, match="16-bit accumulator"):
        make_tile(_weights(60, 300), _digital("torch", acc_bits=16), np.random.default_rng(0))


def test_digital_state_round_trip_and_moves():
    w = _weights(60, 300)
    t = make_tile(w, _digital("torch"), np.random.default_rng(0))
    delta = (np.random.default_rng(5).standard_normal(w.shape) * 3e-3).astype(np.float32)
    t.update(delta)
    state = t.state()
    assert state["codes"].dtype == np.int8
    u = make_tile(_weights(60, 300, seed=9), _digital("torch"), np.random.default_rng(1))
    u.load_state(state)
    t.update(delta)
    u.update(delta)  # same generator state: the same stochastic rounding
    assert torch.equal(t.codes, u.codes) and torch.equal(t.scale, u.scale)
    assert t.to("cpu") is t
    with pytest.raises(ValueError, match="torch-engine digital"):
        make_tile(_weights(10, 30), _digital("torch"), np.random.default_rng(0)).load_state(state)


@pytest.mark.parametrize("extra", [["hardware.preset=fixed8"], ["hardware.preset=reram_pulsed"],
                                   ["hardware.preset=ideal", 'hardware.noise=["gaussian_weight", "stuck_at", "gaussian_read"]',
                                    "hardware.weight_headroom=2", "hardware.gaussian_weight.sigma_add_rel=0.01",
                                    "hardware.gaussian_weight.sigma_mul_rel=0", "hardware.stuck_at.p_stuck_low=0.01",
                                    "hardware.stuck_at.p_stuck_high=0.01", "hardware.gaussian_read.sigma_add_rel=0.01",
                                    "hardware.gaussian_read.sigma_mul_rel=0"]])
def test_training_on_the_torch_engine_learns_like_the_numba_engine(extra):
    """DF on synthetic data on a digital array, on pulsed ReRAM and on the study's noisy chain (1 %
    levels, headroom 2 as in robustness_fmnist.toml), both engines: test
    accuracies within 5 points (other random streams, same arithmetic) and far above chance."""
    from conftest import tiny_config
    from onchip_ff.data import load_dataset
    from onchip_ff.trainer import train
    acc = {}
    for eng in ("numba", "torch"):
        cfg = tiny_config("df", extra=["hardware.backend=sim", f"hardware.engine={eng}"] + extra)
        acc[eng] = train(cfg, load_dataset(cfg.data)).metrics["test_accuracy"]
    assert min(acc.values()) > 0.5, acc
    assert abs(acc["numba"] - acc["torch"]) < 0.05, acc


@pytest.mark.parametrize("hw", [["--set", "hardware.preset=pcm"], ["--set", "hardware.preset=fixed8"]])
def test_the_train_command_runs_torch_engine_arrays_with_its_memory_probe(tmp_path, hw):
    """`onchip-ff train` with hardware.engine = "torch" (what train.device = "cuda" runs): its memory
    probe's chip tally counts the torch engine's arrays (it used to fail on tensors) and finds what
    it finds for the numba engine's."""
    import json
    from experiments.cli import main
    from test_cli import DF_MLP, TINY
    chip = {}
    for eng in ("numba", "torch"):
        out = tmp_path / eng
        assert main(["train", DF_MLP, *TINY, "--set", "hardware.backend=sim", "--set", f"hardware.engine={eng}", *hw,
                     "--out", str(out), "--no-progress"]) == 0
        memory = json.loads((out / "metrics.json").read_text())["memory"]
        chip[eng] = (memory["chip_predicted_peak_bits"], memory["chip_tallied_peak_bits"])
    assert chip["torch"] == chip["numba"] and chip["torch"][0] == chip["torch"][1] > 0, chip


@pytest.mark.parametrize("preset_name", ["pcm", "fixed8", "reram_pulsed"])
def test_a_numba_array_becomes_a_torch_engine_array_holding_the_same_weights(preset_name):
    """What a module's move to a CUDA device does to its array (torch_layers._torch_engine_tile),
    here onto the CPU: the same weights and ranges, now as tensors."""
    from hw_models.torch_layers import _torch_engine_tile
    a = make_tile(_weights(), preset(preset_name), np.random.default_rng(0))
    t = _torch_engine_tile(a, torch.device("cpu"))
    assert getattr(t, "tensors", False) and isinstance(t, TorchDigitalTile) == (preset_name == "fixed8")
    assert np.array_equal(t.weights().numpy(), a.weights())
    assert np.array_equal(t.weight_range().numpy(), a.weight_range())
