"""Numba kernels of the pulsed-update device models: the per-device pulse arithmetic of
`pulsed_constant` (aihwkit-style constant step) and `pulsed_nonlinear` (NeuroSim-style curve).

Three levels: `constant_step_update` / `nonlinear_update` validate shapes and dtypes and allocate
the output; `_constant_kernel` / `_nonlinear_kernel` loop over every device, `_nonlinear_count_kernel`
counts pulses only, and `_*_noise_kernel` moves the devices that fired (passes chosen by how many
fire, see "loop kernels"); the scalar helpers (`pulse_count`, `constant_move`, `nonlinear_pulses`,
`nonlinear_move`, `curve_error`, `curve_step`) are inlined.  Kernels take pre-drawn noise (float32
uniforms `u` for the rounding, float32 standard normals `xi`) or the streams to draw them from
(kernels/normal.py Stream: uniform i / normal i of the stream, the same numbers as an array filled
from it), never a global RNG.
Arithmetic is float64 inside, float32 out.  Every per-device input array may have length N or
length 1 (broadcast), so nominal devices need no per-device arrays.  Model semantics, formulas and
sources: hw_models/noise/pulsed_constant.py and pulsed_nonlinear.py.  Slow twins: tests/naive.py.
"""

from __future__ import annotations

import math

import numpy as np

from hw_models.kernels._jit import njit_fixed_parallel, njit_inline, prange
from hw_models.kernels.normal import FI, KI, WI, Stream, fill_normal, normal_at, uniform32_at

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
def constant_move(g, dg, n, step_up, step_down, std, x):
    """A device's conductance after n pulses of its directional step for a request dg (n = 0 for
    dg = 0), with the summed Gaussian cycle-to-cycle error step * std * sqrt(n) * x; unclipped."""
    step = step_up if dg > 0.0 else step_down
    s = 1.0 if dg > 0.0 else (-1.0 if dg < 0.0 else 0.0)
    return g + s * n * step + step * std * math.sqrt(n) * x


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
def nonlinear_pulses(g, dg, gmin, gmax, p_max, u):
    """Pulses n = pulse_count(|dg| / step, u) of one device on the NeuroSim curve, step =
    (gmax - gmin) / p_max; 0 for dg = 0 or an empty range (selects, no branch: vectorizable)."""
    span = gmax - gmin
    fire = (dg != 0.0) & (span > 0.0)
    return pulse_count(abs(dg) / (span / p_max if fire else 1.0), u) if fire else 0.0


@njit_inline
def nonlinear_move(g, dg, n, gmin, gmax, e_ltp, e_ltd, em_ltp, em_ltd):
    """A device's conductance after n > 0 pulses along the curve of the update's direction from
    its position (curve_step; the depression curve is the potentiation curve mirrored: 1 - r
    steps up), without the cycle-to-cycle error; g itself for n = 0.  Both curves are evaluated
    and one selected (no branch: vectorizable)."""
    span = gmax - gmin
    r = _clip((g - gmin) / (span if span > 0.0 else 1.0), 0.0, 1.0)
    r_up = curve_step(r, n, e_ltp, em_ltp)
    r_down = 1.0 - curve_step(1.0 - r, n, e_ltd, em_ltd)
    moved = gmin + span * (r_up if dg > 0.0 else r_down)
    return moved if n > 0.0 else g


@njit_inline
def curve_error(sigma_pulses, gmin, gmax, p_max, n, x):
    """The cycle-to-cycle error of n pulses on the NeuroSim curve, sigma_pulses * step * sqrt(n) * x
    in conductance, step = (gmax - gmin) / p_max."""
    return sigma_pulses * ((gmax - gmin) / p_max) * math.sqrt(n) * x


def curve_tables(p_max: float, a: float) -> tuple[float, np.ndarray]:
    """(e, em) of curve_step for nonlinearity a: e = expm1(-p_max/a), em[k] = expm1(-k/a)."""
    return math.expm1(-p_max / a), np.expm1(-np.arange(int(p_max) + 1) / a)


