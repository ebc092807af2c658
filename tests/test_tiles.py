"""Contract test over every array a preset makes (analog crossbar and digital MAC array, via
hw_models.presets.PRESETS, so a preset added later is checked too): the Tile protocol, shapes and
dtypes of reads, write() returning what the array holds, outer_update == update(-lr d^T x), the
same seed giving the same array and reads, set_time never changing a digital array, and reads
close to x W^T where the device is ideal."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hw_models.presets import PRESETS, preset
from hw_models.tiles import Tile, make_tile

SHAPES = [(1, 1), (7, 300), (40, 90)]


def _case(shape, seed=0):
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal(shape) * 0.1).astype(np.float32)
    x = rng.standard_normal((5, shape[1])).astype(np.float32)
    d = rng.standard_normal((5, shape[0])).astype(np.float32)
    return w, x, d


@pytest.mark.jitfree
@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("shape", SHAPES)
def test_every_preset_array_meets_the_tile_contract(name, shape):
    w, x, d = _case(shape)
    dev = preset(name)
    tile = make_tile(w, dev, np.random.default_rng(1))
    assert isinstance(tile, Tile) and (tile.out_features, tile.in_features) == shape
    for out, want in ((tile.weights(), shape), (tile.forward(x), (5, shape[0])), (tile.backward(d), (5, shape[1]))):
        assert out.shape == want and out.dtype == np.float32 and np.all(np.isfinite(out))
    held = tile.write(w * 1.1)
    assert held.shape == shape and np.array_equal(held, tile.weights())
    a, b = make_tile(w, dev, np.random.default_rng(2)), make_tile(w, dev, np.random.default_rng(2))
    a.outer_update(x, d, 0.01)
    b.update(-np.float32(0.01) * (d.T @ x))
    np.testing.assert_array_equal(a.weights(), b.weights())
    np.testing.assert_array_equal(a.forward(x), b.forward(x))  # same seed, same reads
    before = a.weights()
    a.set_time(3600.0)
    assert a.weights().shape == shape
    if dev.digital:
        np.testing.assert_array_equal(a.weights(), before)


@pytest.mark.jitfree
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_weight_range_bounds_what_the_array_holds_and_is_reached_by_large_writes(name):
    """weight_range() (M, 1) bounds |weights()| row by row (pcm: its programming noise is not
    clipped at g_max, so a device can end a little above it); on exact devices (ideal, fixed8) a
    write far beyond it puts every weight at its limit — what experiments/observers.at_range_limit
    counts (pcm writes move in granularity steps and reram in pulses: only the bound is checked)."""
    from experiments.observers import at_range_limit
    w, _, _ = _case((40, 90))
    tile = make_tile(w, preset(name), np.random.default_rng(1))
    r = tile.weight_range()
    assert r.shape == (40, 1) and np.all(r > 0)
    bound = 1.3 if name == "pcm" else 1 + 1e-6
    assert np.all(np.abs(tile.weights()) <= r * bound)
    held = tile.write(np.where(w > 0, 100.0, -100.0).astype(np.float32) * r)
    assert np.all(np.abs(held) <= r * bound)
    if name in ("ideal", "fixed8"):
        assert at_range_limit([tile]) == 1.0
        tile.write(w)
        assert at_range_limit([tile]) < 0.05


@pytest.mark.jitfree
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_reads_are_x_times_w_on_ideal_devices(name):
    """With the noise models zeroed and converters ideal, every array reads x W^T of what it holds
    (digital: up to its 8-bit input rounding)."""
    w, x, d = _case((40, 90))
    dev = preset(name)
    dev = dataclasses.replace(dev, noise=tuple(type(m).zero() for m in dev.noise),
                              periphery=dataclasses.replace(dev.periphery, dac_bits=0, adc_bits=0, out_noise=0.0,
                                                            drift_compensation=False))
    tile = make_tile(w, dev, np.random.default_rng(1))
    held = tile.weights()
    tol = 0.02 if dev.digital else 1e-5
    np.testing.assert_allclose(tile.forward(x), x @ held.T, rtol=0, atol=tol * np.abs(x @ held.T).max())
    np.testing.assert_allclose(tile.backward(d), d @ held, rtol=0, atol=tol * np.abs(d @ held).max())
