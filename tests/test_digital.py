"""Digital fixed-point MAC array: forward/transposed MVM bit-exact against integer arithmetic
written out with the naive twins, accumulator overflow, stochastic-rounding updates."""

import dataclasses

import numpy as np
import pytest

from hw_models.tiles.digital import AccumulatorOverflow, DigitalTile
from hw_models.presets import preset

from naive import naive_int_matmul, naive_quantize_nearest_kernel

FIXED8 = preset("fixed8")


def _naive_forward(tile, x):
    sx = np.abs(x).max(axis=1).astype(np.float32) / np.float32(127)
    sx = np.where(sx > 0, sx, np.float32(1))
    xq = naive_quantize_nearest_kernel(x, sx, 8, axis=0)
    acc = naive_int_matmul(xq, tile.codes.T)
    return (acc.astype(np.float64) * sx[:, None]).astype(np.float32) * tile.scale.T


@pytest.mark.parametrize("n, k, m", [(1, 1, 1), (1, 300, 7), (4, 784, 33), (0, 10, 3)])
def test_forward_is_exact_integer_arithmetic(n, k, m):
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((m, k)) * 0.05).astype(np.float32)
    x = rng.standard_normal((n, k)).astype(np.float32)
    tile = DigitalTile(w, FIXED8, np.random.default_rng(1))
    w_codes = naive_quantize_nearest_kernel(w, tile.scale[:, 0], 8, axis=0)
    assert np.array_equal(tile.codes, w_codes)
    assert np.array_equal(tile.forward(x), _naive_forward(tile, x))
    if n:
        rel = np.abs(tile.forward(x) - x @ w.T).max() / np.abs(x @ w.T).max()
        assert rel < 0.05  # 8-bit inputs, 7 effective weight bits (headroom 2)


def test_transposed_mvm_applies_the_output_scale_before_the_dac():
    rng = np.random.default_rng(2)
    w = (rng.standard_normal((20, 30)) * 0.05).astype(np.float32)
    d = rng.standard_normal((5, 20)).astype(np.float32)
    tile = DigitalTile(w, FIXED8, np.random.default_rng(1))
    ref = d @ tile.weights()
    assert np.abs(tile.backward(d) - ref).max() / np.abs(ref).max() < 0.02


def test_accumulator_overflow_is_detected():
    w = np.ones((2, 600), np.float32)
    tile = DigitalTile(w, dataclasses.replace(FIXED8, acc_bits=16), np.random.default_rng(0))
    with pytest.raises(AccumulatorOverflow, match="16-bit"):
        tile.forward(np.ones((1, 600), np.float32))  # 600 * 127 * 63 > 2^15
    DigitalTile(w, FIXED8, np.random.default_rng(0)).forward(np.ones((1, 600), np.float32))


def test_stochastic_rounding_updates_are_unbiased_and_nearest_ones_are_not():
    w = np.zeros((100, 1000), np.float32)
    w[:, 0] = 1.0  # scale = 2 * 1 / 127 per row
    lsb = 2.0 / 127
    tile = DigitalTile(w, FIXED8, np.random.default_rng(3))
    tile.update(np.full_like(w, 0.3 * lsb))
    moved = tile.weights()[:, 1:] / lsb
    n = moved.size
    assert abs(moved.mean() - 0.3) < 3 * np.sqrt(0.3 * 0.7 / n)
    near = DigitalTile(w, dataclasses.replace(FIXED8, update_rounding="nearest"), np.random.default_rng(3))
    near.update(np.full_like(w, 0.3 * lsb))
    assert np.all(near.weights()[:, 1:] == 0)  # sub-LSB updates vanish without stochastic rounding


def test_updates_saturate_at_the_code_range():
    w = np.full((1, 4), 0.5, np.float32)
    tile = DigitalTile(w, FIXED8, np.random.default_rng(0))
    tile.update(np.full_like(w, 100.0))
    assert np.all(tile.codes == 127)