# ---- loop kernels -----------------------------------------------------------------------------
# The per-device arithmetic vectorizes (AVX-512 here: ~1.3 ns a device) only without the
# ziggurat's rejection loop in its body (inlined there, the one-pass kernel took 10-17 ns a
# device) and without table look-ups (the NeuroSim curve's expm1 table: LLVM's cost model for this
# AMD core rejects gathers; 3.4 ns a device).  So the work is split by the expected share of
# devices that fire (fire_share, from a sample of the requests):
# - many fire: the stream's normals are filled into an array for all devices (kernels/normal.py
#   fill_normal, ~2.7 ns each) and `_*_kernel` updates every device with xi[i];
# - few fire: every device's pulse count in a vectorized pass (`_constant_kernel` without the
#   error, `_nonlinear_count_kernel` without the curve), then `_*_noise_kernel` moves the devices
#   that fired (one predictable branch per device, ~20 ns per device that fired) with their
#   normals drawn where used.
# Normals given as an array take `_*_kernel`.  Same numbers either way (normal i of the stream
# for device i) and the same float64 operations in the same order as the twins in tests/naive.py:
# bit-identical results.
@njit_fixed_parallel
def _constant_kernel(g, dg, dw_nominal, step_up, step_down, lo, hi, std, u, u_key, u_keyed, xi, out, pulses):
    fired = 0
    for i in prange(out.shape[0]):
        d = float(dg[i])
        n = pulse_count(abs(d) / dw_nominal, _u_at(u, u_key, u_keyed, i)) if d != 0.0 else 0.0
        moved = constant_move(float(g[i]), d, n, float(_at(step_up, i)), float(_at(step_down, i)), std,
                              float(_at(xi, i)))
        out[i] = _clip(moved, float(_at(lo, i)), float(_at(hi, i)))
        pulses[i] = n
        fired += 1 if n > 0.0 else 0
    return fired


@njit_fixed_parallel
def _constant_noise_kernel(g, dg, step_up, step_down, lo, hi, std, pulses, xi_key, ki, wi, fi, out):
    for i in prange(out.shape[0]):
        if pulses[i] > 0.0:
            x = np.float64(np.float32(normal_at(xi_key, i, ki, wi, fi)))
            moved = constant_move(float(g[i]), float(dg[i]), pulses[i], float(_at(step_up, i)),
                                  float(_at(step_down, i)), std, x)
            out[i] = _clip(moved, float(_at(lo, i)), float(_at(hi, i)))


@njit_fixed_parallel
def _nonlinear_kernel(g, dg, gmin, gmax, p_max, e_ltp, e_ltd, em_ltp, em_ltd, sigma_pulses, u, u_key, u_keyed,
                      xi, out, pulses):
    fired = 0
    for i in prange(out.shape[0]):
        gi, d, hi = float(g[i]), float(dg[i]), float(_at(gmax, i))
        n = nonlinear_pulses(gi, d, gmin, hi, p_max, _u_at(u, u_key, u_keyed, i))
        moved = nonlinear_move(gi, d, n, gmin, hi, e_ltp, e_ltd, em_ltp, em_ltd)
        noise = curve_error(sigma_pulses, gmin, hi, p_max, n, float(_at(xi, i)))
        out[i] = _clip(moved + noise if n > 0.0 else moved, gmin, hi)
        pulses[i] = n
        fired += 1 if n > 0.0 else 0
    return fired


@njit_fixed_parallel
def _nonlinear_count_kernel(g, dg, gmin, gmax, p_max, u, u_key, u_keyed, out, pulses):
    fired = 0
    for i in prange(out.shape[0]):
        gi, hi = float(g[i]), float(_at(gmax, i))
        n = nonlinear_pulses(gi, float(dg[i]), gmin, hi, p_max, _u_at(u, u_key, u_keyed, i))
        out[i] = _clip(gi, gmin, hi)  # the result where no pulse fires
        pulses[i] = n
        fired += 1 if n > 0.0 else 0
    return fired


@njit_fixed_parallel
def _nonlinear_noise_kernel(g, dg, gmin, gmax, p_max, e_ltp, e_ltd, em_ltp, em_ltd, sigma_pulses, pulses, xi_key,
                            ki, wi, fi, out):
    for i in prange(out.shape[0]):
        n = pulses[i]
        if n > 0.0:
            gi, d, hi = float(g[i]), float(dg[i]), float(_at(gmax, i))
            moved = nonlinear_move(gi, d, n, gmin, hi, e_ltp, e_ltd, em_ltp, em_ltd)
            x = np.float64(np.float32(normal_at(xi_key, i, ki, wi, fi)))
            out[i] = _clip(moved + curve_error(sigma_pulses, gmin, hi, p_max, n, x), gmin, hi)


