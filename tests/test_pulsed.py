"""Pulsed-update device models (hw_models/noise/pulsed_*.py) and their kernel
(hw_models/kernels/pulsed.py): kernels against the twins in tests/naive.py, the NeuroSim curve,
constant-step statistics, asymmetry, bounds, seeds, zero() and config errors."""

import math

import numpy as np
import pytest
from naive import naive_constant_pulse_train, naive_constant_step_update, naive_nonlinear_update

from hw_models.kernels import pulsed as K
from hw_models.noise import get
from hw_models.noise.pulsed_constant import PulsedConstant
from hw_models.noise.pulsed_nonlinear import (PulsedNonlinear, curve_fraction, curve_position,
                                              normalized_weight)
from common.errors import ConfigError

jitfree = pytest.mark.jitfree
F32 = np.float32
GMAX = 25.0


def close_in_se(samples, mean, std, k=4.0):
    """Per-group sample mean and std agree with (mean, std) within k standard errors (+ float32 slack)."""
    x = np.asarray(samples, np.float64)
    m, s = x.mean(axis=0), x.std(axis=0)
    se_m = s / np.sqrt(x.shape[0])
    se_v = np.sqrt(((x - m) ** 2).var(axis=0) / x.shape[0])
    slack = 1e-5 * GMAX
    assert np.all(np.abs(m - mean) <= k * se_m + slack), (m, mean, se_m)
    assert np.all(np.abs(s * s - std * std) <= k * se_v + slack * (s + std + slack)), (s, std, se_v)


# ---- kernels against twins --------------------------------------------------------------------
@jitfree
@pytest.mark.parametrize("n", [0, 1, 7, 600])
@pytest.mark.parametrize("per_device", [False, True])
def test_constant_kernel_is_bit_exact_with_twin(n, per_device):
    rng = np.random.default_rng(n + 10 * per_device)
    g = rng.uniform(-1, GMAX + 1, n).astype(F32)  # some outside the bounds
    dg = (rng.normal(0, 0.4, n) * (rng.random(n) < 0.8)).astype(F32)  # ~20% exact zeros
    size = n if per_device else 1
    up, down = rng.uniform(0.02, 0.08, size), rng.uniform(0.02, 0.08, size)
    lo, hi = rng.uniform(0, 1, size), rng.uniform(20, GMAX, size)
    u, xi = rng.random(n, dtype=F32), rng.standard_normal(n, dtype=F32)
    args = (g, dg, 0.05, up, down, lo, hi, 0.3, u, xi)
    got = K.constant_step_update(*args)
    assert got.dtype == F32 and got.shape == (n,)
    np.testing.assert_array_equal(got, naive_constant_step_update(*args))


@jitfree
@pytest.mark.parametrize("n", [0, 1, 7, 400])
@pytest.mark.parametrize("sigma,u_kind", [(0.0, "nearest"), (0.0, "stochastic"), (3.5, "stochastic")])
def test_nonlinear_kernel_matches_twin(n, sigma, u_kind):
    """Tolerance 1e-5 of the range: the twin uses exp/log and one-pulse steps (see its docstring)."""
    rng = np.random.default_rng(n)
    g = rng.uniform(-1, GMAX + 1, n).astype(F32)
    dg = (rng.normal(0, 3.0, n) * (rng.random(n) < 0.8)).astype(F32)
    gmax = rng.uniform(20, GMAX, n) if n % 2 else np.array([GMAX])
    u = np.full(1, K.NEAREST_U, F32) if u_kind == "nearest" else rng.random(n, dtype=F32)
    args = (g, dg, 0.5, gmax, 100, 49.9, 20.0, sigma, u, rng.standard_normal(n, dtype=F32))
    got = K.nonlinear_update(*args)
    assert got.dtype == F32 and got.shape == (n,)
    np.testing.assert_allclose(got, naive_nonlinear_update(*args), rtol=0, atol=1e-5 * GMAX)


