"""Numba kernels against their twins in tests/naive.py: integer matmul (BLAS and int64 paths, per
tile, accumulator check), the fused ADC, and quantization on arrays large enough to use threads."""

import numpy as np
import pytest
from naive import (naive_adc_kernel, naive_checked_matmul_kernel, naive_int_matmul,
                   naive_quantize_nearest_kernel, naive_quantize_stochastic_kernel,
                   naive_tiled_matmul_kernel)

from hw_models.formats import FixedPointFormat, quantize, scale_for
from hw_models.kernels import intmvm
from hw_models.kernels.adc import adc_convert
from hw_models.kernels.intmvm import blas_is_exact, checked_int_matmul, int_matmul, tiled_int_matmul

jitfree = pytest.mark.jitfree


def codes(rng, shape, dtype):
    qmax = np.iinfo(dtype).max
    return rng.integers(-qmax, qmax + 1, shape).astype(dtype)


SHAPES = [(1, 1, 1), (0, 5, 3), (3, 0, 4), (1, 7, 1), (5, 13, 6), (4, 9, 0)]  # (N, K, M)


# ---- integer matmul -------------------------------------------------------------------------
@jitfree
@pytest.mark.parametrize("n,k,m", SHAPES)
@pytest.mark.parametrize("da,db", [(np.int8, np.int8), (np.int16, np.int8), (np.int16, np.int16)])
def test_int_matmul_paths_match_twin(n, k, m, da, db):
    rng = np.random.default_rng(n * 100 + k * 10 + m)
    a, b = codes(rng, (n, k), da), codes(rng, (k, m), db)
    want = naive_int_matmul(a, b)
    for path in ("int64", "auto") + (("blas",) if blas_is_exact(a, b) else ()):
        got = int_matmul(a, b, path=path)
        assert got.dtype == np.int64 and got.shape == (n, m)
        np.testing.assert_array_equal(got, want)


def test_blas_equals_int64_where_exact():
    rng = np.random.default_rng(0)
    a, b = codes(rng, (64, 784), np.int8), codes(rng, (784, 100), np.int8)
    a[0, :], b[:, 0] = 127, -127  # reach the bound 784 * 127 * 127 < 2**24
    assert blas_is_exact(a, b)
    got = int_matmul(a, b, path="blas")
    np.testing.assert_array_equal(got, int_matmul(a, b, path="int64"))
    assert got[0, 0] == -784 * 127 * 127


@jitfree
def test_auto_refuses_blas_when_inexact(monkeypatch):
    k = 3
    a = np.full((1, k), 32767, dtype=np.int16)
    b = np.array([[32767], [32767], [1]], dtype=np.int16)
    exact = 2 * 32767 * 32767 + 32767  # odd and > 2**24: not a float32
    assert int(np.float32(a.astype(np.float32) @ b.astype(np.float32))[0, 0]) != exact  # BLAS would be wrong
    assert not blas_is_exact(a, b)
    with pytest.raises(ValueError, match="not exact"):
        int_matmul(a, b, path="blas")
    calls = []
    monkeypatch.setattr(intmvm, "_blas", lambda *args: calls.append(1))
    assert int_matmul(a, b)[0, 0] == exact and not calls
    with pytest.raises(TypeError):
        int_matmul(a.astype(np.int32), b)
    with pytest.raises(ValueError, match="inner"):
        int_matmul(a, b.T)


@jitfree
def test_auto_takes_blas_when_exact(monkeypatch):
    a, b = np.ones((2, 3), np.int8), np.ones((3, 2), np.int8)
    calls = []
    real = intmvm._blas
    monkeypatch.setattr(intmvm, "_blas", lambda x, y: calls.append(1) or real(x, y))
    np.testing.assert_array_equal(int_matmul(a, b), np.full((2, 2), 3))
    assert calls


# ---- per-tile partial sums ------------------------------------------------------------------
@jitfree
@pytest.mark.parametrize("n,k,m,tile", [(1, 1, 1, 1), (3, 10, 4, 4), (2, 8, 3, 4), (2, 5, 3, 64),
                                        (0, 7, 2, 3), (2, 0, 3, 4), (1, 9, 2, 1)])
