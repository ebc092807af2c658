"""Analog crossbar: ideal parity with torch, per-tile ADC, read-noise statistics through the MVM,
update paths, drift and its global compensation, bound management."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import torch

from hw_models.tiles.analog import AnalogTile
from hw_models.device import DeviceConfig
from hw_models.noise.base import NoiseModel
from hw_models.periphery import PeripheryConfig
from hw_models.presets import preset

IDEAL = preset("ideal")


@dataclass(frozen=True)
class ConstantRead(NoiseModel):
    """Test device: read noise of constant std sigma_uS per device."""
    name: ClassVar[str] = "test_constant_read"
    stages: ClassVar[frozenset[str]] = frozenset({"read"})
    sigma_uS: float = 0.5

    def read_sigma_uS(self, g_uS, state, t_s):
        return np.full_like(g_uS, self.sigma_uS)


@dataclass(frozen=True)
class UniformDrift(NoiseModel):
    """Test device: G(t) = G (t/t0)^-nu for every device."""
    name: ClassVar[str] = "test_uniform_drift"
    stages: ClassVar[frozenset[str]] = frozenset({"drift"})
    nu: float = 0.05
    t0_s: float = 20.0

    def drift(self, g_prog_uS, state, t_s):
        return g_prog_uS * np.float32((max(t_s, self.t0_s) / self.t0_s) ** -self.nu)


def _rel(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


@pytest.mark.jitfree
@pytest.mark.parametrize("n, k, m", [(1, 1, 1), (1, 300, 70), (5, 256, 256), (64, 784, 1000), (3, 513, 9)])
def test_ideal_forward_and_transposed_match_torch(n, k, m):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((m, k)).astype(np.float32) * 0.05
    x = rng.standard_normal((n, k)).astype(np.float32)
    d = rng.standard_normal((n, m)).astype(np.float32)
    tile = AnalogTile(w, IDEAL, np.random.default_rng(1))
    assert _rel(tile.weights(), w) <= 1e-6
    ref_y = (torch.from_numpy(x).double() @ torch.from_numpy(w).double().T).numpy()
    ref_dx = (torch.from_numpy(d).double() @ torch.from_numpy(w).double()).numpy()
    assert _rel(tile.forward(x), ref_y) <= 1e-6
    assert _rel(tile.backward(d), ref_dx) <= 1e-6


def _naive_tiled(x, w_norm, w_max, rows, adc_bits, out_bound):
    """Per-tile digitization written out: DAC absmax scaling, each tile's partial sum rounded to
    the ADC grid with saturation, digital sum of tiles, scaled back."""
    scale = np.abs(x).max(axis=1, keepdims=True)
    xn = x / scale
    q = 2 ** (adc_bits - 1) - 1
    step = out_bound / q
    total = np.zeros((x.shape[0], w_norm.shape[0]))
    for r0 in range(0, x.shape[1], rows):
        part = xn[:, r0:r0 + rows].astype(np.float64) @ w_norm[:, r0:r0 + rows].T.astype(np.float64)
        total += np.clip(np.rint(part / step), -q, q) * step
    return total * scale * w_max.T


def test_partial_sums_are_digitized_per_tile():
    rng = np.random.default_rng(2)
    w = rng.uniform(-1, 1, (40, 600)).astype(np.float32)
    x = rng.uniform(-1, 1, (8, 600)).astype(np.float32)
    dev = dataclasses.replace(IDEAL, tile_rows=256, weight_headroom=1.0,
                              periphery=PeripheryConfig(adc_bits=5, out_bound=20.0))
    tile = AnalogTile(w, dev, np.random.default_rng(0))
    expected = _naive_tiled(x, tile.g_eff, tile.w_max, 256, 5, 20.0)
    assert np.allclose(tile.forward(x), expected, rtol=1e-5, atol=1e-5)
    # one big tile digitizes once: a different (coarser per-tile error) result
    big = AnalogTile(w, dataclasses.replace(dev, tile_rows=1024), np.random.default_rng(0))
    assert not np.allclose(big.forward(x), expected, rtol=1e-5, atol=1e-5)


def test_read_noise_variance_through_the_mvm():
    """Var(y_m) = sum_k x_k^2 (sigma+^2 + sigma-^2) / gmax^2 * w_max^2 (independent reads)."""
    rng = np.random.default_rng(3)
    w = rng.uniform(-1, 1, (3, 50)).astype(np.float32)
    dev = dataclasses.replace(IDEAL, weight_headroom=1.0, noise=(ConstantRead(0.5),),
                              periphery=PeripheryConfig(input_scaling="none"))
    tile = AnalogTile(w, dev, np.random.default_rng(4))
    x = rng.uniform(-1, 1, (1, 50)).astype(np.float32)
    draws = np.stack([tile.forward(np.repeat(x, 1000, axis=0)) for _ in range(100)]).reshape(-1, 3)
    n = draws.shape[0]
    sigma = np.sqrt((x ** 2).sum() * 2 * 0.5 ** 2) / 25.0 * tile.w_max[:, 0]
    mean_ref = x @ tile.weights().T
    assert np.all(np.abs(draws.mean(0) - mean_ref[0]) < 3 * sigma / np.sqrt(n))
    assert np.all(np.abs(draws.std(0) - sigma) < 3 * sigma / np.sqrt(2 * n))


def test_ideal_update_paths_are_exact():
    rng = np.random.default_rng(5)
    w = rng.standard_normal((20, 30)).astype(np.float32) * 0.1
    tile = AnalogTile(w, IDEAL, np.random.default_rng(0))
    dw = rng.standard_normal((20, 30)).astype(np.float32) * 0.01
    tile.update(dw)
    assert _rel(tile.weights(), w + dw) <= 1e-6
    x = rng.standard_normal((4, 30)).astype(np.float32)
    d = rng.standard_normal((4, 20)).astype(np.float32)
    before = tile.weights()
    tile.outer_update(x, d, lr=0.01)
    assert _rel(tile.weights(), before - 0.01 * d.T @ x) <= 1e-6


def test_symmetric_pairs_update_both_devices_and_saturate_at_the_bounds():
    w = np.array([[0.25, -0.5]], np.float32)  # w_max = 0.5: normalized weights 0.5 and -1
    dev = dataclasses.replace(IDEAL, pair_mapping="symmetric", weight_headroom=1.0)
    tile = AnalogTile(w, dev, np.random.default_rng(0))
    assert np.allclose(tile.g_prog[0], [[18.75, 0.0]]) and np.allclose(tile.g_prog[1], [[6.25, 25.0]])
    tile.update(np.array([[0.125, 10.0]], np.float32))
    assert np.allclose(tile.weights(), [[0.375, 0.5]])  # the second weight stops at w_max = 0.5
    assert np.allclose(tile.g_prog[0], [[21.875, 25.0]]) and np.allclose(tile.g_prog[1], [[3.125, 0.0]])


def test_drift_and_global_compensation():
    rng = np.random.default_rng(6)
    w = rng.uniform(-1, 1, (10, 40)).astype(np.float32)
    x = rng.uniform(-1, 1, (5, 40)).astype(np.float32)
    plain = dataclasses.replace(IDEAL, weight_headroom=1.0, noise=(UniformDrift(0.05),))
    comp = dataclasses.replace(plain, periphery=PeripheryConfig(drift_compensation=True))
    a, b = AnalogTile(w, plain, np.random.default_rng(0)), AnalogTile(w, comp, np.random.default_rng(0))
    y0 = a.forward(x)
    for tile in (a, b):
        tile.set_time(20.0 * 1e4)
    assert np.allclose(a.forward(x), y0 * 1e4 ** -0.05, rtol=1e-5)
    assert np.allclose(b.forward(x), y0, rtol=1e-5)


def test_bound_management_reduces_saturation():
    rng = np.random.default_rng(7)
    w = np.abs(rng.uniform(0.5, 1, (4, 200))).astype(np.float32)
    x = np.ones((3, 200), np.float32)  # every product positive: |partial| ~ 150 > out_bound
    base = dataclasses.replace(IDEAL, weight_headroom=1.0, tile_rows=256)
    exact = AnalogTile(w, base, np.random.default_rng(0)).forward(x)
    p = PeripheryConfig(adc_bits=8, out_bound=100.0)
    clipped = AnalogTile(w, dataclasses.replace(base, periphery=p), np.random.default_rng(0)).forward(x)
    managed = AnalogTile(w, dataclasses.replace(
        base, periphery=dataclasses.replace(p, bound_management=True)), np.random.default_rng(0)).forward(x)
    assert np.abs(clipped - exact).max() > 0.3 * np.abs(exact).max()
    assert np.abs(managed - exact).max() < 0.02 * np.abs(exact).max()


def test_same_seed_same_noisy_output():
    w = np.random.default_rng(8).uniform(-1, 1, (6, 10)).astype(np.float32)
    x = np.ones((2, 10), np.float32)
    dev = dataclasses.replace(IDEAL, noise=(ConstantRead(0.3),),
                              periphery=PeripheryConfig(out_noise=0.1, adc_bits=6))
    a = AnalogTile(w, dev, np.random.default_rng(9)).forward(x)
    b = AnalogTile(w, dev, np.random.default_rng(9)).forward(x)
    c = AnalogTile(w, dev, np.random.default_rng(10)).forward(x)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.jitfree
def test_bad_device_values_name_the_field():
    from common.errors import ConfigError
    for kw, field in [({"gmax_uS": 0}, "hardware.gmax_uS"), ({"tile_rows": 0}, "hardware.tile_rows"),
                      ({"weight_bits": 1}, "hardware.weight_bits"), ({"pair_mapping": "x"}, "hardware.pair_mapping")]:
        with pytest.raises(ConfigError, match=field):
            DeviceConfig(**kw)
    for kw, field in [({"adc_bits": 0.5}, "hardware.adc_bits"), ({"out_noise": -1.0}, "hardware.out_noise"),
                      ({"dac_bits": 1}, "hardware.dac_bits")]:
        with pytest.raises(ConfigError, match=field):
            PeripheryConfig(**kw)


# ---- one-sided writes: write_granularity ----------------------------------------------------------
PCM_DEV = dataclasses.replace(preset("pcm"), write_granularity=0.0)


def _old_one_sided_update(tile, delta_w):
    """The one-sided update as written before write_granularity (boolean masks, full refresh),
    verbatim: the reference that write_granularity = 0 must reproduce bit for bit."""
    d = tile.device
    dw_norm = np.asarray(delta_w, dtype=np.float32) / tile.w_max
    w_norm, changed = np.clip(tile.g_eff + dw_norm, -1.0, 1.0), dw_norm != 0
    every = bool(changed.all())
    for i, target in enumerate(tile.mapping.targets(w_norm)):
        old = tile.states[i] if every else {k: v[changed] for k, v in tile.states[i].items()}
        g, state = tile._write_devices(target if every else target[changed], old)
        if every:
            tile.g_prog[i], tile.states[i] = g, state
        else:
            tile.g_prog[i][changed] = g
            for k, v in state.items():
                tile.states[i][k][changed] = v
    gs, var = [], None
    for g, state in zip(tile.g_prog, tile.states):
        for model in d.noise:
            g = model.drift(g, state, tile.t_s)
        for model in d.noise:
            g = model.enforce(g, state)
        for model in d.noise:
            sigma = model.read_sigma_uS(g, state, tile.t_s)
            if sigma is not None:
                var = sigma * sigma if var is None else var + sigma * sigma
        gs.append(g)
    inv = np.float32(1.0 / d.gmax_uS)
    tile.g_now = gs
    tile.g_eff = ((gs[0] - gs[1]) * inv).astype(np.float32)
    tile.read_var = None if var is None else (var * inv * inv).astype(np.float32)


def _device_arrays(tile):
    arrays = [*tile.g_prog, tile.g_eff, tile.read_var, *tile.g_now]
    return [a for a in arrays if a is not None] + [v for s in tile.states for _, v in sorted(s.items())]


@pytest.mark.jitfree
@pytest.mark.parametrize("t_s", [0.0, 2e4])  # right after programming (no drift) and drifted
def test_zero_write_granularity_reproduces_the_old_update_exactly(t_s):  # read_time_s = t_s: writes allowed
    """Per-read noise (the read-out the old update was written for; frozen noise: next test)."""
    import copy
    from hw_models.noise.pcm import PCM
    rng = np.random.default_rng(11)
    w = (rng.standard_normal((40, 90)) * 0.03).astype(np.float32)
    tile = AnalogTile(w, dataclasses.replace(PCM_DEV, noise=(PCM(read_noise="per_read"),), read_time_s=t_s),
                      np.random.default_rng(12))
    for step in range(3):
        delta = (rng.standard_normal(w.shape) * 1e-3).astype(np.float32)
        if step == 1:
            delta[:15] = 0.0  # a masked re-write
        ref = copy.deepcopy(tile)
        tile.update(delta)
        _old_one_sided_update(ref, delta)
        for got, want in zip(_device_arrays(tile), _device_arrays(ref)):
            np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(tile.weights(), ref.weights())


@pytest.mark.jitfree
def test_frozen_read_noise_is_kept_until_the_devices_are_written_or_the_time_changes():
    """pcm's default read noise: drawn into the conductances when they are evaluated and then read
    identically by every MVM; a masked re-write redraws it for the re-written devices only; a new
    time redraws it everywhere; no per-read variance is left."""
    rng = np.random.default_rng(15)
    w = (rng.standard_normal((40, 90)) * 0.03).astype(np.float32)
    dev = dataclasses.replace(PCM_DEV, periphery=PeripheryConfig())
    tile = AnalogTile(w, dev, np.random.default_rng(16))
    assert tile.read_var is None
    x = rng.standard_normal((4, 90)).astype(np.float32)
    np.testing.assert_array_equal(tile.forward(x), tile.forward(x))
    assert not np.array_equal(tile.g_now[0], tile.g_prog[0])  # the frozen draw is in g_now
    before = [g.copy() for g in tile.g_now]
    delta = (rng.standard_normal(w.shape) * 1e-3).astype(np.float32)
    delta[:15] = 0.0
    tile.update(delta)
    for old, new in zip(before, tile.g_now):
        np.testing.assert_array_equal(new[:15], old[:15])
        assert np.mean(new[15:] != old[15:]) > 0.45  # re-written (off devices at 0 stay 0)
    again = [g.copy() for g in tile.g_now]
    tile.set_time(0.0)
    assert np.mean(tile.g_now[0][:15] != again[0][:15]) > 0.45


@pytest.mark.jitfree
def test_granular_writes_are_unbiased_with_exact_devices():
    """Zero-noise PCM: each pair moves by a whole number n of increments e, E[n e] = request,
    within 3 standard errors over 40,000 pairs; write() and update() agree."""
    from hw_models.noise.pcm import PCM
    e = 0.05
    rng = np.random.default_rng(13)
    w = rng.uniform(-0.7, 0.7, (160, 250)).astype(np.float32)
    w[:, 0] = 1.0  # w_max = 1: normalized = plain weights; targets stay inside [-1, 1]
    dev = dataclasses.replace(PCM_DEV, noise=(PCM.zero(),), write_granularity=e,
                              periphery=PeripheryConfig())
    tile = AnalogTile(w, dev, np.random.default_rng(14))
    dw = rng.uniform(-2.5 * e, 2.5 * e, w.shape).astype(np.float32)
    dw[:, 0] = 0.0
    before = tile.weights()
    after = tile.write(before + dw)
    np.testing.assert_array_equal(after, tile.weights())
    n = (after - before) / e
    assert np.allclose(n, np.rint(n), atol=1e-4)  # whole increments
    err = ((after - before) - dw).astype(np.float64)[:, 1:]
    assert abs(err.mean()) <= 3 * err.std() / np.sqrt(err.size)
    moved = (np.rint(n) != 0)[:, 1:]  # P(n != 0) = min(|dw| / e, 1)
    assert abs(moved.mean() - np.minimum(np.abs(dw[:, 1:]) / e, 1).mean()) <= 3 * 0.5 / np.sqrt(moved.size)


@pytest.mark.jitfree
def test_granular_writes_reprogram_only_the_pairs_that_move():
    import copy
    from hw_models.kernels.pcm import granular_targets
    rng = np.random.default_rng(15)
    w = (rng.standard_normal((50, 120)) * 0.03).astype(np.float32)
    dev = dataclasses.replace(PCM_DEV, write_granularity=0.04)
    tile = AnalogTile(w, dev, np.random.default_rng(16))
    delta = (rng.standard_normal(w.shape) * 0.3e-3).astype(np.float32)
    expect_idx = granular_targets(delta, tile.w_max[:, 0], tile.g_eff, 0.04, copy.deepcopy(tile.rng))[0]
    assert 0 < expect_idx.size < 0.5 * w.size
    before = [a.copy() for a in _device_arrays(tile)]
    before_states = copy.deepcopy(tile.states)
    tile.update(delta)
    moved = np.zeros(w.size, bool)
    moved[expect_idx] = True
    for old, new in zip(before, _device_arrays(tile)):
        np.testing.assert_array_equal(old.reshape(-1)[~moved], new.reshape(-1)[~moved])
    for i in range(2):  # re-programmed pairs: fresh drift exponents on both devices
        old_nu, new_nu = before_states[i]["nu"].reshape(-1), tile.states[i]["nu"].reshape(-1)
        assert np.mean(old_nu[moved] != new_nu[moved]) > 0.9


@pytest.mark.jitfree
def test_granular_writes_are_seed_deterministic():
    w = (np.random.default_rng(17).standard_normal((20, 30)) * 0.03).astype(np.float32)
    dev = dataclasses.replace(PCM_DEV, write_granularity=0.02)
    out = []
    for seed in (1, 1, 2):
        tile = AnalogTile(w, dev, np.random.default_rng(seed))
        for _ in range(3):
            tile.write(tile.weights() + np.float32(5e-4))
        out.append(tile.weights())
    assert np.array_equal(out[0], out[1]) and not np.array_equal(out[0], out[2])


@pytest.mark.jitfree
def test_bad_write_granularity_names_the_field():
    from common.errors import ConfigError
    for kw in ({"write_granularity": -0.1, "pair_mapping": "one_sided"},
               {"write_granularity": 1.5, "pair_mapping": "one_sided"},
               {"write_granularity": float("nan"), "pair_mapping": "one_sided"},
               {"write_granularity": 0.05, "pair_mapping": "symmetric"}):
        with pytest.raises(ConfigError, match="hardware.write_granularity must be"):
            DeviceConfig(**kw)
    with pytest.raises(ConfigError, match=r"hardware.write_granularity must be >= 0"):
        DeviceConfig(write_granularity=-0.1, pair_mapping="one_sided")


def test_read_and_output_noise_through_the_mvm():
    """Read noise and output noise, drawn as one normal per output: Var(y_m) =
    (sum_k x_k^2 (sigma+^2 + sigma-^2) / gmax^2 + out_noise^2) w_max^2."""
    rng = np.random.default_rng(18)
    w = rng.uniform(-1, 1, (3, 50)).astype(np.float32)
    dev = dataclasses.replace(IDEAL, weight_headroom=1.0, noise=(ConstantRead(0.5),),
                              periphery=PeripheryConfig(input_scaling="none", out_noise=0.05))
    tile = AnalogTile(w, dev, np.random.default_rng(19))
    x = rng.uniform(-1, 1, (1, 50)).astype(np.float32)
    draws = np.stack([tile.forward(np.repeat(x, 1000, axis=0)) for _ in range(100)]).reshape(-1, 3)
    n = draws.shape[0]
    sigma = np.sqrt((x ** 2).sum() * 2 * 0.5 ** 2 / 25.0 ** 2 + 0.05 ** 2) * tile.w_max[:, 0]
    assert np.all(np.abs(draws.mean(0) - (x @ tile.weights().T)[0]) < 3 * sigma / np.sqrt(n))
    assert np.all(np.abs(draws.std(0) - sigma) < 3 * sigma / np.sqrt(2 * n))


@pytest.mark.jitfree
def test_granular_writes_keep_device_properties():
    """pcm + stuck_at + gmax_variability: a granular re-write keeps the faults and per-device gmax
    of the re-programmed devices (drawn once, at the first programming) and re-imposes the faults."""
    from hw_models.noise import get
    chain = (get("pcm")(), get("stuck_at").example(), get("gmax_variability").example())
    dev = dataclasses.replace(PCM_DEV, noise=chain, write_granularity=0.02)
    w = (np.random.default_rng(20).standard_normal((30, 40)) * 0.03).astype(np.float32)
    tile = AnalogTile(w, dev, np.random.default_rng(21))
    before = [{k: v.copy() for k, v in s.items() if k != "nu" and k != "pcm.read_q"} for s in tile.states]
    tile.write(tile.weights() + np.float32(0.01) * tile.w_max)  # half an increment: ~half the pairs
    for old, new, g in zip(before, tile.states, tile.g_prog):
        for k, v in old.items():
            np.testing.assert_array_equal(v, new[k], err_msg=k)
        assert np.all(g[new["stuck"] == 1] == 0)
        assert np.all(g[new["stuck"] == 2] == new["stuck_at.gmax_uS"][new["stuck"] == 2])


def test_drift_compensation_reference_follows_writes():
    """After training writes, compensation must restore the trained weights' outputs, not the
    initially programmed ones."""
    rng = np.random.default_rng(11)
    w = rng.uniform(-1, 1, (10, 40)).astype(np.float32)
    x = rng.uniform(-1, 1, (5, 40)).astype(np.float32)
    dev = dataclasses.replace(IDEAL, weight_headroom=2.0, noise=(UniformDrift(0.05),),
                              periphery=PeripheryConfig(drift_compensation=True))
    tile = AnalogTile(w, dev, np.random.default_rng(0))
    tile.write(w * 1.5)  # a large, uniform change
    y_trained = tile.forward(x)
    assert np.allclose(y_trained, x @ (1.5 * w).T, rtol=1e-4, atol=1e-5)
    tile.set_time(20.0 * 1e4)
    assert np.allclose(tile.forward(x), y_trained, rtol=1e-4, atol=1e-5)
