"""Slow, obviously-correct numpy/python twins of every numba kernel (compared in tests), and of
the noise models' moment formulas where those are more than a closed form.

Each twin is named after its kernel with a `naive_` prefix and says which tolerance the
comparison uses (bit-exact for integer / fixed-point paths).
"""

from __future__ import annotations

import math

import numpy as np


# ---- fixed-point formats and integer MVM (hw_models/kernels/{quantize,intmvm,adc}.py) --------
# All bit-exact twins.  They take primitive arguments (bits, key) rather than FixedPointFormat.
_M64 = (1 << 64) - 1


def naive_splitmix64(state: int, n: int) -> list[int]:
    """First n outputs of a splitmix64 generator whose state starts at `state` (Python ints)."""
    outs = []
    for _ in range(n):
        state = (state + 0x9E3779B97F4A7C15) & _M64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
        outs.append(z ^ (z >> 31))
    return outs


def naive_seed_key(seed: int) -> int:
    """Twin of kernels.quantize.seed_key for int seeds: first splitmix64 output of state seed."""
    return naive_splitmix64(seed & _M64, 1)[0]


def naive_uniform(key: int, n: int) -> np.ndarray:
    """Twin of uniform_at(key, i) for i = 0..n-1, vectorized in numpy uint64 (wraps silently)."""
    z = np.uint64(key) + (np.arange(n, dtype=np.uint64) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


def _naive_scaled(x, scale, axis):
    """float64 x / float64 scale, a 1-D scale broadcast along `axis` (default last)."""
    x = np.asarray(x, dtype=np.float64)
    s = np.asarray(scale, dtype=np.float32).astype(np.float64)
    if s.ndim == 1:
        shape = [1] * x.ndim
        shape[-1 if axis is None else axis] = -1
        s = s.reshape(shape)
    return x / s


def naive_quantize_nearest_kernel(x, scale, bits, axis=None):
    """Codes clip(rint(x / scale), -qmax, qmax) (ties to even), int8 for bits <= 8 else int16."""
    qmax = 2 ** (bits - 1) - 1
    q = np.clip(np.rint(_naive_scaled(x, scale, axis)), -qmax, qmax)
    return q.astype(np.int8 if bits <= 8 else np.int16)


def naive_quantize_stochastic_kernel(x, scale, bits, seed, axis=None):
    """Codes clip(floor(x / scale + u), -qmax, qmax), u[i] = naive_uniform(seed key)[C-order i]."""
    qmax = 2 ** (bits - 1) - 1
    v = _naive_scaled(x, scale, axis)
    u = naive_uniform(naive_seed_key(seed), v.size).reshape(v.shape)
    q = np.clip(np.floor(v + u), -qmax, qmax)
    return q.astype(np.int8 if bits <= 8 else np.int16)


def naive_int_matmul(a, b) -> np.ndarray:
    """Exact integer product with Python-int loops -> int64 (N, M)."""
    n, k = a.shape
    m = b.shape[1]
    out = np.zeros((n, m), dtype=np.int64)
    for i in range(n):
        for j in range(m):
            out[i, j] = sum(int(a[i, t]) * int(b[t, j]) for t in range(k))
    return out


def naive_tiled_matmul_kernel(a, b, tile_rows) -> np.ndarray:
    """Per-tile partial sums (ceil(K / tile_rows), N, M), last tile shorter, via naive_int_matmul."""
    k = a.shape[1]
    tiles = [naive_int_matmul(a[:, s:s + tile_rows], b[s:s + tile_rows]) for s in range(0, k, tile_rows)]
    return np.array(tiles, dtype=np.int64).reshape(len(tiles), a.shape[0], b.shape[1])


def naive_checked_matmul_kernel(a, b, acc_bits) -> tuple[np.ndarray, int]:
    """(exact a @ b, number of outputs whose running sum over k = 0..K-1 left the acc range)."""
    lo, hi = -(2 ** (acc_bits - 1)), 2 ** (acc_bits - 1) - 1
    n, k = a.shape
    m = b.shape[1]
    out = np.zeros((n, m), dtype=np.int64)
    n_overflow = 0
    for i in range(n):
        for j in range(m):
            acc, left = 0, False
            for t in range(k):
                acc += int(a[i, t]) * int(b[t, j])
                left = left or not lo <= acc <= hi
            out[i, j] = acc
            n_overflow += left
    return out, n_overflow


def naive_adc_kernel(partial, noise, sigma, bits, range_) -> tuple[np.ndarray, int]:
    """y = partial + f32(sigma) * noise in float32; bits > 0: level = clip(rint(f64(y) / lsb),
    +-qmax), lsb = range_ / qmax, out = f32(level * lsb), saturated = count of |y| >= range_."""
    y = np.asarray(partial, dtype=np.float32)
    if noise is not None and sigma != 0:
        y = y + np.float32(sigma) * np.asarray(noise, dtype=np.float32)
    if bits == 0:
        return y.astype(np.float32), 0
    qmax = 2 ** (bits - 1) - 1
    lsb = float(range_) / qmax
    level = np.clip(np.rint(y.astype(np.float64) / lsb), -qmax, qmax)
    n_sat = int(np.count_nonzero(np.abs(y.astype(np.float64)) >= range_))
    return (level * lsb).astype(np.float32), n_sat


# ---- pulsed updates (hw_models/kernels/pulsed.py) ---------------------------------------------
# Plain-Python loops over devices in float64, written from the sources rather than the kernels.
def naive_constant_step_update(g, dg, dw_nominal, step_up, step_down, gmin, gmax, std, u, xi):
    """Twin of constant_step_update (arrays 1-D of length N or 1; u, xi the pre-drawn noise).
    Bit-exact: the same float64 operations in the same order, one float32 rounding at the end."""
    import math

    g, dg = np.asarray(g, np.float32).ravel(), np.asarray(dg, np.float32).ravel()
    at = [np.asarray(a, np.float32).ravel() for a in (step_up, step_down, gmin, gmax, u, xi)]
    out = np.empty(g.size, np.float32)
    for i in range(g.size):
        up, down, lo, hi, ui, xii = (float(a[0] if a.size == 1 else a[i]) for a in at)
        gi, d = float(g[i]), float(dg[i])
        if d != 0.0:
            step, s = (up, 1.0) if d > 0 else (down, -1.0)
            n = math.floor(abs(d) / dw_nominal + ui)
            gi = gi + s * n * step + step * std * math.sqrt(n) * xii
        out[i] = min(max(gi, lo), hi)
    return out


def naive_constant_pulse_train(g, n, sign, step, std, gmin, gmax, rng, clip_each_pulse=True):
    """aihwkit's dense update (rpu_constantstep_device.cpp:57-78), vectorized over devices, one
    pulse at a time: g += sign * step * (1 + std * xi_k), clipped after every pulse.  Compared with
    the kernel in distribution only (different draws)."""
    g = np.asarray(g, np.float64).copy()
    n = np.asarray(n)
    for k in range(int(n.max(initial=0))):
        live = k < n
        g = np.where(live, g + sign * step * (1 + std * rng.standard_normal(g.shape)), g)
        if clip_each_pulse:
            g = np.clip(g, gmin, gmax)
    return np.clip(g, gmin, gmax)


def naive_nonlinear_update(g, dg, gmin, gmax, p_max, a_ltp, a_ltd, sigma_pulses, u, xi):
    """Twin of nonlinear_update, pulse by pulse, with NeuroSim's formulas verbatim
    (formula.cpp:82-89): g = B (1 - exp(-P/A)) + Gmin, B = (Gmax - Gmin)/(1 - exp(-Pmax/A)), the
    depression curve being the same formula with A = -A_ltd.  Not bit-exact (the kernel steps the
    curve in closed form, kernels/pulsed.py curve_step; here P is inverted with log, advanced one
    pulse at a time and read back with exp): compare within 1e-5 of the conductance range
    (float32 resolution is ~6e-8 of it; the float64 formulas differ by ~1e-13 for A >= 1 pulse)."""
    import math

    g, dg = np.asarray(g, np.float32).ravel(), np.asarray(dg, np.float32).ravel()
    gmax, u, xi = (np.asarray(a, np.float32).ravel() for a in (gmax, u, xi))
    lo = float(np.float32(gmin))
    out = np.empty(g.size, np.float32)
    for i in range(g.size):
        hi = float(gmax[0] if gmax.size == 1 else gmax[i])
        gi, d = float(g[i]), float(dg[i])
        step = (hi - lo) / p_max
        n = math.floor(abs(d) / step + float(u[0] if u.size == 1 else u[i])) if d != 0 else 0
        if n > 0:
            a = a_ltp if d > 0 else -a_ltd
            b = (hi - lo) / (1 - math.exp(-p_max / a))
            x = 1 - (min(max(gi, lo), hi) - lo) / b
            p = -a * math.log(x) if x > 0 else (p_max if d > 0 else 0.0)
            p = min(max(p, 0.0), float(p_max))
            for _ in range(n):
                p = min(p + 1, p_max) if d > 0 else max(p - 1, 0.0)
            gi = b * (1 - math.exp(-p / a)) + lo
            gi += sigma_pulses * step * math.sqrt(n) * float(xi[0] if xi.size == 1 else xi[i])
        out[i] = min(max(gi, lo), hi)
    return out


def naive_one_sided_write(w_target, w_max, gmax_uS):
    """Twin of hw_models.kernels.program.one_sided_write_kernel (bit-exact: same float32 ops in
    the same order).  Returns (g_plus, g_minus, g_eff, w_out)."""
    gmax = np.float32(gmax_uS)
    wn = np.clip(w_target / w_max[:, None], np.float32(-1), np.float32(1)).astype(np.float32)
    gp = np.maximum(wn, np.float32(0)) * gmax
    gn = np.maximum(-wn, np.float32(0)) * gmax
    ge = (gp - gn) * (np.float32(1.0) / gmax)
    return gp, gn, ge, ge * w_max[:, None]


# ---- PCM path (hw_models/kernels/pcm.py) ------------------------------------------------------
def naive_pcm_program(g_target, gmax, xi_prog, xi_nu, coeffs, noise_scale, ref_gmax, nu_law, nu_scale,
                      nu_mean, nu_std, q_coeff, q_exponent, q_floor, q_max):
    """Twin of pcm_program's kernel given its pre-drawn normals (xi_prog / xi_nu None = that stage
    off; nu_law "aihwkit" or "constant"): the numpy formulas of hw_models/noise/pcm.py op for op.
    Returns (g_prog, nu or None, q).  g_prog and the constant law's nu bit-exact (float32); the
    aihwkit law's nu up to (0.0155 + 0.0125 |xi|) * drift_scale * ulp(ln g) + ulp(nu) apart: ln g
    here is the float64 log rounded to float32, the kernel's is libm's logf (within 0.52 ulp, so at
    most 1 ulp apart), and mu, sigma are linear in ln g with those slopes (an absolute bound: near
    nu = 0 the fold |.| makes relative differences large); q (of the programmed conductance) within 2 ulp: the power here is correctly
    rounded (float64, then rounded to float32) and libm's powf in the kernel is within 0.51 ulp of
    exact, so the two powers differ by at most 1 ulp, and q = coeff / power by at most 2 ulp
    (g = 0 needs no power: q = min(coeff / floor, q_max) in both)."""
    f32 = np.float32
    g = np.asarray(g_target, f32)
    gm = np.asarray(gmax, f32)
    nu = None
    if xi_nu is not None and nu_law == "aihwkit":
        x = np.maximum(np.abs(g) / gm, f32(1e-7))
        log_g = np.log(x.astype(np.float64)).astype(f32).astype(np.float64)  # ln g rounded to float32
        mu = np.clip(-0.0155 * log_g + 0.0244, 0.049, 0.1)
        sd = np.clip(-0.0125 * log_g - 0.0059, 0.008, 0.045)
        nu = (np.abs(mu + sd * xi_nu.astype(np.float64)) * np.float64(f32(nu_scale))).astype(f32)
    elif xi_nu is not None:
        nu = np.maximum(f32(nu_mean) + f32(nu_std) * xi_nu, f32(0)) * f32(nu_scale)
    if xi_prog is None:
        g_prog = g.copy()
    else:
        x = g / gm
        poly = np.zeros_like(x) + f32(coeffs[-1])
        for c in coeffs[-2::-1]:
            poly = poly * x + f32(c)
        sigma = np.maximum(poly, f32(0)) * (f32(noise_scale) * gm / f32(ref_gmax))
        g_prog = np.maximum(g + sigma * xi_prog, f32(0))
    x = np.abs(g_prog) / gm
    power = (x.astype(np.float64) ** np.float64(f32(q_exponent))).astype(f32)
    q = np.minimum(f32(q_coeff) / np.maximum(power, f32(q_floor)), f32(q_max))
    return g_prog, nu, q


def naive_granular_targets(w_in, w_max, g_eff, granularity, seed, from_target=False):
    """Twin of granular_targets (bit-exact) for an int seed, with plain numpy: delta and dw in
    float32, the rounding n = floor(dw / e + u) in float64 with naive_uniform, the target
    clip(g_eff + n e, -1, 1) in float64 rounded once.  Returns (idx, targets, weights before)."""
    w_in, g_eff = np.asarray(w_in, np.float32), np.asarray(g_eff, np.float32)
    w_max = np.asarray(w_max, np.float32)[:, None]
    w_now = g_eff * w_max
    dw = ((w_in - w_now) if from_target else w_in) / w_max
    u = naive_uniform(naive_seed_key(seed), dw.size).reshape(dw.shape)
    n = np.floor(dw.astype(np.float64) / granularity + u)
    idx = np.flatnonzero(n != 0)
    target = np.clip(g_eff.astype(np.float64) + n * granularity, -1.0, 1.0).astype(np.float32)
    return idx, target.reshape(-1)[idx], w_now


def naive_pcm_conductance_moments(model, g_target_uS: float, gmax_uS: float, t_s: float):
    """Twin of PCM.conductance_moments for one target, by direct numerical integration
    (scipy.integrate.quad) over the densities of the three draws, none of the model's closed forms:
      E[G^k] = E_nu[e^(-k L nu)] * E_prog[G_prog^k r_k(s(G_prog))],  k = 1, 2
    E_nu over nu = drift_scale |Y| (aihwkit law) or drift_scale max(Y, 0) (constant law), Y normal;
    E_prog over G_prog = max(g + sigma_prog Z, 0) (a point mass at 0, then the density on G > 0);
    r_k(s) = E[max(1 + s Z, 0)^k] (frozen; per_read: E[(1 + s Z)^k]) written out from the truncated
    normal's integrals; s = T q(G_prog).
    Returns (mean, std)."""
    from scipy import integrate
    from scipy.stats import norm

    g = abs(float(g_target_uS))
    L = math.log((t_s + model.t0_s) / model.t0_s) if t_s > 0 else 0.0
    T = model.read_noise_scale * math.sqrt(max(math.log((max(t_s, 0.0) + model.t0_s + model.t_read_s)
                                                        / (2 * model.t_read_s)), 0.0))

    def q(x):
        power = (x / gmax_uS) ** model.read_1f_exponent
        return min(model.read_1f_coeff / max(power, 1e-3), model.read_1f_max)

    def r(k, s):
        """E[max(1 + s Z, 0)^k] by the truncated-normal integrals: with a = 1/s,
        E[(1 + s Z) 1{Z > -a}] = Phi(a) + s phi(a), E[(1 + s Z)^2 1{Z > -a}] = (1 + s^2) Phi(a) + s phi(a)."""
        if s == 0:
            return 1.0
        if model.read_noise != "frozen":
            return 1.0 if k == 1 else 1.0 + s * s
        a = 1.0 / s
        return (norm.cdf(a) + s * norm.pdf(a)) if k == 1 else ((1 + s * s) * norm.cdf(a) + s * norm.pdf(a))

    def nu_factor(k):
        if L == 0 or model.drift_scale == 0:
            return 1.0
        if model.drift_law == "aihwkit":
            lg = math.log(max(g / gmax_uS, 1e-7))
            mu = min(max(-0.0155 * lg + 0.0244, 0.049), 0.1)
            sd = min(max(-0.0125 * lg - 0.0059, 0.008), 0.045)
            fold = abs
        else:
            mu, sd = model.drift_nu_mean, model.drift_nu_std
            fold = lambda y: max(y, 0.0)  # noqa: E731
        c = k * L * model.drift_scale
        return integrate.quad(lambda y: math.exp(-c * fold(y)) * norm.pdf(y, mu, sd), mu - 12 * sd, mu + 12 * sd,
                              points=[0.0] if mu - 12 * sd < 0 < mu + 12 * sd else None, epsabs=0, epsrel=1e-11)[0]

    poly = sum(c * (g / gmax_uS) ** i for i, c in enumerate(model.prog_coeff_uS))
    sp = model.prog_noise_scale * max(poly, 0.0) * gmax_uS / model.prog_coeff_gmax_ref_uS
    moments = []
    for k in (1, 2):
        f = lambda x: x ** k * r(k, T * q(x))  # noqa: E731
        if sp == 0:
            e = f(g)
        else:
            kinks = [gmax_uS * (model.read_1f_coeff / model.read_1f_max) ** (1 / model.read_1f_exponent)]
            hi = g + 12 * sp
            e = integrate.quad(lambda x: f(x) * norm.pdf(x, g, sp), 0.0, hi,
                               points=[p for p in kinks if 0 < p < hi], limit=200, epsabs=0, epsrel=1e-10)[0]
        moments.append(nu_factor(k) * e)
    mean, second = moments
    return mean, math.sqrt(max(second - mean * mean, 0.0))


def naive_add_noise_clamped(g, sigma, xi):
    """Twin of hw_models.kernels.readout.add_noise_clamped (bit-exact): float32 numpy, product then
    sum then clamp."""
    f32 = np.float32
    return np.maximum(np.asarray(g, f32) + np.asarray(sigma, f32) * np.asarray(xi, f32), f32(0))


def naive_half_requests(w, w_max, half_scale, g_eff=None):
    """Twin of hw_models.kernels.pair.half_requests (bit-exact): the numpy expressions the pulsed
    write used, (M, 1) column broadcast: delta = w - g_eff * w_max (a target) or w (a change),
    then float32(delta) / w_max * half_scale, and +- that."""
    f32 = np.float32
    col = np.asarray(w_max, f32).reshape(-1, 1)
    delta = np.asarray(w) if g_eff is None else np.asarray(w) - np.asarray(g_eff, f32) * col
    h = np.asarray(delta, dtype=f32) / col * f32(half_scale)
    return f32(1.0) * h, f32(-1.0) * h


def naive_pair_difference(a, b, scale):
    """Twin of hw_models.kernels.pair.pair_difference (bit-exact): float32 numpy."""
    return ((np.asarray(a) - np.asarray(b)) * np.float32(scale)).astype(np.float32, copy=False)


# ---- counter-based normals and uniforms (hw_models/kernels/normal.py) ------------------------
def naive_ziggurat_tables(layers: int = 256, r: float = 3.6541528853610088, v: float = 0.00492867323399):
    """Marsaglia & Tsang's zigset in Python floats: (ki as ints, wi, fi) lists."""
    m = 2.0 ** 52
    ki, wi, fi = [0] * layers, [0.0] * layers, [0.0] * layers
    dn = tn = r
    q = v / math.exp(-0.5 * dn * dn)
    ki[0] = int((dn / q) * m)
    wi[0], wi[-1] = q / m, dn / m
    fi[0], fi[-1] = 1.0, math.exp(-0.5 * dn * dn)
    for i in range(layers - 2, 0, -1):
        dn = math.sqrt(-2.0 * math.log(v / dn + math.exp(-0.5 * dn * dn)))
        ki[i + 1] = int((dn / tn) * m)
        tn = dn
        fi[i] = math.exp(-0.5 * dn * dn)
        wi[i] = dn / m
    return ki, wi, fi


def _naive_mix(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def naive_normal_at(key: int, index: int, tables) -> float:
    """Twin of normal_at (bit-exact): the same ziggurat, one element at a time, Python ints."""
    ki, wi, fi = tables
    r_zig = 3.6541528853610088
    r0 = _naive_mix((key + (index + 1) * 0x9E3779B97F4A7C15) & _M64)
    draw = lambda j: _naive_mix((r0 + j * 0x9E3779B97F4A7C15) & _M64)  # noqa: E731
    u53 = lambda r: (r >> 11) * 2.0 ** -53  # noqa: E731
    r, j = r0, 0
    while True:
        layer, sign, rabs = r & 0xFF, (r >> 8) & 1, (r >> 9) & ((1 << 52) - 1)
        x = float(rabs) * wi[layer]
        x = -x if sign else x
        if rabs < ki[layer]:
            return x
        if layer == 0:
            while True:
                xx = -math.log1p(-u53(draw(j + 1))) / r_zig
                yy = -math.log1p(-u53(draw(j + 2)))
                j += 2
                if yy + yy > xx * xx:
                    return -(r_zig + xx) if sign else r_zig + xx
        if (fi[layer - 1] - fi[layer]) * u53(draw(j + 1)) + fi[layer] < math.exp(-0.5 * x * x):
            return x
        r, j = draw(j + 2), j + 2


def naive_uniform32(key: int, n: int) -> np.ndarray:
    """Twin of uniform32_at(key, i), i = 0..n-1 (bit-exact): the top 24 bits times 2**-24."""
    return np.array([(_naive_mix((key + (i + 1) * 0x9E3779B97F4A7C15) & _M64) >> 40) * 2.0 ** -24
                     for i in range(n)], np.float32)


# ---- stochastic pulse trains (hw_models/kernels/pulse_train.py) -------------------------------
# Bit-exact twin: python ints for the counter-based draws (normals: naive_normal_at above), python
# floats (float64) elsewhere, one float32 rounding after every pulse as the kernel.
def naive_uniform_at(key: int, index: int) -> float:
    """Twin of quantize.uniform_at for one (key, index), in Python ints."""
    z = (int(key) + (int(index) + 1) * 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return float((z ^ (z >> 31)) >> 11) * 2.0 ** -53


def naive_pulse_train_management(x_max, d_max, lr, dw, desired_bl, um, ublm):
    """(BL, B, A) of one sample, following aihwkit's calculateBlAB + performUpdateManagement
    (rpu_pulsed_meta_parameter.cpp:153-235) line by line, fixed_bl = True, um_grad_scale = 1."""
    bl = desired_bl
    a = b = math.sqrt(lr / (dw * bl)) if lr > 0 else 0.0
    if lr <= 0 or x_max == 0 or d_max == 0:
        return 0, b, a
    um = um or ublm  # rpu_pulsed_meta_parameter.cpp:140
    if um:
        k = lr * x_max * d_max / dw
        if ublm:
            bl = min(math.ceil(k), desired_bl)
            a = b = math.sqrt(lr / (dw * bl))
        d_val = d_max * (desired_bl / k) if k > desired_bl else d_max
        a = a * math.sqrt(x_max / d_val)
        b = b * math.sqrt(d_val / x_max)
    return bl, b, a


def naive_pulse_train_update(g_plus, g_minus, x, d, lr, dw_min, steps_plus, steps_minus, gmin, std, key,
                             desired_bl=31, um=True, ublm=True):
    """Twin of pulse_train_update: sample by sample, the BL bits of every x and d stream as lists,
    coincidences counted bit by bit, then pulse by pulse on G+ (direction s = -sign(x d)) and G-
    (-s).  Returns (G+, G-, coincidences)."""
    gp, gm = (np.array(g, np.float32).copy() for g in (g_plus, g_minus))
    x, d = np.asarray(x, np.float32), np.asarray(d, np.float32)
    n_out, n_in = gp.shape
    if lr < 0:
        d, lr = -d, -lr
    key, f32, tables = int(key), lambda v: float(np.float32(v)), naive_ziggurat_tables()
    per = [np.asarray(a, np.float32).ravel() for a in (*steps_plus, *steps_minus)]
    at = lambda a, i: float(a[0] if a.size == 1 else a[i])  # noqa: E731
    total = 0
    for n in range(x.shape[0] if lr > 0 else 0):
        x_max = max((abs(float(v)) for v in x[n]), default=0.0)
        d_max = max((abs(float(v)) for v in d[n]), default=0.0)
        bl, b, a = naive_pulse_train_management(x_max, d_max, lr, dw_min, desired_bl, um, ublm)
        xb = [[naive_uniform_at(key, (0 << 60) | ((n * n_in + k) * 64 + t)) < abs(float(x[n, k])) * b
               for t in range(bl)] for k in range(n_in)]
        db = [[naive_uniform_at(key, (1 << 60) | ((n * n_out + m) * 64 + t)) < abs(float(d[n, m])) * a
               for t in range(bl)] for m in range(n_out)]
        for m in range(n_out):
            for k in range(n_in):
                c = sum(1 for t in range(bl) if xb[k][t] and db[m][t])
                total += c
                s = -1.0 if (x[n, k] > 0) == (d[n, m] > 0) else 1.0
                i = m * n_in + k
                for q, (g, sign) in enumerate(((gp, s), (gm, -s))):
                    up, down, hi = (at(per[3 * q + r], i) for r in range(3))
                    step = up if sign > 0 else down
                    v = float(g[m, k])
                    for j in range(c):
                        e = 1.0
                        if std > 0.0:
                            idx = ((2 + q) << 60) | (((n * n_out + m) * n_in + k) * 64 + j)
                            e = 1.0 + std * naive_normal_at(key, idx, tables)
                        v = f32(min(max(v + sign * step * e, f32(gmin)), hi))
                    g[m, k] = v
    return gp, gm, total
