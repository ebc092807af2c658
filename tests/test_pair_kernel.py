"""Pair kernels (hw_models/kernels/pair.py: a symmetric pair write's requests, every pair's
effective weight) against their twins in tests/naive.py, bit-exact (bit patterns compared, so NaN
signs and signed zeros count), incl. edge sizes, NaN / inf / -0, a float64 target, broadcast and
non-contiguous input and bad input; and a pulsed array's write and update equal to the numpy
expressions they replaced."""

import numpy as np
import pytest

from hw_models.kernels.pair import half_requests, pair_difference

from naive import naive_half_requests, naive_pair_difference

F32 = np.float32


def _arrays(shape, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 0.05, shape).astype(F32)
    w_max = rng.uniform(0.05, 0.2, shape[0]).astype(F32)
    g_eff = rng.uniform(-1, 1, shape).astype(F32)
    return w, w_max, g_eff


@pytest.mark.jitfree
@pytest.mark.parametrize("shape", [(0, 3), (1, 1), (3, 0), (5, 7), (300, 401)])
@pytest.mark.parametrize("target", [False, True])
def test_half_requests_match_twin(shape, target):
    w, w_max, g_eff = _arrays(shape)
    g = g_eff if target else None
    got = half_requests(w, w_max, F32(12.5), g_eff=g)
    want = naive_half_requests(w, w_max, 12.5, g_eff=g)
    for a, b in zip(got, want):
        assert a.shape == shape and a.dtype == F32
        np.testing.assert_array_equal(a, b)
    if w.size > 100:  # not the identity: a target differs from a change
        other = half_requests(w, w_max, F32(12.5), g_eff=None if target else g_eff)[0]
        assert not np.array_equal(got[0], other)


def _bits(a):
    return np.ascontiguousarray(a, F32).view(np.uint32)


@pytest.mark.jitfree
@pytest.mark.parametrize("target", [False, True])
def test_half_requests_special_values_bit_for_bit(target):
    """NaN (both signs), +-inf, +-0 and subnormal changes: the same bit patterns as the twin (whose
    float32(-1) * NaN keeps the NaN's sign)."""
    w, w_max, g_eff = _arrays((4, 8), seed=2)
    special = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45, -1e-45], F32)
    w[:] = special
    g = np.zeros_like(g_eff) if target else None  # a target with g_eff = 0: the change is w itself
    got, want = half_requests(w, w_max, F32(12.5), g_eff=g), naive_half_requests(w, w_max, 12.5, g_eff=g)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(_bits(a), _bits(b))
    assert np.signbit(got[1][0, 0]) == np.signbit(special[0] * F32(-1.0))


@pytest.mark.jitfree
def test_half_requests_broadcast_like_numpy():
    """A change or target of another shape is broadcast to the array's shape, as numpy did."""
    w, w_max, g_eff = _arrays((6, 5), seed=3)
    for small in (np.float32(0.01), w[0], w[:, :1]):
        got = half_requests(small, w_max, 12.5, shape=w.shape)
        want = naive_half_requests(np.broadcast_to(small, w.shape), w_max, 12.5)
        for a, b in zip(got, want):
            assert a.shape == w.shape
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError):
        half_requests(w[:2], w_max, 12.5, shape=w.shape)


@pytest.mark.jitfree
def test_half_requests_float64_target_and_views():
    w, w_max, g_eff = _arrays((40, 30), seed=1)
    w64 = w.astype(np.float64) + 1e-9  # a change computed in float64, then rounded, as numpy would
    for a, b in zip(half_requests(w64, w_max, 12.5, g_eff=g_eff), naive_half_requests(w64, w_max, 12.5, g_eff)):
        np.testing.assert_array_equal(a, b)
    wt = np.asfortranarray(w)  # a non-contiguous layout gives the same numbers
    for a, b in zip(half_requests(wt, w_max.reshape(-1, 1), 12.5), naive_half_requests(w, w_max, 12.5)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.jitfree
def test_half_requests_reject_bad_input():
    w, w_max, g_eff = _arrays((4, 5))
    with pytest.raises(ValueError, match=r"w \(M, K\)"):
        half_requests(w, w_max[:3], 1.0)
    with pytest.raises(ValueError, match=r"w \(M, K\)"):
        half_requests(w.reshape(-1), w_max, 1.0)
    with pytest.raises(ValueError, match="g_eff"):
        half_requests(w, w_max, 1.0, g_eff=g_eff.astype(np.float64))


@pytest.mark.jitfree
@pytest.mark.parametrize("shape", [(0,), (1,), (7,), (3, 5), (300, 400)])
def test_pair_difference_matches_twin(shape):
    rng = np.random.default_rng(4)
    a = rng.uniform(0, 25, shape).astype(F32)
    b = rng.uniform(0, 25, shape).astype(F32)
    got = pair_difference(a, b, F32(1 / 25))
    assert got.shape == shape and got.dtype == F32
    np.testing.assert_array_equal(got, naive_pair_difference(a, b, F32(1 / 25)))
    # other dtypes and a transposed view: numpy's result
    np.testing.assert_array_equal(pair_difference(a.astype(np.float64), b, 0.04),
                                  naive_pair_difference(a.astype(np.float64), b, 0.04))
    if a.ndim == 2:
        np.testing.assert_array_equal(pair_difference(a.T, b.T, 0.04), naive_pair_difference(a.T, b.T, 0.04))


@pytest.mark.parametrize("preset_name", ["reram_pulsed", "pulsed_constant"])
@pytest.mark.parametrize("how", ["write", "update"])
def test_pulsed_write_and_update_equal_the_numpy_expressions(preset_name, how):
    """A symmetric array's write (and update) moves the devices exactly as the numpy expressions
    they replaced (delta = w_target - weights(), requests +-(delta / w_max) gmax / 2), with the same
    draws: two arrays from one seed, one moved through the policy, one by hand."""
    from dataclasses import replace

    from hw_models.noise import registry
    from hw_models.presets import preset
    from hw_models.tiles import make_tile
    from hw_models.tiles.update import update_model

    dev = preset("reram_pulsed")
    if preset_name == "pulsed_constant":
        dev = replace(dev, noise=(registry.get("pulsed_constant").example(),))
    rng = np.random.default_rng(0)
    w = rng.uniform(-0.1, 0.1, (30, 20)).astype(F32)
    a, b = make_tile(w, dev, np.random.default_rng(5)), make_tile(w, dev, np.random.default_rng(5))
    target = (w + rng.normal(0, 0.01, w.shape)).astype(F32)
    if how == "write":
        got = a.write(target)
        delta = target - b.weights()
    else:
        delta = rng.normal(0, 0.01, w.shape)  # float64, rounded to float32 as before
        a.update(delta)
        got = a.weights()
    half = np.asarray(delta, F32) / b.w_max * F32(dev.gmax_uS / 2)
    model = update_model(dev)
    moved = [model.update(b.g_prog[i], F32(s) * half, dev.gmax_uS, b.states[i], b.rng) for i, s in enumerate((1.0, -1.0))]
    b.g_prog = [np.ascontiguousarray(g, F32) for g in moved]
    b.refresh()
    np.testing.assert_array_equal(got, b.weights())
    assert not np.array_equal(got, w)
    for x, y in zip(a.g_prog, b.g_prog):
        np.testing.assert_array_equal(x, y)
