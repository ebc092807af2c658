"""PCM kernels (hw_models/kernels/pcm.py) against their numpy twins in tests/naive.py: the fused
program stage (bit-exact but q (<= 2 ulp) and the aihwkit law's nu (1 ulp of ln g), see
naive_pcm_program) and the granular write targets (bit-exact),
incl. edge sizes (1 device, empty, 2-D) and per-device gmax."""

import numpy as np
import pytest

from hw_models.kernels.pcm import NU_NONE, granular_targets, pcm_program
from hw_models.noise.pcm import G_POW_FLOOR, PCM
from hw_models.rng import standard_normal

from naive import naive_granular_targets, naive_pcm_program

jitfree = pytest.mark.jitfree
GMAX = 25.0
SHAPES = [(1,), (0,), (7,), (3, 5), (64, 100)]


def _targets(shape, seed):
    """Conductances in [0, 1.1 gmax] with exact zeros (one-sided off devices) and exact gmax."""
    rng = np.random.default_rng(seed)
    g = rng.uniform(0, 1.1 * GMAX, shape).astype(np.float32)
    flat = g.reshape(-1)
    flat[::3] = 0.0
    flat[1::5] = GMAX
    return g


def _params(m: PCM) -> dict:
    return dict(prog_coeff_uS=m.prog_coeff_uS, prog_noise_scale=m.prog_noise_scale,
                prog_coeff_gmax_ref_uS=m.prog_coeff_gmax_ref_uS, nu_law=m._nu_law, nu_scale=m.drift_scale,
                nu_mean=m.drift_nu_mean, nu_std=m.drift_nu_std, read_1f_coeff=m.read_1f_coeff,
                read_1f_exponent=m.read_1f_exponent, read_1f_max=m.read_1f_max, q_floor=G_POW_FLOOR)


MODELS = [PCM(), PCM(prog_noise_scale=0.0), PCM(drift_scale=0.0), PCM(drift_scale=1.7),
          PCM(drift_law="constant"), PCM(drift_law="constant", drift_nu_mean=0.0, drift_nu_std=0.0),
          PCM(prog_coeff_uS=(0.5,), read_1f_exponent=0.0)]


@jitfree
@pytest.mark.parametrize("shape", SHAPES + [(200, 200)])  # 40k devices: drawn on the parallel streams
@pytest.mark.parametrize("per_device_gmax", [False, True])
@pytest.mark.parametrize("model", MODELS)
def test_program_matches_twin(shape, per_device_gmax, model):
    g = _targets(shape, 0)
    gmax = (np.random.default_rng(1).uniform(20, 30, shape).astype(np.float32) if per_device_gmax
            else GMAX)
    draw_nu, do_prog = model._nu_law != NU_NONE, model.prog_noise_scale > 0
    got_g, got_nu, got_q = pcm_program(g, gmax, np.random.default_rng(2), draw_q=True, **_params(model))
    xi = standard_normal(np.random.default_rng(2), g.size * (draw_nu + do_prog))  # the kernel's draw:
    xi_nu = xi[:g.size].reshape(shape) if draw_nu else None  # nu's, then the programming noise's
    xi_prog = xi[g.size * draw_nu:].reshape(shape) if do_prog else None
    want_g, want_nu, want_q = naive_pcm_program(
        g, gmax, xi_prog, xi_nu, model.prog_coeff_uS, model.prog_noise_scale, model.prog_coeff_gmax_ref_uS,
        model.drift_law, model.drift_scale, model.drift_nu_mean, model.drift_nu_std, model.read_1f_coeff,
        model.read_1f_exponent, G_POW_FLOOR, model.read_1f_max)
    for got in (got_g, got_nu, got_q):
        assert got is None or (got.shape == shape and got.dtype == np.float32)
    np.testing.assert_array_equal(got_g, want_g)
    assert (got_nu is None) == (want_nu is None)
    if want_nu is not None and model.drift_law == "constant":
        np.testing.assert_array_equal(got_nu, want_nu)
    elif want_nu is not None:  # ln g may be 1 float32 ulp apart (naive_pcm_program): nu moves by
        log_g = np.log(np.maximum(np.abs(g) / np.float32(gmax), np.float32(1e-7)))  # at most
        tol = model.drift_scale * (0.0155 + 0.0125 * np.abs(xi_nu)) * np.spacing(np.abs(log_g))
        np.testing.assert_array_less(np.abs(got_nu - want_nu.astype(np.float64)),
                                     1.01 * tol + np.spacing(want_nu))
    np.testing.assert_array_max_ulp(got_q, want_q, maxulp=2)
    if model.read_1f_exponent > 0:  # devices programmed to 0: q at the floor, no power taken
        assert np.all(got_q[got_g == 0] == np.float32(model.read_1f_coeff / G_POW_FLOOR).clip(
            max=np.float32(model.read_1f_max)))


