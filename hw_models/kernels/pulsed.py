"""Numba kernels of the pulsed-update device models: the per-device pulse arithmetic of
`pulsed_constant` (aihwkit-style constant step) and `pulsed_nonlinear` (NeuroSim-style curve).

Three levels: `constant_step_update` / `nonlinear_update` validate shapes and dtypes and allocate
the output; `_constant_kernel` / `_nonlinear_kernel` loop over devices; the scalar helpers
(`pulse_count`, `curve_fraction`, `curve_position`, `*_one`) are inlined.  Kernels take pre-drawn
noise (float32 uniforms `u` for the rounding, float32 standard normals `xi`), never a global RNG.
Arithmetic is float64 inside, float32 out.  Every per-device input array may have length N or
length 1 (broadcast), so nominal devices need no per-device arrays.  Model semantics, formulas and
sources: hw_models/noise/pulsed_constant.py and pulsed_nonlinear.py.  Slow twins: tests/naive.py.
"""

from __future__ import annotations

import math

import numpy as np

from hw_models.kernels._jit import njit_fixed_parallel, njit_inline, prange

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
def curve_fraction(p, a, p_max, up):
    """r = (W + 1) / 2 in [0, 1] at pulse position p in [0, p_max] of the potentiation curve
    (up: r = (1 - e^(-p/a)) / (1 - e^(-p_max/a))) or of the point-mirrored depression curve
    (r = 1 - r_up(p_max - p)).  expm1 keeps a -> infinity (linear) accurate."""
    if up:
        return math.expm1(-p / a) / math.expm1(-p_max / a)
    return 1.0 - math.expm1(-(p_max - p) / a) / math.expm1(-p_max / a)


@njit_inline
def curve_position(r, a, p_max, up):
    """Inverse of curve_fraction for r in [0, 1]: the (real) pulse position p in [0, p_max]."""
    e = math.expm1(-p_max / a)  # in (-1, 0)
    if up:
        y = r * e
        if y <= -1.0:  # r = 1 on a curve flat to machine precision: log1p(-1) = -inf
            return p_max
        return min(-a * math.log1p(y), p_max)
    y = (1.0 - r) * e
    if y <= -1.0:
        return 0.0
    return max(p_max + a * math.log1p(y), 0.0)


@njit_inline
def constant_one(g, dg, dw_nominal, step_up, step_down, lo, hi, std, u, xi):
    """One device, one update: n = pulse_count(|dg| / dw_nominal, u) pulses of the device's
    directional step, their summed Gaussian cycle-to-cycle errors, clipped once to [lo, hi]."""
    if dg > 0.0:
        step, s = step_up, 1.0
    elif dg < 0.0:
        step, s = step_down, -1.0
    else:
        return _clip(g, lo, hi)
    n = pulse_count(abs(dg) / dw_nominal, u)
    g = g + s * n * step + step * std * math.sqrt(n) * xi
    return _clip(g, lo, hi)


@njit_inline
def nonlinear_one(g, dg, gmin, gmax, p_max, a_ltp, a_ltd, sigma_pulses, u, xi):
    """One device, one update on the NeuroSim curve: invert g to its pulse position on the curve
    of the update's direction, move n pulses (clipped to 0..p_max), add the cycle-to-cycle error
    sigma_pulses * step * sqrt(n) * xi in conductance, clip to [gmin, gmax]."""
    span = gmax - gmin
    if dg == 0.0 or span <= 0.0:
        return _clip(g, gmin, gmax)
    step = span / p_max
    n = pulse_count(abs(dg) / step, u)
    if n == 0.0:
        return _clip(g, gmin, gmax)
    up = dg > 0.0
    a = a_ltp if up else a_ltd
    p = curve_position(_clip((g - gmin) / span, 0.0, 1.0), a, p_max, up)
    p = _clip(p + n if up else p - n, 0.0, p_max)
    g = gmin + span * curve_fraction(p, a, p_max, up) + sigma_pulses * step * math.sqrt(n) * xi
    return _clip(g, gmin, gmax)


