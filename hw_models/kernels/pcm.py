"""Numba kernels of the PCM simulator path: the fused program stage of the "pcm" noise model
(target conductance + pre-drawn normals -> programmed conductance, drift exponent, 1/f amplitude,
in one parallel pass) and the granular write of one-sided pairs (which pairs one weight update
re-programs, and to which targets).

Model semantics and sources: hw_models/noise/pcm.py (aihwkit PCMLikeNoiseModel) and
hw_models/tiles/update.py (Reprogram).  Slow twins: tests/naive.py (naive_pcm_program,
naive_granular_targets).  Arithmetic mirrors the numpy formulas op for op with no fastmath (no
reassociation, no FMA contraction), so both kernels equal their twins bit for bit, except two
libm calls: q's x**exponent is libm's powf here (within 0.51 ulp of exact), so q may differ from
a correctly rounded power by up to 2 ulp; the g-dependent drift exponent takes libm's logf (within
0.52 ulp) where the twin rounds a float64 log, so its ln g may be 1 float32 ulp off, which moves
nu by at most 4 ulp (tests/naive.py: naive_pcm_program).
"""

from __future__ import annotations

import math

import numpy as np

from hw_models.kernels._jit import njit_fixed_parallel, njit_inline, prange
from hw_models.kernels.normal import FI, KI, WI, normal_at
from hw_models.kernels.quantize import seed_key, uniform_at
from hw_models.rng import standard_normal

F32 = np.float32

# drift-exponent laws of the program kernel
NU_NONE, NU_AIHWKIT, NU_CONSTANT = 0, 1, 2
# aihwkit's g-dependent drift-exponent fit (src/aihwkit/inference/noise/pcm.py:123-128, commit
# 4545f11b): mu(g) = clip(MU_SLOPE ln g + MU_OFFSET, MU_MIN, MU_MAX), likewise sigma(g), with
# g = max(|G_target| / gmax, G_REL_FLOOR)
MU_SLOPE, MU_OFFSET, MU_MIN, MU_MAX = -0.0155, 0.0244, 0.049, 0.1
SD_SLOPE, SD_OFFSET, SD_MIN, SD_MAX = -0.0125, -0.0059, 0.008, 0.045
G_REL_FLOOR = 1e-7  # aihwkit's _ZERO_CLIP

# ---- scalar helpers ---------------------------------------------------------------------------
@njit_inline
def _at(a, i):
    """a[i], with a length-1 array broadcast to every device."""
    return a[0] if a.shape[0] == 1 else a[i]


@njit_inline
def horner(coeffs, x):
    """c0 + c1 x + c2 x^2 + ... in the dtype of x and coeffs, highest power first."""
    poly = coeffs[coeffs.shape[0] - 1]
    for j in range(coeffs.shape[0] - 2, -1, -1):
        poly = poly * x + coeffs[j]
    return poly


@njit_inline
def one_over_f_amplitude(g_abs_norm, coeff, exponent, floor, q_max):
    """q = min(coeff / max(g^exponent, floor), q_max); g = 0 (the off device of a one-sided pair)
    skips the power: 0^e = 0 < floor for e > 0."""
    den = floor
    if g_abs_norm != 0 or exponent == 0:
        den = max(g_abs_norm ** exponent, floor)
    return min(coeff / den, q_max)


@njit_inline
def aihwkit_nu(g_abs_norm, xi, scale):
    """|mu(g) + sigma(g) xi| * scale from the float32 normalized target g: ln g in float32 (libm's
    logf), the fit and the draw in float64, rounded once to float32 (aihwkit's fit, constants
    above)."""
    log_g = np.float64(math.log(max(g_abs_norm, F32(G_REL_FLOOR))))
    mu = min(max(MU_SLOPE * log_g + MU_OFFSET, MU_MIN), MU_MAX)
    sd = min(max(SD_SLOPE * log_g + SD_OFFSET, SD_MIN), SD_MAX)
    return np.float32(abs(mu + sd * np.float64(xi)) * scale)


