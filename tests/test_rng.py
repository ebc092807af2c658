"""Counter-based normals and uniforms (hw_models/kernels/normal.py, hw_models/rng.py): bit-exact
against the pure-Python twin, the standard-normal law checked statistically (moments, KS, tails),
same seed => same numbers."""

import math

import numba
import numpy as np
import pytest
from scipy import stats

from hw_models.kernels.normal import KI, WI, FI, ZIG_R, ZIG_V, fill_normal, fill_uniform
from hw_models.rng import NormalSource, standard_normal, uniform
from naive import naive_normal_at, naive_uniform32, naive_ziggurat_tables

jitfree = pytest.mark.jitfree


@jitfree
def test_tables_equal_the_twins_and_close_the_ziggurat():
    ki, wi, fi = naive_ziggurat_tables()
    assert KI.tolist() == ki and WI.tolist() == wi and FI.tolist() == fi
    # V is R f(R) + the tail's area, and every layer has area V: the recursion must end at the top
    tail = math.sqrt(math.pi / 2) * math.erfc(ZIG_R / math.sqrt(2))
    assert ZIG_R * math.exp(-ZIG_R ** 2 / 2) + tail == pytest.approx(ZIG_V, rel=1e-9)
    x1 = WI[1] * 2 ** 52  # top layer [0, x1] x [f(x1), 1] has area x1 (1 - f(x1)) = V
    assert x1 * (1 - FI[1]) == pytest.approx(ZIG_V, rel=1e-6)


@jitfree
def test_normal_and_uniform_kernels_equal_their_twins_bit_for_bit():
    tables = naive_ziggurat_tables()
    key = 0x1234_5678_9ABC_DEF0
    n = 4000 if numba.config.DISABLE_JIT else 40_000
    out = fill_normal(key, np.empty(n, np.float32))
    twin = np.array([naive_normal_at(key, i, tables) for i in range(n)], np.float32)
    assert np.array_equal(out, twin)
    # the slow paths were exercised: values beyond R (tail) and in wedges are in the sample
    assert (np.abs(out) > ZIG_R).any() or n < 10_000
    assert np.array_equal(fill_uniform(key, np.empty(1000, np.float32)), naive_uniform32(key, 1000))


def test_normals_follow_the_standard_normal_law():
    n = 4_000_000
    x = fill_normal(7, np.empty(n, np.float32)).astype(np.float64)
    se = 1 / math.sqrt(n)
    assert abs(x.mean()) < 4 * se
    assert abs(x.var() - 1) < 4 * math.sqrt(2) * se
    assert abs(stats.skew(x)) < 4 * math.sqrt(6) * se
    assert abs(stats.kurtosis(x)) < 4 * math.sqrt(24) * se
    assert stats.kstest(x[:1_000_000], "norm").pvalue > 1e-3
    for edge in (1.0, 2.0, ZIG_R, 4.5):  # tail frequencies, binomial standard errors
        p = 2 * stats.norm.sf(edge)
        assert abs((np.abs(x) > edge).mean() - p) < 4 * math.sqrt(p * (1 - p) / n)


def test_uniforms_are_uniform():
    u = fill_uniform(9, np.empty(1_000_000, np.float32))
    assert u.min() >= 0 and u.max() < 1
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    assert np.array_equal(u, np.floor(u * 2 ** 24) / 2 ** 24)  # on the 2**-24 grid


@jitfree
@pytest.mark.parametrize("shape", [(7,), (300, 100), (0, 5)])
def test_sources_are_deterministic_per_seed(shape):
    a = NormalSource(np.random.default_rng(3)).standard_normal(shape)
    b = NormalSource(np.random.default_rng(3)).standard_normal(shape)
    c = NormalSource(np.random.default_rng(4)).standard_normal(shape)
    assert a.shape == shape and a.dtype == np.float32 and np.array_equal(a, b)
    if a.size > 1:
        assert not np.array_equal(a, c)
    src = NormalSource(np.random.default_rng(3))
    first, second = src.standard_normal(shape), src.standard_normal(shape)
    assert a.size < 2 or not np.array_equal(first, second)  # every call a new key
    r1, r2 = np.random.default_rng(5), np.random.default_rng(5)
    assert np.array_equal(standard_normal(r1, 50), standard_normal(r2, 50))
    assert np.array_equal(uniform(r1, 50), uniform(r2, 50))


@jitfree
def test_source_state_round_trip():
    src = NormalSource(np.random.default_rng(1))
    saved = src.states()
    a = src.standard_normal((100,))
    src.set_states(saved)
    assert np.array_equal(a, src.standard_normal((100,)))
    with pytest.raises(ValueError, match="older onchip-ff"):
        src.set_states(saved * 4)