# ---- loop kernels -----------------------------------------------------------------------------
@njit_fixed_parallel
def _constant_kernel(g, dg, dw_nominal, step_up, step_down, lo, hi, std, u, xi, out):
    for i in prange(out.shape[0]):
        out[i] = constant_one(float(g[i]), float(dg[i]), dw_nominal, float(_at(step_up, i)),
                              float(_at(step_down, i)), float(_at(lo, i)), float(_at(hi, i)), std,
                              float(_at(u, i)), float(_at(xi, i)))


@njit_fixed_parallel
def _nonlinear_kernel(g, dg, gmin, gmax, p_max, a_ltp, a_ltd, sigma_pulses, u, xi, out):
    for i in prange(out.shape[0]):
        out[i] = nonlinear_one(float(g[i]), float(dg[i]), gmin, float(_at(gmax, i)), p_max, a_ltp,
                               a_ltd, sigma_pulses, float(_at(u, i)), float(_at(xi, i)))


# ---- public functions -------------------------------------------------------------------------
def _flat32(name: str, a, n: int) -> np.ndarray:
    """1-D contiguous float32 view/copy of length n or 1."""
    v = np.ascontiguousarray(np.asarray(a, dtype=F32).reshape(-1))
    if v.shape[0] not in (1, n):
        raise ValueError(f"{name} must have 1 or {n} elements, got {v.shape[0]}")
    return v


def constant_step_update(g_uS, dg_uS, dw_nominal_uS: float, step_up_uS, step_down_uS, gmin_uS,
                         gmax_uS, dw_min_std: float, u, xi) -> np.ndarray:
    """Constant-step pulsed update of every device (any shape; per-device arguments of the same
    size or scalars).  Returns float32 conductances shaped like g_uS."""
    g = np.asarray(g_uS)
    n = g.size
    dg = np.broadcast_to(np.asarray(dg_uS, dtype=F32), g.shape)
    if not dw_nominal_uS > 0:
        raise ValueError(f"dw_nominal_uS must be > 0, got {dw_nominal_uS!r}")
    out = np.empty(n, F32)
    if n == 0:
        return out.reshape(g.shape)
    _constant_kernel(_flat32("g_uS", g, n), _flat32("dg_uS", dg, n), float(dw_nominal_uS),
                     _flat32("step_up_uS", step_up_uS, n), _flat32("step_down_uS", step_down_uS, n),
                     _flat32("gmin_uS", gmin_uS, n), _flat32("gmax_uS", gmax_uS, n),
                     float(dw_min_std), _flat32("u", u, n), _flat32("xi", xi, n), out)
    return out.reshape(g.shape)


def nonlinear_update(g_uS, dg_uS, gmin_uS: float, gmax_uS, p_max: int, a_ltp: float, a_ltd: float,
                     ctoc_std_pulses: float, u, xi) -> np.ndarray:
    """NeuroSim-style nonlinear pulsed update of every device (any shape; gmax_uS, u, xi of the
    same size or scalars).  Returns float32 conductances shaped like g_uS."""
    g = np.asarray(g_uS)
    n = g.size
    dg = np.broadcast_to(np.asarray(dg_uS, dtype=F32), g.shape)
    if not (p_max >= 1 and a_ltp > 0 and a_ltd > 0):
        raise ValueError(f"need p_max >= 1, a_ltp > 0, a_ltd > 0, got {p_max}, {a_ltp}, {a_ltd}")
    out = np.empty(n, F32)
    if n == 0:
        return out.reshape(g.shape)
    _nonlinear_kernel(_flat32("g_uS", g, n), _flat32("dg_uS", dg, n), float(F32(gmin_uS)),
                      _flat32("gmax_uS", gmax_uS, n), float(p_max), float(a_ltp), float(a_ltd),
                      float(ctoc_std_pulses), _flat32("u", u, n), _flat32("xi", xi, n), out)
    return out.reshape(g.shape)