# ---- program stage of the "pcm" noise model ----------------------------------------------------
@njit_inline
def program_one(gt, gm, coeffs, noise_scale, ref_gmax, xi_prog, nu_law, nu_scale, nu_mean, nu_std, xi_nu,
                q_coeff, q_exponent, q_floor, q_max, do_prog, do_q):
    """One device: (programmed conductance, drift exponent, 1/f amplitude) of target gt (float32)."""
    nu = F32(0)
    if nu_law == NU_AIHWKIT:
        nu = aihwkit_nu(abs(gt) / gm, xi_nu, np.float64(nu_scale))
    elif nu_law == NU_CONSTANT:
        nu = max(nu_mean + nu_std * xi_nu, F32(0)) * nu_scale
    g = gt
    if do_prog:
        sigma = max(horner(coeffs, gt / gm), F32(0)) * (noise_scale * gm / ref_gmax)
        g = max(gt + sigma * xi_prog, F32(0))
    q = F32(0)
    if do_q:  # 1/f amplitude of the programmed conductance (aihwkit pcm.py:148)
        q = one_over_f_amplitude(abs(g) / gm, q_coeff, q_exponent, q_floor, q_max)
    return g, nu, q


@njit_fixed_parallel
def _program_kernel(g_target, gmax, coeffs, noise_scale, ref_gmax, xi_prog, nu_law, nu_scale, nu_mean,
                    nu_std, xi_nu, q_coeff, q_exponent, q_floor, q_max, do_prog, do_q, g_out, nu_out,
                    q_out):
    draw_nu = nu_law != NU_NONE
    for i in prange(g_target.shape[0]):
        g, nu, q = program_one(g_target[i], _at(gmax, i), coeffs, noise_scale, ref_gmax,
                               xi_prog[i] if do_prog else F32(0), nu_law, nu_scale, nu_mean, nu_std,
                               xi_nu[i] if draw_nu else F32(0), q_coeff, q_exponent, q_floor, q_max,
                               do_prog, do_q)
        g_out[i] = g
        if draw_nu:
            nu_out[i] = nu
        if do_q:
            q_out[i] = q


def pcm_program(g_target_uS, gmax_uS, rng: np.random.Generator, *, prog_coeff_uS, prog_noise_scale,
                prog_coeff_gmax_ref_uS, nu_law: int, nu_scale, nu_mean, nu_std, read_1f_coeff,
                read_1f_exponent, read_1f_max, q_floor, draw_q: bool):
    """Program targets g_target_uS (any shape) -> (g_prog, nu or None, q or None), float32 of that
    shape.  nu_law: NU_NONE (no drift exponent), NU_AIHWKIT (|mu(g) + sigma(g) xi| nu_scale, g the
    normalized target) or NU_CONSTANT (max(nu_mean + nu_std xi, 0) nu_scale); q is the 1/f amplitude
    of the programmed conductance.  Draws one hw_models.rng.standard_normal(rng, k n) array: nu's
    normals (unless NU_NONE), then the programming noise's (if prog_noise_scale > 0), one float32 per
    device each (k = how many of the two are drawn; nothing is drawn for k = 0).  gmax_uS: a number or an array of the target's shape (per-device gmax)."""
    g = np.ascontiguousarray(g_target_uS, dtype=F32)
    shape, n = g.shape, g.size
    g = g.reshape(n)
    gmax = np.ascontiguousarray(gmax_uS, dtype=F32).reshape(-1)
    if gmax.shape[0] not in (1, n):
        raise ValueError(f"gmax_uS must be a number or have the targets' shape {shape}, got "
                         f"{np.shape(gmax_uS)}")
    if nu_law not in (NU_NONE, NU_AIHWKIT, NU_CONSTANT):
        raise ValueError(f"nu_law must be NU_NONE, NU_AIHWKIT or NU_CONSTANT, got {nu_law!r}")
    do_prog, draw_nu = prog_noise_scale > 0, nu_law != NU_NONE
    xi = standard_normal(rng, n * (int(draw_nu) + int(do_prog)))  # one draw: nu's, then prog's
    xi_nu = xi[:n] if draw_nu else xi[:0]
    xi_prog = xi[n * int(draw_nu):]
    g_out = np.empty(n, F32)
    nu_out = np.empty(n if draw_nu else 0, F32)
    q_out = np.empty(n if draw_q else 0, F32)
    _program_kernel(g, gmax, np.asarray(prog_coeff_uS, F32), F32(prog_noise_scale),
                    F32(prog_coeff_gmax_ref_uS), xi_prog, nu_law, F32(nu_scale), F32(nu_mean),
                    F32(nu_std), xi_nu, F32(read_1f_coeff), F32(read_1f_exponent), F32(q_floor),
                    F32(read_1f_max), do_prog, draw_q, g_out, nu_out, q_out)
    return (g_out.reshape(shape), nu_out.reshape(shape) if draw_nu else None,
            q_out.reshape(shape) if draw_q else None)


