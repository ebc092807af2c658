"""hw_models.formats: format validation, scales, quantization (bit-exact against tests/naive.py),
stochastic-rounding statistics and determinism, dequantization, accumulator overflow."""

import numpy as np
import pytest
from naive import (naive_checked_matmul_kernel, naive_quantize_nearest_kernel,
                   naive_quantize_stochastic_kernel, naive_seed_key, naive_splitmix64, naive_uniform)

from hw_models.formats import FixedPointFormat, accumulate_int, dequantize, quantize, scale_for
from common.errors import ConfigError

jitfree = pytest.mark.jitfree


# ---- the format ---------------------------------------------------------------------------
@jitfree
@pytest.mark.parametrize("bits", [0, 1, 17, True, 8.0])
def test_bad_bits_name_the_field(bits):
    with pytest.raises(ConfigError, match=r"^hardware\.weight_bits must be 2\.\.16, got "):
        FixedPointFormat(bits, field_name="hardware.weight_bits")


@jitfree
def test_bad_rounding_names_the_field():
    with pytest.raises(ConfigError, match="hardware.update_rounding"):
        FixedPointFormat(8, "truncate", rounding_field="hardware.update_rounding")


@jitfree
def test_qmax_and_storage_dtype():
    assert (FixedPointFormat(2).qmax, FixedPointFormat(8).qmax, FixedPointFormat(16).qmax) == (1, 127, 32767)
    assert FixedPointFormat(8).dtype == np.int8 and FixedPointFormat(9).dtype == np.int16
    assert FixedPointFormat(8) == FixedPointFormat(8, field_name="other")  # names are not part of equality


# ---- scales -------------------------------------------------------------------------------
@jitfree
def test_scale_per_tensor_and_per_column():
    x = np.array([[1.0, -4.0, 0.0], [2.0, 0.5, 0.0]], dtype=np.float32)
    s = scale_for(x, FixedPointFormat(8))
    assert s.dtype == np.float32 and s.shape == () and s == np.float32(4.0) / np.float32(127)
    sc = scale_for(x, FixedPointFormat(8, per_column=True))
    np.testing.assert_array_equal(sc, np.array([2.0, 4.0, 127.0], np.float32) / np.float32(127))
    sr = scale_for(x, FixedPointFormat(4, per_column=True), axis=0)
    np.testing.assert_array_equal(sr, np.array([4.0, 2.0], np.float32) / np.float32(7))
    assert scale_for(np.zeros(5), FixedPointFormat(8)) == 1.0
    with pytest.raises(ValueError, match="inf or NaN"):
        scale_for(np.array([1.0, np.inf]), FixedPointFormat(8))


# ---- quantization vs the twins ------------------------------------------------------------
CASES = [  # (shape, bits, per_column, axis)
    ((), 8, False, None), ((1, 1), 8, False, None), ((0, 5), 8, False, None), ((7,), 3, False, None),
    ((4, 9), 8, True, None), ((4, 9), 12, True, 0), ((2, 3, 5), 16, True, 1), ((3, 0), 8, True, 0),
]


@jitfree
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,bits,per_column,axis", CASES)
@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
def test_quantize_matches_twin(shape, bits, per_column, axis, dtype, rounding):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    fmt = FixedPointFormat(bits, rounding, per_column)
    s = scale_for(x, fmt, axis) * np.float32(0.8)  # some elements saturate
    q = quantize(x, s, fmt, seed=42, axis=axis)
    want = (naive_quantize_nearest_kernel(x, s, bits, axis) if rounding == "nearest"
            else naive_quantize_stochastic_kernel(x, s, bits, 42, axis))
    assert q.dtype == fmt.dtype and q.shape == x.shape
    np.testing.assert_array_equal(q, want)


@jitfree
def test_nearest_ties_to_even_and_saturation():
    x = np.array([0.5, 1.5, 2.5, -0.5, -2.5, 3.49, 7.0, 8.5, -100.0, np.inf, -np.inf])
    q, n_sat = quantize(x, 1.0, FixedPointFormat(4), return_saturated=True)  # qmax 7
    np.testing.assert_array_equal(q, [0, 2, 2, 0, -2, 3, 7, 7, -7, 7, -7])
    assert n_sat == 4
    qs, n_sat_s = quantize(x[6:], 1.0, FixedPointFormat(4, "stochastic"), seed=0, return_saturated=True)
    np.testing.assert_array_equal(qs, [7, 7, -7, 7, -7])
    assert n_sat_s >= 4