@jitfree
def test_program_leaves_inputs_and_flags_skip_outputs():
    g = _targets((4, 6), 3)
    g0 = g.copy()
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    out, nu, q = pcm_program(g, GMAX, rng, draw_q=False, **_params(PCM.zero()))
    assert nu is None and q is None and np.array_equal(out, g) and out is not g
    assert rng.bit_generator.state == state  # nothing drawn
    np.testing.assert_array_equal(g, g0)
    with pytest.raises(ValueError, match="gmax_uS"):
        pcm_program(g, np.ones(3, np.float32), rng, draw_q=True, **_params(PCM()))
    with pytest.raises(ValueError, match="nu_law"):
        pcm_program(g, GMAX, rng, draw_q=True, **{**_params(PCM()), "nu_law": 7})


def _granular_case(shape, seed):
    rng = np.random.default_rng(seed)
    g_eff = rng.uniform(-1, 1, shape).astype(np.float32)
    w_max = rng.uniform(0.01, 0.1, shape[0]).astype(np.float32)
    delta = (rng.standard_normal(shape) * 0.02 * w_max[:, None]).astype(np.float32)
    if delta.size:
        delta.reshape(-1)[::4] = 0.0
    return g_eff, w_max, delta


@jitfree
@pytest.mark.parametrize("shape", [(1, 1), (0, 5), (3, 257), (64, 100)])
@pytest.mark.parametrize("from_target", [False, True])
def test_granular_targets_match_twin(shape, from_target):
    g_eff, w_max, delta = _granular_case(shape, 4)
    w_in = (g_eff * w_max[:, None] + delta) if from_target else delta
    got = granular_targets(w_in, w_max, g_eff, 0.013, 12345, from_target=from_target)
    want = naive_granular_targets(w_in, w_max, g_eff, 0.013, 12345, from_target=from_target)
    assert got[0].dtype == np.int64 and got[1].dtype == np.float32 and got[2].shape == shape
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    if got[0].size:
        assert np.all(np.abs(got[1]) <= 1)


@jitfree
def test_granular_targets_round_stochastically_and_reject_bad_input():
    g_eff = np.zeros((100, 1000), np.float32)
    w_max = np.ones(100, np.float32)
    delta = np.full((100, 1000), 0.25 * 0.04, np.float32)  # a quarter increment
    idx, target, _ = granular_targets(delta, w_max, g_eff, 0.04, 7)
    p = idx.size / delta.size
    assert abs(p - 0.25) < 3 * np.sqrt(0.25 * 0.75 / delta.size)  # P(n = 1) = 1/4
    assert np.all(target == np.float32(0.04))
    with pytest.raises(ValueError):
        granular_targets(delta.astype(np.float64), w_max, g_eff, 0.04, 7)
    with pytest.raises(ValueError):
        granular_targets(delta, w_max, g_eff, 0.0, 7)
    with pytest.raises(ValueError):
        granular_targets(delta, np.ones(3, np.float32), g_eff, 0.04, 7)
