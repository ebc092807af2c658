"""Numba kernels of the pulsed-update device models: the per-device pulse arithmetic of
`pulsed_constant` (aihwkit-style constant step) and `pulsed_nonlinear` (NeuroSim-style curve).

Three levels: `constant_step_update` / `nonlinear_update` validate shapes and dtypes and allocate
the output; `_constant_kernel` / `_nonlinear_kernel` loop over devices; the scalar helpers
(`pulse_count`, `curve_step`, `*_one`) are inlined.  Kernels take pre-drawn
noise (float32 uniforms `u` for the rounding, float32 standard normals `xi`) or the streams to draw
them from where they are used (kernels/normal.py Stream: uniform i / normal i of the stream, the
same numbers as an array filled from it), never a global RNG.
Arithmetic is float64 inside, float32 out.  Every per-device input array may have length N or
length 1 (broadcast), so nominal devices need no per-device arrays.  Model semantics, formulas and
sources: hw_models/noise/pulsed_constant.py and pulsed_nonlinear.py.  Slow twins: tests/naive.py.
"""

from __future__ import annotations

import math

import numpy as np

from hw_models.kernels._jit import njit_fixed_parallel, njit_inline, prange
from hw_models.kernels.normal import FI, KI, WI, Stream, normal_at, uniform32_at

F32 = np.float32
NEAREST_U = 0.5  # the "uniform draw" that turns floor(x + u) into round-half-up (NeuroSim's truncate)


# ---- scalar helpers ---------------------------------------------------------------------------
@njit_inline
def _at(a, i):
    """a[i], with a length-1 array broadcast to every device."""
    return a[0] if a.shape[0] == 1 else a[i]


@njit_inline
def _clip(x, lo, hi):
    return min(max(x, lo), hi)


@njit_inline
def pulse_count(x, u):
    """Pulses for a requested x >= 0 nominal steps: floor(x + u).  u ~ U[0, 1) gives stochastic
    rounding (E[n] = x, n in {floor x, floor x + 1}); u = 0.5 rounds half up."""
    return np.floor(x + u)


@njit_inline
def _u_at(u, u_key, u_keyed, i):
    """Rounding uniform of device i: from its stream (kernels/normal.py) or the array u."""
    return np.float64(uniform32_at(u_key, i)) if u_keyed else float(_at(u, i))


@njit_inline
def _xi_at(xi, xi_key, xi_keyed, i, ki, wi, fi):
    """Cycle-to-cycle normal of device i: from its stream (float32, as fill_normal) or xi."""
    return np.float64(np.float32(normal_at(xi_key, i, ki, wi, fi))) if xi_keyed else float(_at(xi, i))


@njit_inline
def constant_one(g, dg, dw_nominal, step_up, step_down, lo, hi, std, u, u_key, u_keyed, xi, xi_key, xi_keyed,
                 i, ki, wi, fi):
    """Device i, one update: n = pulse_count(|dg| / dw_nominal, u) pulses of the device's
    directional step, their summed Gaussian cycle-to-cycle errors, clipped once to [lo, hi].
    Draws from streams happen only where used (u for dg != 0, xi for n > 0): the same numbers as
    arrays filled from those streams."""
    if dg > 0.0:
        step, s = step_up, 1.0
    elif dg < 0.0:
        step, s = step_down, -1.0
    else:
        return _clip(g, lo, hi)
    n = pulse_count(abs(dg) / dw_nominal, _u_at(u, u_key, u_keyed, i))
    x = _xi_at(xi, xi_key, xi_keyed, i, ki, wi, fi) if (n > 0.0 or not xi_keyed) else 0.0
    g = g + s * n * step + step * std * math.sqrt(n) * x
    return _clip(g, lo, hi)


@njit_inline
def curve_step(r, n_pulses, e, em):
    """Curve fraction after n_pulses pulses from fraction r on the potentiation curve (apply to
    1 - r for depression), without a transcendental: with e = expm1(-p_max/a) and
    E = expm1(-n/a) = em[n], r = expm1(-p/a)/e gives e^(-(p+n)/a) = (1 + r e)(1 + E), so
    r' = expm1(-(p + n)/a)/e = E/e + r (1 + E), capped at 1 (p + n beyond p_max: the top of the
    curve).  em: expm1(-k/a) for k = 0..p_max (n >= p_max pulses reach the top from anywhere)."""
    k = min(n_pulses, em.shape[0] - 1)
    big_e = em[np.intp(k)]
    return min(big_e / e + r * (1.0 + big_e), 1.0)


@njit_inline
def nonlinear_one(g, dg, gmin, gmax, p_max, e_ltp, e_ltd, em_ltp, em_ltd, sigma_pulses, u, u_key, u_keyed, xi,
                  xi_key, xi_keyed, i, ki, wi, fi):
    """Device i, one update on the NeuroSim curve: move n pulses along the curve of the update's
    direction from the device's position (curve_step; clipped to 0..p_max), add the cycle-to-cycle
    error sigma_pulses * step * sqrt(n) * xi in conductance, clip to [gmin, gmax]."""
    span = gmax - gmin
    if dg == 0.0 or span <= 0.0:
        return _clip(g, gmin, gmax)
    step = span / p_max
    n = pulse_count(abs(dg) / step, _u_at(u, u_key, u_keyed, i))
    if n == 0.0:
        return _clip(g, gmin, gmax)
    r = _clip((g - gmin) / span, 0.0, 1.0)
    if dg > 0.0:
        r = curve_step(r, n, e_ltp, em_ltp)
    else:  # the depression curve is the potentiation curve mirrored: step 1 - r up
        r = 1.0 - curve_step(1.0 - r, n, e_ltd, em_ltd)
    x = _xi_at(xi, xi_key, xi_keyed, i, ki, wi, fi)
    g = gmin + span * r + sigma_pulses * step * math.sqrt(n) * x
    return _clip(g, gmin, gmax)