@jitfree
@pytest.mark.parametrize("kernel", ["constant", "nonlinear"])
@pytest.mark.parametrize("dg_std", [0.3, 0.003, 0.0])  # normals filled first / drawn where fired / none fired
def test_stream_draws_equal_arrays_filled_from_the_same_streams(kernel, dg_std):
    """u and xi given as Streams give the same conductances bit for bit as arrays filled from those
    streams (kernels/normal.py), whether the kernel fills the stream's normals for every device
    (many fire) or draws them only for the devices that fired (few fire: kernels/pulsed.py)."""
    from hw_models.kernels.normal import Stream, fill_normal, fill_uniform
    n = 3000
    rng = np.random.default_rng(5)
    g = rng.uniform(0, GMAX, n).astype(F32)
    dg = (rng.normal(0, dg_std, n) * (rng.random(n) < 0.7)).astype(F32)  # zeros and n = 0 draws too
    step = 0.05 if kernel == "constant" else GMAX / 97
    share = K.fire_share(dg, step)
    assert (share >= K.SPARSE_FIRED[kernel]) == (dg_std == 0.3)  # both paths are exercised
    ku, kx = 0x1234567, 0x89ABCDEF
    arrays = fill_uniform(ku, np.empty(n, F32)), fill_normal(kx, np.empty(n, F32))
    streams = Stream(np.uint64(ku)), Stream(np.uint64(kx))
    if kernel == "constant":
        run = lambda u, xi: K.constant_step_update(g, dg, 0.05, 0.055, 0.045, 0.0, GMAX, 0.3, u, xi)  # noqa: E731
    else:
        run = lambda u, xi: K.nonlinear_update(g, dg, 0.0, GMAX, 97, 48.4, 19.4, 3.4, u, xi)  # noqa: E731
    np.testing.assert_array_equal(run(*streams), run(*arrays))


@jitfree
@pytest.mark.parametrize("kernel", ["constant", "nonlinear"])
@pytest.mark.parametrize("dg_std", [0.3, 0.003])
def test_stream_normals_unused_without_cycle_to_cycle_error(kernel, dg_std):
    """With a cycle-to-cycle std of 0 a stream of normals changes nothing: the same conductances
    as normals of 0, on both paths (many / few devices firing)."""
    from hw_models.kernels.normal import Stream
    rng = np.random.default_rng(6)
    g = rng.uniform(0, GMAX, 3000).astype(F32)
    dg = rng.normal(0, dg_std, 3000).astype(F32)
    u = Stream(np.uint64(11))
    if kernel == "constant":
        run = lambda xi: K.constant_step_update(g, dg, 0.05, 0.055, 0.045, 0.0, GMAX, 0.0, u, xi)  # noqa: E731
    else:
        run = lambda xi: K.nonlinear_update(g, dg, 0.0, GMAX, 97, 48.4, 19.4, 0.0, u, xi)  # noqa: E731
    moved = run(Stream(np.uint64(12)))
    np.testing.assert_array_equal(moved, run(np.zeros(1, F32)))
    assert np.any(moved != g)


@jitfree
@pytest.mark.parametrize("shape", [(0,), (0, 3), (1,), (1, 1), (3, 4)])
@pytest.mark.parametrize("name", ["pulsed_constant", "pulsed_nonlinear"])
def test_models_keep_shape_and_dtype(name, shape):
    model, rng = get(name).example(), np.random.default_rng(0)
    g, state = model.program(np.full(shape, 10.0, F32), GMAX, rng)
    out = model.update(g, np.full(shape, 0.3, F32), GMAX, state, rng)
    assert out.dtype == F32 and out.shape == shape


# ---- the NeuroSim curve -----------------------------------------------------------------------
@jitfree
@pytest.mark.parametrize("a", [10.0, 20.0, 49.9, 1e9])
@pytest.mark.parametrize("up", [True, False])
def test_curve_endpoints_monotone_levels(a, up):
    p_max = 100
    p = np.arange(p_max + 1)
    w = normalized_weight(p, a, p_max, up)
    assert w[0] == -1.0 and w[-1] == 1.0
    assert np.all(np.diff(w) > 0) and np.unique(w).size == p_max + 1  # p_max + 1 levels
    np.testing.assert_allclose(curve_position(curve_fraction(p, a, p_max, up), a, p_max, up), p,
                               atol=1e-6 * p_max)
    # the kernel's closed-form step (no transcendental per device) lands where inverting the curve,
    # adding n pulses (clipped at p_max) and reading it again lands, from real positions too
    e = math.expm1(-p_max / a)
    em = np.expm1(-np.arange(p_max + 1) / a)
    for start in (0.0, 0.3, 17.5, 63.25, 99.9, 100.0):
        for n in (1, 2, 5, 40, 150):
            r = float(curve_fraction(start, a, p_max, True))
            want = curve_fraction(min(start + n, p_max), a, p_max, True)
            assert K.curve_step(r, float(n), e, em) == pytest.approx(want, abs=1e-12)
    if a > 1e6:  # linear limit
        np.testing.assert_allclose(w, 2 * p / p_max - 1, atol=1e-6)
    elif a < 50:  # potentiation saturates (concave), depression starts steep (convex)
        assert (np.diff(w, 2) < 0).all() if up else (np.diff(w, 2) > 0).all()