def test_tiled_matches_twin(n, k, m, tile):
    rng = np.random.default_rng(k + tile)
    a, b = codes(rng, (n, k), np.int16), codes(rng, (k, m), np.int8)
    want = naive_tiled_matmul_kernel(a, b, tile)
    assert want.shape == (-(-k // tile), n, m)
    for path in ("int64", "auto"):
        np.testing.assert_array_equal(tiled_int_matmul(a, b, tile, path=path), want)
    a8 = codes(rng, (n, k), np.int8)
    np.testing.assert_array_equal(tiled_int_matmul(a8, b, tile, path="blas"),
                                  tiled_int_matmul(a8, b, tile, path="int64"))
    np.testing.assert_array_equal(tiled_int_matmul(a, b, tile).sum(axis=0), int_matmul(a, b))


def test_tiled_large_blas_equals_int64():
    rng = np.random.default_rng(5)
    a, b = codes(rng, (33, 1000), np.int8), codes(rng, (1000, 70), np.int8)
    np.testing.assert_array_equal(tiled_int_matmul(a, b, 256, path="blas"),
                                  tiled_int_matmul(a, b, 256, path="int64"))


# ---- exact running-sum check ----------------------------------------------------------------
@jitfree
@pytest.mark.parametrize("n,k,m", SHAPES)
def test_checked_matmul_matches_twin(n, k, m):
    rng = np.random.default_rng(7 + k)
    a, b = codes(rng, (n, k), np.int8), codes(rng, (k, m), np.int8)
    out, n_ovf = checked_int_matmul(a, b, 16)
    want, n_want = naive_checked_matmul_kernel(a, b, 16)
    np.testing.assert_array_equal(out, want)
    assert n_ovf == n_want


# ---- ADC --------------------------------------------------------------------------------------
@jitfree
@pytest.mark.parametrize("shape", [(1, 1), (2, 3, 5), (0, 4), (3, 0, 2)])
@pytest.mark.parametrize("bits", [0, 2, 4, 8])
@pytest.mark.parametrize("with_noise", [False, True])
def test_adc_matches_twin(shape, bits, with_noise):
    rng = np.random.default_rng(bits)
    partial = (rng.standard_normal(shape) * 1.5).astype(np.float32)
    noise = rng.standard_normal(shape).astype(np.float32) if with_noise else None
    out, n_sat = adc_convert(partial, noise, 0.3, bits, 2.0)
    want, n_want = naive_adc_kernel(partial, noise, 0.3, bits, 2.0)
    assert out.dtype == np.float32 and out.shape == partial.shape
    np.testing.assert_array_equal(out, want)
    assert n_sat == n_want


@jitfree
def test_adc_grid_saturation_and_rows():
    partial = np.array([[0.0, 0.24, 0.26, 0.99], [1.0, 1.5, -7.0, -0.5]], dtype=np.float32)
    out, n_sat, rows = adc_convert(partial, None, 0.0, 3, 1.0, return_row_counts=True)  # levels k/3
    np.testing.assert_array_equal(out, np.float32(np.array([[0, 1, 1, 3], [3, 3, -3, -2]]) / 3.0))
    assert n_sat == 3 and rows.tolist() == [0, 3]
    ideal, n_ideal = adc_convert(partial, np.ones_like(partial), 0.5, 0, 1.0)
    np.testing.assert_array_equal(ideal, partial + np.float32(0.5))
    assert n_ideal == 0
    with pytest.raises(ValueError, match="bits"):
        adc_convert(partial, None, 0.0, 1, 1.0)
    with pytest.raises(TypeError):
        adc_convert(partial.astype(np.float64), None, 0.0, 4, 1.0)


def test_adc_large_matches_twin():
    rng = np.random.default_rng(11)
    partial = (rng.standard_normal((3, 128, 200)) * 4).astype(np.float32)
    noise = rng.standard_normal(partial.shape).astype(np.float32)
    out, n_sat = adc_convert(partial, noise, 0.7, 6, 8.0)
    want, n_want = naive_adc_kernel(partial, noise, 0.7, 6, 8.0)
    np.testing.assert_array_equal(out, want)
    assert n_sat == n_want > 0


# ---- quantization on larger arrays (threads) -------------------------------------------------
@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
def test_quantize_large_matches_twin(rounding):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((300, 257)).astype(np.float32)
    fmt = FixedPointFormat(8, rounding, per_column=True)
    s = scale_for(x, fmt, axis=0)
    q = quantize(x, s, fmt, seed=123, axis=0)
    want = (naive_quantize_nearest_kernel(x, s, 8, 0) if rounding == "nearest"
            else naive_quantize_stochastic_kernel(x, s, 8, 123, 0))
    np.testing.assert_array_equal(q, want)