SPARSE_FIRED = {"constant": 0.12, "nonlinear": 0.25}  # below: draw the normals of the fired devices only
FIRE_SAMPLE = 4096  # devices sampled (evenly strided) for the expected share of devices firing


def fire_share(dg: np.ndarray, step: float) -> float:
    """Expected share of devices that fire at least one pulse, E[min(|dg| / step, 1)] over an evenly
    strided sample (exact under stochastic rounding; a speed heuristic only, the draws do not depend on it)."""
    sample = dg[:: max(1, dg.shape[0] // FIRE_SAMPLE)]
    return float(np.minimum(np.abs(sample, dtype=np.float64) / step, 1.0).mean()) if step > 0 else 1.0


def _run(full, count, fired, xi, std: float, sparse: bool, n: int) -> None:
    """The passes above.  full(xi_array, pulses): every device, with the normals of an array;
    count(pulses): every device's pulse count and the result of the devices that fire none,
    returns how many fired; fired(pulses, key): the devices that fired, with the stream's normals."""
    pulses = np.empty(n)  # float64: any count exact
    if not isinstance(xi, Stream) or std == 0:
        full(np.zeros(1, F32) if isinstance(xi, Stream) else _flat32("xi", xi, n), pulses)
    elif not sparse:
        full(fill_normal(np.uint64(xi.key), np.empty(n, F32)), pulses)
    elif count(pulses):
        fired(pulses, np.uint64(xi.key))


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
    dg_flat = _flat32("dg_uS", dg, n)
    args = (_flat32("g_uS", g, n), dg_flat)
    steps = (_flat32("step_up_uS", step_up_uS, n), _flat32("step_down_uS", step_down_uS, n))
    bounds = (_flat32("gmin_uS", gmin_uS, n), _flat32("gmax_uS", gmax_uS, n))
    first = (*args, float(dw_nominal_uS), *steps, *bounds, float(dw_min_std), *_draws("u", u, n))
    zero = np.zeros(1, F32)
    with np.errstate(over="ignore"):  # uint64 wrap-around of the hash is intended (matters without JIT)
        _run(lambda xi_a, pulses: _constant_kernel(*first, xi_a, out, pulses),
             lambda pulses: _constant_kernel(*first, zero, out, pulses),
             lambda pulses, key: _constant_noise_kernel(*args, *steps, *bounds, float(dw_min_std), pulses, key,
                                                        KI, WI, FI, out),
             xi, dw_min_std, fire_share(dg_flat, dw_nominal_uS) < SPARSE_FIRED["constant"], n)
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
    dg_flat, gmin, gmax = _flat32("dg_uS", dg, n), float(F32(gmin_uS)), _flat32("gmax_uS", gmax_uS, n)
    args = (_flat32("g_uS", g, n), dg_flat, gmin, gmax, float(p_max))
    (e_ltp, em_ltp), (e_ltd, em_ltd) = curve_tables(p_max, a_ltp), curve_tables(p_max, a_ltd)
    curves = (e_ltp, e_ltd, em_ltp, em_ltd, float(ctoc_std_pulses))
    u_args = _draws("u", u, n)
    share = fire_share(dg_flat, (float(gmax[:FIRE_SAMPLE].mean()) - gmin) / p_max)
    with np.errstate(over="ignore"):  # uint64 wrap-around of the hash is intended (matters without JIT)
        _run(lambda xi_a, pulses: _nonlinear_kernel(*args, *curves, *u_args, xi_a, out, pulses),
             lambda pulses: _nonlinear_count_kernel(*args, *u_args, out, pulses),
             lambda pulses, key: _nonlinear_noise_kernel(*args, *curves, pulses, key, KI, WI, FI, out),
             xi, ctoc_std_pulses, share < SPARSE_FIRED["nonlinear"], n)
    return out.reshape(g.shape)