@jitfree
def test_nonlinear_single_pulses_walk_the_levels():
    m = PulsedNonlinear(p_max=20, A_ltp=6.0, A_ltd=4.0, ctoc_std_pulses=0.0, rounding="nearest")
    rng, step = np.random.default_rng(0), GMAX / 20
    g, seen = np.zeros(1, F32), []
    for _ in range(23):
        g = m.update(g, np.full(1, step, F32), GMAX, {}, rng)
        seen.append(float(g[0]))
    want = GMAX * curve_fraction(np.minimum(np.arange(1, 24), 20), 6.0, 20, True)
    np.testing.assert_allclose(seen, want, rtol=0, atol=1e-4)
    assert seen[-1] == GMAX and np.unique(np.round(seen, 3)).size == 20
    down = []
    for _ in range(21):  # depression runs its own (mirrored) curve back down to gmin
        g = m.update(g, np.full(1, -step, F32), GMAX, {}, rng)
        down.append(float(g[0]))
    want = GMAX * curve_fraction(np.maximum(np.arange(19, -2, -1), 0), 4.0, 20, False)
    np.testing.assert_allclose(down, want, rtol=0, atol=1e-4)
    assert down[-1] == 0.0  # float32 storage leaves P a hair above 0 after 20; the 21st clips


# ---- constant step ----------------------------------------------------------------------------
@pytest.mark.parametrize("sign", [1, -1])
def test_constant_mean_and_std_per_pulse_count(sign):
    dw, n, std, up_down, N = 0.125, 8, 0.3, 0.2, 200_000
    m = PulsedConstant(dw_min_uS=dw, dw_min_dtod=0, dw_min_std=std, up_down=up_down, up_down_dtod=0,
                       gmax_dtod=0)
    g = np.full(N, 12.0, F32)
    out = m.update(g, np.full(N, sign * n * dw, F32), GMAX, {}, np.random.default_rng(1)) - 12.0
    step = dw * (1 + sign * up_down)
    close_in_se(out[:, None], sign * n * step, step * std * np.sqrt(n), k=3.0)


def test_constant_stochastic_rounding_and_per_pulse_train():
    """Non-integer requests: E[n] = x; the kernel equals aihwkit's pulse-by-pulse train with
    per-pulse clipping in distribution, also where trains run into the bound."""
    m, N, rng = PulsedConstant.example(), 100_000, np.random.default_rng(2)
    step = m.dw_min_uS * (1 + m.up_down)
    for g0, x in [(10.0, 2.3), (GMAX - 0.3, 7.6)]:
        g = np.full(N, g0, F32)
        out = m.update(g, np.full(N, x * m.dw_min_uS, F32), GMAX, {}, rng)
        mean, sd = m.moments("update", g[:1], GMAX, dg_uS=np.full(1, x * m.dw_min_uS))
        close_in_se(out[:, None], mean, sd)
        n = np.floor(x + rng.random(N))
        train = naive_constant_pulse_train(g, n, 1.0, step, m.dw_min_std, 0.0, GMAX, rng)
        close_in_se(train[:, None], mean, sd)
        assert abs((out == GMAX).mean() - (train == GMAX).mean()) < 0.01
    assert g0 + x * step > GMAX  # the second case does reach the bound


@jitfree
def test_constant_asymmetry_ratio_and_nominal_pulse_count():
    m = PulsedConstant(dw_min_uS=0.05, dw_min_dtod=0, dw_min_std=0, up_down=0.25, up_down_dtod=0,
                       gmax_dtod=0, rounding="nearest")
    g, rng = np.full(4, 10.0, F32), np.random.default_rng(0)
    d_up = m.update(g, np.full(4, 0.5, F32), GMAX, {}, rng) - g
    d_down = g - m.update(g, np.full(4, -0.5, F32), GMAX, {}, rng)
    np.testing.assert_allclose(d_up, 10 * 0.05 * 1.25, rtol=1e-5)  # 10 pulses of the up step
    np.testing.assert_allclose(d_up / d_down, 1.25 / 0.75, rtol=1e-4)