@jitfree
def test_quantize_rejects_bad_input():
    fmt = FixedPointFormat(8)
    with pytest.raises(ValueError, match="NaN"):
        quantize(np.array([1.0, np.nan]), 1.0, fmt)
    with pytest.raises(ValueError, match="seed"):
        quantize(np.ones(3), 1.0, FixedPointFormat(8, "stochastic"))
    with pytest.raises(ValueError, match="scale"):
        quantize(np.ones(3), 0.0, fmt)
    with pytest.raises(ValueError, match="per-column scale"):
        quantize(np.ones((2, 3)), np.ones(2), FixedPointFormat(8, per_column=True))


# ---- the counter-based hash ----------------------------------------------------------------
@jitfree
def test_hash_is_splitmix64():
    assert naive_splitmix64(0, 1)[0] == 0xE220A8397B1DCDAF  # reference value of Vigna's splitmix64.c
    key = naive_seed_key(7)
    draws = np.array(naive_splitmix64(key, 6), dtype=np.uint64)
    want = (draws >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
    np.testing.assert_array_equal(naive_uniform(key, 6), want)


@jitfree
def test_stochastic_is_seed_deterministic():
    rng = np.random.default_rng(0)
    x = rng.uniform(-5, 5, (6, 11))
    fmt = FixedPointFormat(6, "stochastic")
    a, b, c = (quantize(x, 0.1, fmt, seed=s) for s in (5, 5, 6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # a Generator seeds through one draw: equal generator states give equal codes
    np.testing.assert_array_equal(quantize(x, 0.1, fmt, seed=np.random.default_rng(3)),
                                  quantize(x, 0.1, fmt, seed=np.random.default_rng(3)))
    # element i depends only on (seed, i): a prefix of the flat array gives the prefix of the codes
    np.testing.assert_array_equal(quantize(x.ravel()[:20], 0.1, fmt, seed=5), a.ravel()[:20])


def test_stochastic_rounding_is_unbiased():
    rng = np.random.default_rng(2)
    n = 200_000
    x = rng.uniform(-1.0, 1.0, n)
    fmt = FixedPointFormat(4, "stochastic")
    scale = scale_for(x, fmt)
    err = dequantize(quantize(x, scale, fmt, seed=9), scale).astype(np.float64) - x
    assert abs(err.mean()) < 3 * err.std() / np.sqrt(n)
    assert np.all(np.abs(err) < scale * (1 + 1e-6))  # never more than one LSB away
    const = np.full(n, 0.3 * scale, dtype=np.float32)  # 0.3 LSB: q is 1 with probability 0.3
    q = quantize(const, scale, fmt, seed=10).astype(np.float64)
    assert abs(q.mean() - 0.3) < 3 * np.sqrt(0.3 * 0.7 / n)


# ---- dequantization -------------------------------------------------------------------------
@jitfree
def test_dequantize():
    q = np.array([[1, -2, 3], [4, 5, -6]], dtype=np.int8)
    np.testing.assert_array_equal(dequantize(q, 0.5), q * np.float32(0.5))
    s = np.array([1.0, 2.0, 4.0], np.float32)
    np.testing.assert_array_equal(dequantize(q, s), q * s)
    np.testing.assert_array_equal(dequantize(q, s[:2], axis=0), q * s[:2, None])
    assert dequantize(q, s).dtype == np.float32


# ---- accumulator overflow -------------------------------------------------------------------
@jitfree
def test_overflow_fires_on_running_sum_only():
    a = np.full((1, 4), 127, dtype=np.int8)
    # running sums 16129, 32258, 48387 (> 2**15 - 1), 32258: only a partial sum leaves the range
    b_bad = np.array([[127], [127], [127], [-127]], dtype=np.int8)
    b_bad = np.concatenate([b_bad, b_bad[::-1]], axis=1)  # second column: -, +, +, +: 32258 at most
    out, n = accumulate_int(a, b_bad, acc_bits=16, raise_on_overflow=False)
    np.testing.assert_array_equal(out, [[32258, 32258]])
    assert n == 1
    with pytest.raises(OverflowError, match="16-bit accumulator"):
        accumulate_int(a, b_bad, acc_bits=16)
    safe = np.array([[127], [-127], [127], [-127]], dtype=np.int8)  # bound 64516 > 2**15: exact check
    out_safe, n_safe = accumulate_int(a, safe, acc_bits=16)
    assert n_safe == 0 and out_safe[0, 0] == 0
    assert accumulate_int(a, b_bad, acc_bits=17)[1] == 0  # analytic bound 64516 < 2**16: no check


@jitfree
def test_checked_accumulation_matches_twin():
    rng = np.random.default_rng(4)
    a = rng.integers(-127, 128, (5, 23)).astype(np.int8)
    b = rng.integers(-127, 128, (23, 4)).astype(np.int8)
    out, n = accumulate_int(a, b, acc_bits=17, raise_on_overflow=False)
    want, n_want = naive_checked_matmul_kernel(a, b, 17)
    np.testing.assert_array_equal(out, want)
    assert n == n_want and 0 < n < out.size  # the seed gives some overflowing outputs