# ---- loop kernels -----------------------------------------------------------------------------
@njit_fixed_parallel
def _constant_kernel(g, dg, dw_nominal, step_up, step_down, lo, hi, std, u, u_key, u_keyed, xi, xi_key,
                     xi_keyed, ki, wi, fi, out):
    for i in prange(out.shape[0]):
        out[i] = constant_one(float(g[i]), float(dg[i]), dw_nominal, float(_at(step_up, i)),
                              float(_at(step_down, i)), float(_at(lo, i)), float(_at(hi, i)), std,
                              u, u_key, u_keyed, xi, xi_key, xi_keyed, i, ki, wi, fi)


@njit_fixed_parallel
def _nonlinear_kernel(g, dg, gmin, gmax, p_max, a_ltp, a_ltd, sigma_pulses, u, u_key, u_keyed, xi, xi_key,
                      xi_keyed, ki, wi, fi, out):
    e_ltp, e_ltd = math.expm1(-p_max / a_ltp), math.expm1(-p_max / a_ltd)
    levels = np.intp(p_max) + 1
    em_ltp, em_ltd = np.empty(levels), np.empty(levels)
    for k in range(levels):
        em_ltp[k] = math.expm1(-k / a_ltp)
        em_ltd[k] = math.expm1(-k / a_ltd)
    for i in prange(out.shape[0]):
        out[i] = nonlinear_one(float(g[i]), float(dg[i]), gmin, float(_at(gmax, i)), p_max, e_ltp, e_ltd,
                               em_ltp, em_ltd, sigma_pulses, u, u_key, u_keyed, xi, xi_key, xi_keyed,
                               i, ki, wi, fi)


# ---- public functions -------------------------------------------------------------------------
def _draws(name: str, a, n: int) -> tuple[np.ndarray, np.uint64, bool]:
    """(array, key, keyed) kernel arguments of draws given as an array / scalar or as a Stream."""
    if isinstance(a, Stream):
        return np.zeros(1, F32), np.uint64(a.key), True
    return _flat32(name, a, n), np.uint64(0), False


def _flat32(name: str, a, n: int) -> np.ndarray:
    """1-D contiguous float32 view/copy of length n or 1."""
    v = np.ascontiguousarray(np.asarray(a, dtype=F32).reshape(-1))
    if v.shape[0] not in (1, n):
        raise ValueError(f"{name} must have 1 or {n} elements, got {v.shape[0]}")
    return v


def constant_step_update(g_uS, dg_uS, dw_nominal_uS: float, step_up_uS, step_down_uS, gmin_uS,
                         gmax_uS, dw_min_std: float, u, xi) -> np.ndarray:
    """Constant-step pulsed update of every device (any shape; per-device arguments of the same
    size or scalars; u and xi also as a Stream to draw from).  Returns float32 conductances shaped
    like g_uS."""
    g = np.asarray(g_uS)
    n = g.size
    dg = np.broadcast_to(np.asarray(dg_uS, dtype=F32), g.shape)
    if not dw_nominal_uS > 0:
        raise ValueError(f"dw_nominal_uS must be > 0, got {dw_nominal_uS!r}")
    out = np.empty(n, F32)
    if n == 0:
        return out.reshape(g.shape)
    with np.errstate(over="ignore"):  # uint64 wrap-around of the hash is intended (matters without JIT)
        _constant_kernel(_flat32("g_uS", g, n), _flat32("dg_uS", dg, n), float(dw_nominal_uS),
                         _flat32("step_up_uS", step_up_uS, n), _flat32("step_down_uS", step_down_uS, n),
                         _flat32("gmin_uS", gmin_uS, n), _flat32("gmax_uS", gmax_uS, n),
                         float(dw_min_std), *_draws("u", u, n), *_draws("xi", xi, n), KI, WI, FI, out)
    return out.reshape(g.shape)


def nonlinear_update(g_uS, dg_uS, gmin_uS: float, gmax_uS, p_max: int, a_ltp: float, a_ltd: float,
                     ctoc_std_pulses: float, u, xi) -> np.ndarray:
    """NeuroSim-style nonlinear pulsed update of every device (any shape; gmax_uS, u, xi of the
    same size or scalars; u and xi also as a Stream to draw from).  Returns float32 conductances
    shaped like g_uS."""
    g = np.asarray(g_uS)
    n = g.size
    dg = np.broadcast_to(np.asarray(dg_uS, dtype=F32), g.shape)
    if not (p_max >= 1 and a_ltp > 0 and a_ltd > 0):
        raise ValueError(f"need p_max >= 1, a_ltp > 0, a_ltd > 0, got {p_max}, {a_ltp}, {a_ltd}")
    out = np.empty(n, F32)
    if n == 0:
        return out.reshape(g.shape)
    with np.errstate(over="ignore"):  # uint64 wrap-around of the hash is intended (matters without JIT)
        _nonlinear_kernel(_flat32("g_uS", g, n), _flat32("dg_uS", dg, n), float(F32(gmin_uS)),
                          _flat32("gmax_uS", gmax_uS, n), float(p_max), float(a_ltp), float(a_ltd),
                          float(ctoc_std_pulses), *_draws("u", u, n), *_draws("xi", xi, n), KI, WI, FI, out)
    return out.reshape(g.shape)