@jitfree
def test_constant_program_draws_dtod_state():
    m, N = PulsedConstant(dw_min_dtod=0.3, up_down_dtod=0.1, gmax_dtod=0.2), 20_000
    g, state = m.program(np.full(N, 5.0, F32), GMAX, np.random.default_rng(3))
    assert (g == 5.0).all() and all(v.shape == (N,) and v.dtype == F32 for v in state.values())
    up = state["pulsed_constant.step_up_uS"] / m.dw_min_uS
    assert abs(up.mean() - 1) < 0.02 and abs(up.std() - np.hypot(0.3, 0.1)) < 0.02
    hi = state["pulsed_constant.gmax_uS"]
    assert abs(hi.mean() - GMAX) < 0.1 and (hi >= 0).all()


# ---- both models: bounds, seeds, zero(), moments, errors ---------------------------------------
MODELS = [PulsedConstant(dw_min_dtod=0.3, up_down=0.1, gmin_uS=1.0, gmax_dtod=0.3),
          PulsedNonlinear(gmin_uS=1.0), PulsedNonlinear(gmax_uS=20.0, rounding="nearest")]


@jitfree
@pytest.mark.parametrize("model", MODELS, ids=["constant", "nonlinear", "nonlinear_nearest"])
def test_bounds_respected_and_seed_determinism(model):
    def run(seed):
        rng = np.random.default_rng(seed)
        g, state = model.program(rng.uniform(0, GMAX, 500).astype(F32), GMAX, rng)
        outs = []
        for scale in (0.1, 5.0, 100.0):
            g = model.update(g, rng.normal(0, scale, 500).astype(F32), GMAX, state, rng)
            outs.append(g)
        return np.concatenate(outs), state

    a, state = run(7)
    hi = state.get("pulsed_constant.gmax_uS", model.gmax_uS or GMAX)
    assert (a.reshape(3, -1) >= model.gmin_uS).all() and (a.reshape(3, -1) <= hi).all()
    np.testing.assert_array_equal(a, run(7)[0])
    assert not np.array_equal(a, run(8)[0])


@jitfree
@pytest.mark.parametrize("cls", [PulsedConstant, PulsedNonlinear])
def test_zero_is_the_ideal_device(cls):
    m, rng = cls.zero(), np.random.default_rng(0)
    g = rng.uniform(0, GMAX, 50).astype(F32)
    dg = rng.normal(0, 10, 50).astype(F32)
    g2, state = m.program(g, GMAX, rng)
    assert state == {} and np.array_equal(g2, g)
    np.testing.assert_array_equal(m.update(g, dg, GMAX, state, rng), np.clip(g + dg, 0, GMAX).astype(F32))
    mean, sd = m.moments("update", g, GMAX, dg_uS=dg)
    np.testing.assert_array_equal(mean, np.clip(g + dg, 0, GMAX)) and np.testing.assert_array_equal(sd, 0)


@pytest.mark.parametrize("cls", [PulsedConstant, PulsedNonlinear])
def test_example_update_moments_match_samples(cls):
    m, N, rng = cls.example(), 100_000, np.random.default_rng(4)
    g0 = np.array([0.0, 0.2, 5.0, 12.5, 24.0, 24.9, 25.0], F32)
    dg = np.array([0.3, -0.6, 1.7, -2.2, 0.8, 3.0, -0.04], F32)
    g = np.broadcast_to(g0, (N, g0.size)).copy()
    out = m.update(g, np.broadcast_to(dg, g.shape), GMAX, {}, rng)
    mean, sd = m.moments("update", g0, GMAX, dg_uS=dg)
    close_in_se(out, mean, sd)


@jitfree
@pytest.mark.parametrize("cls,field,value,rule", [
    (PulsedConstant, "dw_min_uS", 0, "> 0"),
    (PulsedConstant, "dw_min_std", -0.1, ">= 0"),
    (PulsedConstant, "up_down", 1.0, "in (-1, 1)"),
    (PulsedConstant, "gmax_uS", -2.0, "0 (the crossbar's gmax) or > gmin_uS = 0.0"),
    (PulsedConstant, "rounding", "up", "'stochastic' or 'nearest'"),
    (PulsedNonlinear, "p_max", 0, "an integer >= 1"),
    (PulsedNonlinear, "A_ltd", 0.0, "> 0 and finite (pulses)"),
    (PulsedNonlinear, "ctoc_std_pulses", -1.0, ">= 0"),
])
def test_config_errors_name_the_field(cls, field, value, rule):
    with pytest.raises(ConfigError) as e:
        cls(**{field: value})
    assert str(e.value) == f"hardware.{cls.name}.{field} must be {rule}, got {value!r}"
    if field == "dw_min_uS":
        assert str(e.value) == "hardware.pulsed_constant.dw_min_uS must be > 0, got 0"
