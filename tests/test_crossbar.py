"""Analog crossbar: ideal parity with torch, per-tile ADC, read-noise statistics through the MVM,
update paths, drift and its global compensation, bound management."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import torch

from hw_models.crossbar import AnalogTile
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
    from onchip_ff.errors import ConfigError
    for kw, field in [({"gmax_uS": 0}, "hardware.gmax_uS"), ({"tile_rows": 0}, "hardware.tile_rows"),
                      ({"weight_bits": 1}, "hardware.weight_bits"), ({"pair_mapping": "x"}, "hardware.pair_mapping")]:
        with pytest.raises(ConfigError, match=field):
            DeviceConfig(**kw)
    for kw, field in [({"adc_bits": 0.5}, "hardware.adc_bits"), ({"out_noise": -1.0}, "hardware.out_noise"),
                      ({"dac_bits": 1}, "hardware.dac_bits")]:
        with pytest.raises(ConfigError, match=field):
            PeripheryConfig(**kw)