# ---- granular write of one-sided pairs -----------------------------------------------------------
@njit_fixed_parallel
def _granular_kernel(w_in, from_target, w_max, g_eff, granularity, key, w_new, changed, w_now):
    k_cols = w_in.shape[1]
    for m in prange(w_in.shape[0]):
        wm = w_max[m]
        for k in range(k_cols):
            w_cur = g_eff[m, k] * wm  # the weight the pair holds (AnalogTile.weights)
            w_now[m, k] = w_cur
            delta = w_in[m, k] - w_cur if from_target else w_in[m, k]
            dw_norm = delta / wm  # float32, as numpy's delta_w / w_max
            n = np.floor(np.float64(dw_norm) / granularity + uniform_at(key, m * k_cols + k))
            if n != 0.0:
                target = np.float64(g_eff[m, k]) + n * granularity
                w_new[m, k] = np.float32(min(max(target, -1.0), 1.0))
                changed[m, k] = True
            else:
                changed[m, k] = False


def granular_targets(w_in: np.ndarray, w_max: np.ndarray, g_eff: np.ndarray, granularity: float,
                     seed, from_target: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which one-sided pairs a write re-programs, and to which normalized targets.

    w_in (M, K): the requested change delta_w, or (from_target) the requested weights, whence
    delta_w = w_in - g_eff w_max; g_eff (M, K) the pairs' normalized weights, w_max (M,) the column
    ranges; float32, C-contiguous.  Per pair, in float32 as numpy would: dw = delta_w / w_max; then
    in float64 n = floor(dw / granularity + u) (stochastic rounding, E[n] = dw / granularity) with
    u[i] = uniform_at(seed_key(seed), i) at the pair's flat C-order index i; pairs with n != 0 get
    the target clip(g_eff + n granularity, -1, 1), rounded once to float32.
    Returns (flat indices of those pairs, int64 ascending; their targets, float32; the weights
    g_eff w_max before the write, (M, K) float32)."""
    if any(a.dtype != F32 or a.ndim != 2 or a.shape != w_in.shape or not a.flags.c_contiguous
           for a in (w_in, g_eff)):
        raise ValueError("granular_targets needs C-contiguous float32 (M, K) w_in and g_eff")
    if w_max.shape != (w_in.shape[0],) or w_max.dtype != F32:
        raise ValueError(f"w_max must be float32 of shape ({w_in.shape[0]},)")
    if not 0 < granularity < np.inf:
        raise ValueError(f"granularity must be > 0 and finite, got {granularity}")
    w_new = np.empty(w_in.shape, F32)
    changed = np.empty(w_in.shape, np.bool_)
    w_now = np.empty(w_in.shape, F32)
    with np.errstate(over="ignore"):  # uint64 wrap-around of the hash is intended (matters without JIT)
        _granular_kernel(w_in, bool(from_target), w_max, g_eff, float(granularity), seed_key(seed), w_new,
                         changed, w_now)
    idx = np.flatnonzero(changed)
    return idx, w_new.reshape(-1)[idx], w_now


# ---- fused re-programming of one-sided pairs -------------------------------------------------------
@njit_inline
def _write_one(i, j, gt, key, prog_offset, draw_nu, do_prog, do_q, do_read, read_key, read_factor, gmax, coeffs,
               noise_scale, ref_gmax, nu_law, nu_scale, nu_mean, nu_std, q_coeff, q_exponent, q_floor, q_max,
               g_prog, nu, q, g_now, ki, wi, fi):
    """One device of pair j (flat index i) programmed to gt: its normals from stream `key` (nu's at
    j, the programming noise's at prog_offset + j) and the read noise's (normal j of `read_key`);
    stores g_prog, nu, q, g_now at i and returns the conductance read."""
    zero = F32(0)
    xi_nu = F32(normal_at(key, j, ki, wi, fi)) if draw_nu else zero
    xi_prog = F32(normal_at(key, prog_offset + j, ki, wi, fi)) if do_prog else zero
    g, nu_j, q_j = program_one(gt, gmax, coeffs, noise_scale, ref_gmax, xi_prog, nu_law, nu_scale, nu_mean,
                               nu_std, xi_nu, q_coeff, q_exponent, q_floor, q_max, do_prog, do_q)
    g_prog[i] = g
    if draw_nu:
        nu[i] = nu_j
    if do_q:
        q[i] = q_j
    if do_read:  # frozen 1/f read noise at the array's time: max(g + |g| f q xi, 0)
        sigma = abs(g) * read_factor
        sigma = sigma * q_j
        g = max(g + sigma * F32(normal_at(read_key, j, ki, wi, fi)), zero)
        g_now[i] = g
    return g


@njit_fixed_parallel
def _write_at_kernel(idx, w_norm, gmax, coeffs, noise_scale, ref_gmax, nu_law, nu_scale, nu_mean, nu_std,
                     q_coeff, q_exponent, q_floor, q_max, do_prog, do_q, prog_keys, read_factor, read_keys,
                     g_prog, nu, q, g_now, g_eff, inv, ki, wi, fi):
    """g_prog, nu, q, g_now: (polarity 0, polarity 1) tuples of flat arrays, written at idx.  The two
    polarities are written out (not a loop over a tuple index: 12 % faster, measured)."""
    n = idx.shape[0]
    draw_nu = nu_law != NU_NONE
    prog_offset = n if draw_nu else 0
    do_read = read_factor != F32(0)
    zero = F32(0)
    no_key = np.uint64(0)  # (no keys when nothing is drawn)
    kp0 = prog_keys[0] if (draw_nu or do_prog) else no_key
    kp1 = prog_keys[1] if (draw_nu or do_prog) else no_key
    kr0 = read_keys[0] if do_read else no_key
    kr1 = read_keys[1] if do_read else no_key
    gp0, gp1 = g_prog
    nu0, nu1 = nu
    q0, q1 = q
    gn0, gn1 = g_now
    for j in prange(n):
        i = idx[j]
        w = w_norm[j]
        g_plus = _write_one(i, j, max(w, zero) * gmax, kp0, prog_offset, draw_nu, do_prog, do_q, do_read, kr0,
                            read_factor, gmax, coeffs, noise_scale, ref_gmax, nu_law, nu_scale, nu_mean, nu_std,
                            q_coeff, q_exponent, q_floor, q_max, gp0, nu0, q0, gn0, ki, wi, fi)
        g_minus = _write_one(i, j, max(-w, zero) * gmax, kp1, prog_offset, draw_nu, do_prog, do_q, do_read, kr1,
                             read_factor, gmax, coeffs, noise_scale, ref_gmax, nu_law, nu_scale, nu_mean, nu_std,
                             q_coeff, q_exponent, q_floor, q_max, gp1, nu1, q1, gn1, ki, wi, fi)
        g_eff[i] = (g_plus - g_minus) * inv


def pcm_write_at(idx: np.ndarray, w_norm: np.ndarray, gmax_uS: float, prog_keys, read_factor: float,
                 read_keys, g_prog, nu, q, g_now, g_eff: np.ndarray, *, prog_coeff_uS, prog_noise_scale,
                 prog_coeff_gmax_ref_uS, nu_law: int, nu_scale, nu_mean, nu_std, read_1f_coeff,
                 read_1f_exponent, read_1f_max, q_floor, draw_q: bool) -> None:
    """Re-program the one-sided pairs at flat indices idx (int64, ascending) to normalized targets
    w_norm (float32) and read them out, in place, in one parallel pass: per pair, the targets
    max(w, 0) gmax and max(-w, 0) gmax through the program stage (program_one, as pcm_program with
    the normals of stream prog_keys[p]: nu's at j, the programming noise's at n + j, n = len(idx)
    when nu is drawn), then the frozen read noise max(g + |g| read_factor q xi, 0) with xi normal j
    of stream read_keys[p] (read_factor 0: none, and g_now is g_prog), then g_eff = (g+ - g-) / gmax.
    g_prog, nu, q, g_now: pairs (polarity 0, 1) of flat float32 arrays of the whole array (nu / q
    pairs of empty arrays when not drawn).  No drift (the array is read at its programming time).
    Equal bit for bit to pcm_program + read-out + scatter of each polarity (tests/test_pcm_write.py)."""
    read_factor = F32(read_factor)
    empty = np.empty(0, np.uint64)
    keys = lambda k: np.array([int(v) for v in k], np.uint64) if k is not None else empty  # noqa: E731
    with np.errstate(over="ignore"):  # uint64 wrap-around of the hash is intended (matters without JIT)
        _write_at_kernel(idx, w_norm, F32(gmax_uS), np.asarray(prog_coeff_uS, F32), F32(prog_noise_scale),
                         F32(prog_coeff_gmax_ref_uS), nu_law, F32(nu_scale), F32(nu_mean), F32(nu_std),
                         F32(read_1f_coeff), F32(read_1f_exponent), F32(q_floor), F32(read_1f_max),
                         prog_noise_scale > 0, draw_q, keys(prog_keys), read_factor, keys(read_keys),
                         tuple(g_prog), tuple(nu), tuple(q), tuple(g_now), g_eff, F32(1.0 / gmax_uS), KI, WI, FI)
