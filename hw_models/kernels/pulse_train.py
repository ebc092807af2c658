"""Numba kernels of aihwkit's stochastic pulse-train update (Gokmen & Vlasov, "Acceleration of
deep neural network training with resistive cross-point devices", Front. Neurosci. 10, 333
(2016)) on the differential pairs of a constant-step pulsed device (`pulsed_constant` with
update_scheme = "pulse_train"; model semantics there).

Sources (IBM/aihwkit, read at commit 4545f11b):
  src/aihwkit/simulator/parameters/training.py:25-49    desired_bl = 31, fixed_bl = True:
                                                        BL = desired_bl, A = B = sqrt(lr / (dw_min BL))
  src/aihwkit/simulator/parameters/training.py:93-117   update_bl_management, update_management
  src/rpucuda/rpu_pulsed_meta_parameter.cpp:139-140     update_bl_management switches UM on
  src/rpucuda/rpu_pulsed_meta_parameter.cpp:153-178     calculateBlAB (the fixed-BL branch above)
  src/rpucuda/rpu_pulsed_meta_parameter.cpp:181-235     performUpdateManagement (formulas below)
  src/rpucuda/sparse_bit_line_maker.cpp:198-238         StochasticCompressed streams: bit b of the
                                                        stream of v fires iff |v| P > uniform; v = 0
                                                        fires nothing; the sign rides with the index
  src/rpucuda/sparse_bit_line_maker.cpp:286-353         x streams use B, d streams use A
  src/rpucuda/rpu.cpp:76-90                             a batch is applied sample after sample
  src/rpucuda/rpu_weight_updater.cpp:243-284            per bit position, every fired d row pulses
                                                        the fired x columns: one pulse per coincidence
  src/rpucuda/rpu_pulsed_device.h:450-459               pulse sign = sign(x) sign(d) (lr > 0)
  src/rpucuda/rpu_constantstep_device.cpp:27-55         sign > 0: w -= (1 + dw_min_std xi) step_down,
                                                        else w += (1 + dw_min_std xi) step_up; clip
                                                        to the device's bounds after every pulse

Per sample n (x_max = max_k |x[n,k]|, d_max = max_m |d[n,m]|, dw = weight granularity, lr > 0):
  x_max = 0 or d_max = 0: no pulses.  Else BL = desired_bl, A = B = sqrt(lr / (dw BL)), and with
  k = lr x_max d_max / dw:
    update_bl_management: BL = min(ceil(k), desired_bl), A = B = sqrt(lr / (dw BL))
    update_management (on whenever update_bl_management is): d_val = d_max * min(1, desired_bl / k),
        A *= sqrt(x_max / d_val), B *= sqrt(d_val / x_max)
  p_x[n,k] = B |x[n,k]|, p_d[n,m] = A |d[n,m]| (>= 1: always fires).  Without saturation
  (p <= 1) E[coincidences of device (m, k)] = BL p_x p_d = lr |x d| / dw: the SGD update.
Streams: bit b < BL of x[n,k] fires iff uniform_at(key, X | ((n K + k) 64 + b)) < p_x[n,k], of
d[n,m] iff uniform_at(key, D | ((n M + m) 64 + b)) < p_d[n,m] (X, D: stream ids in bits 60-61);
A stream is one uint64 word; as aihwkit's sparse bit-line maker, the kernel lists per (sample, bit)
the firing x and d streams and visits exactly the coincidences, bit after bit, so a device's c =
popcount(x_bits & d_bits) pulses of a sample come in bit order; pulse j (its ordinal, j =
popcount(x_bits & d_bits & (2^b - 1)) at bit b) has its own noise.
Pair (symmetric mapping, tiles/update.py Pulsed policy): a coincidence fires one pulse at G+ in
direction s = -sign(x) sign(d) and one at G- in direction -s, so the pair's granularity is two
device steps and `d` is the error in per-device conductance units (the caller halves).  Pulse j of
sample n at (m, k), polarity q (0: G+, 1: G-): g <- float32(clip(g + dir step_dir (1 + std xi),
lo, hi)), xi = normal number (2 + q) << 60 | (((n M + m) K + k) 64 + j) of kernels/normal.py
(counter-based ziggurat; aihwkit's CPU RNG instead picks from a fixed list of 32768 normals and
draws 15-bit uniforms, rng.h:19-31,104-116).  The result depends only on (key, inputs).

Three levels: `management` (numpy, per sample) and `pulse_train_update` validate and allocate;
`_stream_kernel`, `_count_kernel`, `_list_kernel`, `_apply_kernel` loop (parallel over samples, or
over blocks of output rows m: the result does not depend on the blocking or the thread count);
`popcount`, `_pulse` (and normal.normal_at) are inlined.  Slow twin: tests/naive.py
naive_pulse_train_update.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from hw_models.kernels._jit import njit_fixed, njit_fixed_parallel, njit_inline, prange
from hw_models.kernels.normal import FI, KI, WI, normal_at
from hw_models.kernels.pulsed import _at, _clip
from hw_models.kernels.quantize import uniform_at

F32 = np.float32
MAX_BL = 64  # one uint64 word per stream
STREAM_SHIFT = np.uint64(60)  # stream id in the top bits of a draw's index
X_STREAM, D_STREAM, NOISE_PLUS, NOISE_MINUS = (np.uint64(s) for s in range(4))
MAX_INDEX = 1 << 60
BLOCK_BYTES = 256 * 1024  # G+ and G- of a block of output rows: a fraction of an L2 cache
WORD = np.uint64(64)
ONE = np.uint64(1)
_M1 = np.uint64(0x5555555555555555)
_M2 = np.uint64(0x3333333333333333)
_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)
_S1, _S2, _S4, _S8, _S16, _S32 = (np.uint64(s) for s in (1, 2, 4, 8, 16, 32))
_LOW7 = np.uint64(0x7F)


# ---- scalar helpers ---------------------------------------------------------------------------
@njit_inline
def popcount(v):
    """Number of set bits of a uint64 (SWAR, shifts and adds only)."""
    v = v - ((v >> _S1) & _M1)
    v = (v & _M2) + ((v >> _S2) & _M2)
    v = (v + (v >> _S4)) & _M4
    v = v + (v >> _S8)
    v = v + (v >> _S16)
    v = v + (v >> _S32)
    return np.int64(v & _LOW7)


@njit_inline
def _pulse(g, direction, step, lo, hi, std, key, index, ki, wi, fi):
    """One pulse of `step` in `direction` (+1 / -1) on one device with its cycle-to-cycle error
    (normal number `index`), clipped to [lo, hi] and stored as float32."""
    e = 1.0
    if std > 0.0:
        e = 1.0 + std * normal_at(key, index, ki, wi, fi)
    return np.float32(_clip(np.float64(g) + direction * step * e, lo, hi))


# ---- loop kernels -----------------------------------------------------------------------------
@njit_fixed_parallel
def _stream_kernel(v, scale, bl, key, stream, out):
    """out[n, j] = the BL[n]-bit stream of v[n, j]: bit b set iff uniform_at(key, stream << 60 |
    ((n L + j) 64 + b)) < |v[n, j]| scale[n]."""
    n_rows, width = v.shape
    for n in prange(n_rows):
        s = scale[n]
        nb = bl[n]
        for j in range(width):
            p = abs(np.float64(v[n, j])) * s
            word = np.uint64(0)
            if p > 0.0:
                base = (stream << STREAM_SHIFT) | (np.uint64(n * width + j) * WORD)
                for b in range(nb):
                    if uniform_at(key, base + np.uint64(b)) < p:
                        word |= ONE << np.uint64(b)
            out[n, j] = word


@njit_fixed_parallel
def _count_kernel(bits, n_bits, counts):
    """counts[n, b] = number of streams of sample n whose bit b fires."""
    for n in prange(bits.shape[0]):
        for b in range(n_bits):
            counts[n, b] = 0
        for j in range(bits.shape[1]):
            v = bits[n, j]
            if v != np.uint64(0):
                for b in range(n_bits):
                    if (v >> np.uint64(b)) & ONE:
                        counts[n, b] += 1


@njit_fixed_parallel
def _list_kernel(bits, v, n_bits, offsets, signed, out):
    """For every (n, b), the streams j whose bit b fires, ascending, in out[offsets[n n_bits + b]:
    offsets[n n_bits + b + 1]]: j, or with signed = True +-(j + 1) with the sign of v[n, j]."""
    for n in prange(bits.shape[0]):
        cursor = offsets[n * n_bits:(n + 1) * n_bits].copy()
        for j in range(bits.shape[1]):
            w = bits[n, j]
            if w == np.uint64(0):
                continue
            item = j
            if signed:
                item = j + 1 if v[n, j] > 0.0 else -(j + 1)
            for b in range(n_bits):
                if (w >> np.uint64(b)) & ONE:
                    out[cursor[b]] = item
                    cursor[b] += 1


@njit_fixed_parallel
def _apply_kernel(bl, n_bits, x_off, x_list, xbits, d_off, d_list, dbits, d, gp, gm, up_p, down_p, hi_p,
                  up_m, down_m, hi_m, lo, std, key, ki, wi, fi, rows_per_block):
    """Every coincidence (m, k) of every bit b of every sample n, as one pulse on each device of
    the pair (sample after sample, bit after bit); returns their number.  Parallel over blocks of
    output rows (a block's conductances stay in cache); the pulse's ordinal j among its device's
    coincidences in the sample is popcount(x_bits & d_bits & (2^b - 1))."""
    n_out, n_in = gp.shape
    n_blocks = (n_out + rows_per_block - 1) // rows_per_block
    total = 0
    for blk in prange(n_blocks):
        m_lo = blk * rows_per_block
        m_hi = min(m_lo + rows_per_block, n_out)
        for n in range(bl.shape[0]):
            for b in range(bl[n]):
                r = n * n_bits + b
                rows = d_list[d_off[r]:d_off[r + 1]]
                u_lo, u_hi = np.searchsorted(rows, m_lo), np.searchsorted(rows, m_hi)
                below = (ONE << np.uint64(b)) - ONE
                for u in range(u_lo, u_hi):
                    m = rows[u]
                    d_pos = d[n, m] > 0.0
                    d_below = dbits[n, m] & below
                    for t in range(x_off[r], x_off[r + 1]):
                        sk = x_list[t]
                        k = abs(sk) - 1
                        down = (sk > 0) == d_pos  # w -= lr x d: G+ down, G- up
                        s = -1.0 if down else 1.0
                        i = m * n_in + k
                        index = np.uint64(0)
                        if std > 0.0:  # ordinal of this pulse among the device's in sample n
                            j = popcount(d_below & xbits[n, k])
                            index = np.uint64(((n * n_out + m) * n_in + k) * 64 + j)
                        up_i, down_i = float(_at(up_p, i)), float(_at(down_p, i))  # a select, no branch
                        gp[m, k] = _pulse(gp[m, k], s, down_i if down else up_i, lo, float(_at(hi_p, i)),
                                          std, key, (NOISE_PLUS << STREAM_SHIFT) | index, ki, wi, fi)
                        up_i, down_i = float(_at(up_m, i)), float(_at(down_m, i))
                        gm[m, k] = _pulse(gm[m, k], -s, up_i if down else down_i, lo, float(_at(hi_m, i)),
                                          std, key, (NOISE_MINUS << STREAM_SHIFT) | index, ki, wi, fi)
                        total += 1
    return total


@njit_fixed
def _expected_kernel(x, d, bl, bx, ad):
    """Sum over samples and devices of BL min(p_x, 1) min(p_d, 1)."""
    total = 0.0
    for n in range(x.shape[0]):
        sx = 0.0
        for k in range(x.shape[1]):
            sx += min(abs(np.float64(x[n, k])) * bx[n], 1.0)
        sd = 0.0
        for m in range(d.shape[1]):
            sd += min(abs(np.float64(d[n, m])) * ad[n], 1.0)
        total += bl[n] * sx * sd
    return total


# ---- public functions -------------------------------------------------------------------------
def management(x, d, lr: float, dw: float, desired_bl: int, update_management: bool,
               update_bl_management: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(BL (N,) int64, B (N,) scale of |x|, A (N,) scale of |d|) per sample, float64, as aihwkit's
    calculateBlAB + performUpdateManagement (module docstring); lr >= 0, dw > 0."""
    x_max = np.abs(np.asarray(x, np.float64)).max(axis=1, initial=0.0)
    d_max = np.abs(np.asarray(d, np.float64)).max(axis=1, initial=0.0)
    n = x_max.shape[0]
    bl = np.full(n, desired_bl, np.float64)
    a = np.full(n, math.sqrt(lr / (dw * desired_bl)) if lr > 0 else 0.0)
    b = a.copy()
    live = (x_max > 0) & (d_max > 0) & (lr > 0)
    um = update_management or update_bl_management
    if um and live.any():
        xv, dv = x_max[live], d_max[live]
        k = lr * xv * dv / dw
        if update_bl_management:
            bl[live] = np.minimum(np.ceil(k), desired_bl)
            a[live] = np.sqrt(lr / (dw * bl[live]))
            b[live] = a[live]
        dv = np.where(k > desired_bl, dv * (desired_bl / k), dv)
        a[live] = a[live] * np.sqrt(xv / dv)
        b[live] = b[live] * np.sqrt(dv / xv)
    bl[~live] = 0
    return bl.astype(np.int64), b, a


def expected_coincidences(x, d, lr: float, dw: float, desired_bl: int = 31,
                          update_management: bool = True, update_bl_management: bool = True) -> float:
    """E[total coincidences] of one pulse_train_update: sum over n, m, k of BL p_x p_d with the
    probabilities capped at 1 (lr < 0 acts as |lr|)."""
    x = np.ascontiguousarray(x, F32)
    d = np.ascontiguousarray(d, F32)
    bl, bx, ad = management(x, d, abs(float(lr)), dw, desired_bl, update_management, update_bl_management)
    return float(_expected_kernel(x, d, bl, bx, ad)) if x.size and d.size else 0.0


def _bit_lists(bits: np.ndarray, v: np.ndarray, n_bits: int, signed: bool) -> tuple[np.ndarray, np.ndarray]:
    """(offsets (N n_bits + 1,) int64, items int32): per (sample, bit), the firing streams."""
    counts = np.empty((bits.shape[0], n_bits), np.int64)
    _count_kernel(bits, n_bits, counts)
    offsets = np.zeros(counts.size + 1, np.int64)
    np.cumsum(counts.reshape(-1), out=offsets[1:])
    items = np.empty(int(offsets[-1]), np.int32)
    _list_kernel(bits, v, n_bits, offsets, signed, items)
    return offsets, items


def _per_device(name: str, a, n: int) -> np.ndarray:
    v = np.ascontiguousarray(np.asarray(a, dtype=F32).reshape(-1))
    if v.shape[0] not in (1, n):
        raise ValueError(f"{name} must have 1 or {n} elements, got {v.shape[0]}")
    return v


def pulse_train_update(g_plus_uS, g_minus_uS, x, d_uS, lr: float, dw_min_uS: float, steps_plus,
                       steps_minus, gmin_uS: float, dw_min_std: float, key, desired_bl: int = 31,
                       update_management: bool = True, update_bl_management: bool = True,
                       ) -> tuple[np.ndarray, np.ndarray, int]:
    """Stochastic pulse-train update of the pairs (G+, G-) (M, K) by a batch x (N, K), d_uS (N, M):
    requested change of G+ is -lr d_uS^T x (of G- its negative), granularity dw_min_uS per device
    (the nominal step aihwkit's management uses); steps_plus / steps_minus = (step_up_uS,
    step_down_uS, gmax_uS) of each polarity, each per device (M*K) or one value; key: uint64 from
    quantize.seed_key.  lr < 0 flips the direction (aihwkit's lr_sign).  Returns (G+, G-) new
    float32 arrays and the number of coincidences (pulses per device pair)."""
    gp = np.array(g_plus_uS, dtype=F32, order="C", copy=True)
    gm = np.array(g_minus_uS, dtype=F32, order="C", copy=True)
    x = np.ascontiguousarray(x, dtype=F32)
    d = np.ascontiguousarray(d_uS, dtype=F32)
    if gp.ndim != 2 or gm.shape != gp.shape or x.ndim != 2 or d.ndim != 2:
        raise ValueError(f"need G+, G- (M, K), x (N, K), d (N, M); got {gp.shape}, {gm.shape}, "
                         f"{x.shape}, {d.shape}")
    (n_out, n_in), n = gp.shape, x.shape[0]
    if x.shape[1] != n_in or d.shape != (n, n_out):
        raise ValueError(f"x {x.shape} and d {d.shape} do not fit an array of shape {gp.shape}")
    if not (1 <= desired_bl <= MAX_BL and dw_min_uS > 0 and math.isfinite(lr)):
        raise ValueError(f"need 1 <= desired_bl <= {MAX_BL}, dw_min_uS > 0, finite lr; got "
                         f"{desired_bl}, {dw_min_uS}, {lr}")
    if not (np.isfinite(x).all() and np.isfinite(d).all()):
        raise ValueError("x and d must be finite")
    if n * n_out * n_in * MAX_BL >= MAX_INDEX:
        raise ValueError(f"batch {n} x array {gp.shape} exceeds the draw index space")
    size = gp.size
    if lr == 0 or n == 0 or size == 0:
        return gp, gm, 0
    if lr < 0:
        d, lr = -d, -lr
    bl, bx, ad = management(x, d, float(lr), float(dw_min_uS), int(desired_bl), bool(update_management),
                            bool(update_bl_management))
    key = np.uint64(key)
    per = [_per_device(nm, a, size) for nm, a in zip(("step_up+", "step_down+", "gmax+", "step_up-",
                                                      "step_down-", "gmax-"), (*steps_plus, *steps_minus))]
    rows = max(1, min(BLOCK_BYTES // (8 * n_in), -(-n_out // (4 * numba.get_num_threads()))))
    with np.errstate(over="ignore"):  # uint64 wrap-around of the hash is intended (matters without JIT)
        xbits = np.empty((n, n_in), np.uint64)
        dbits = np.empty((n, n_out), np.uint64)
        _stream_kernel(x, bx, bl, key, X_STREAM, xbits)
        _stream_kernel(d, ad, bl, key, D_STREAM, dbits)
        n_bits = int(bl.max())
        x_off, x_list = _bit_lists(xbits, x, n_bits, True)
        d_off, d_list = _bit_lists(dbits, d, n_bits, False)
        total = _apply_kernel(bl, n_bits, x_off, x_list, xbits, d_off, d_list, dbits, d, gp, gm, *per,
                              float(F32(gmin_uS)), float(dw_min_std), key, KI, WI, FI, rows)
    return gp, gm, int(total)
