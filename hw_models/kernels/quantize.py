"""Numba kernels for quantizing floats to signed symmetric integer codes (round to nearest or
stochastic rounding, saturating), and the counter-based splitmix64 hash stochastic rounding uses.

Inputs come as a (lines, width) C-contiguous view of the caller's array; line `l` uses
`scale[l % len(scale)]` (one scale: per tensor; one per output column: the public level chooses the
view so that a line never crosses a column).  Element (l, j) has flat index l * width + j, the
C-order index in the caller's array, so the stochastic result depends only on (seed, index).

Bit-exactness with the numpy twins (tests/naive.py): the kernels compute v = float64(x) /
float64(scale) (one correctly rounded division, no reciprocal), then np.rint (IEEE round half to
even) or np.floor(v + u) with u = (splitmix64 >> 11) * 2**-53 in float64, clip to [-qmax, qmax] in
float64, then store.  No fastmath, so LLVM may not reassociate or fuse; the twins do the same ops.
NaN inputs are stored as 0 and counted (the public level raises).  Stochastic rounding is unbiased
up to the float64 rounding of v + u (a bias below 2**-37 LSB for |v| < 2**15).
"""

from __future__ import annotations

import numpy as np

from hw_models.kernels._jit import njit_fixed_parallel, njit_inline, prange

# splitmix64 (Steele, Lea & Flood 2014; Vigna's public-domain C reference, splitmix64.c)
GAMMA = np.uint64(0x9E3779B97F4A7C15)  # golden-ratio increment of the splitmix64 state
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)
SHIFT_30 = np.uint64(30)
SHIFT_27 = np.uint64(27)
SHIFT_31 = np.uint64(31)
SHIFT_TO_53_BITS = np.uint64(11)  # keep the top 53 bits: exactly representable in float64
ONE = np.uint64(1)
TWO_POW_MINUS_53 = 2.0 ** -53
MASK64 = (1 << 64) - 1


@njit_inline
def splitmix64_mix(z):
    """The splitmix64 output function (a bijection of uint64)."""
    z = (z ^ (z >> SHIFT_30)) * MIX1
    z = (z ^ (z >> SHIFT_27)) * MIX2
    return z ^ (z >> SHIFT_31)


@njit_inline
def uniform_at(key, index):
    """Draw number `index` (0-based) of a splitmix64 generator whose state starts at `key`, as a
    float64 in [0, 1) with 53 random bits.  Depends only on (key, index)."""
    z = splitmix64_mix(key + (np.uint64(index) + ONE) * GAMMA)
    return np.float64(z >> SHIFT_TO_53_BITS) * TWO_POW_MINUS_53


def seed_key(seed) -> np.uint64:
    """Stream key of a seed: an int (taken mod 2**64) or a np.random.Generator (one uint64 drawn
    from it).  The key is the first splitmix64 output of state `seed`, so that nearby seeds give
    unrelated streams."""
    if isinstance(seed, np.random.Generator):
        seed = int(seed.integers(0, 2 ** 64, dtype=np.uint64))
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int or np.random.Generator, got {type(seed).__name__}")
    z = (int(seed) + int(GAMMA)) & MASK64
    z = ((z ^ (z >> 30)) * int(MIX1)) & MASK64
    z = ((z ^ (z >> 27)) * int(MIX2)) & MASK64
    return np.uint64(z ^ (z >> 31))


@njit_inline
def saturate(r, qm):
    """(value clipped to [-qm, qm], flag): flag 0 in range, 1 saturated, 2 NaN (value 0)."""
    if r != r:
        return 0.0, 2
    if r > qm:
        return qm, 1
    if r < -qm:
        return -qm, 1
    return r, 0


@njit_fixed_parallel
def quantize_nearest_kernel(x, scale, qmax, out):
    """out[l, j] = clip(rint(x[l, j] / scale[l % C]), -qmax, qmax); returns (n_saturated, n_nan)."""
    lines, width = x.shape
    n_scales = scale.shape[0]
    qm = np.float64(qmax)
    n_sat = 0
    n_nan = 0
    for line in prange(lines):
        s = np.float64(scale[line % n_scales])
        for j in range(width):
            r, flag = saturate(np.rint(np.float64(x[line, j]) / s), qm)
            n_sat += flag == 1
            n_nan += flag == 2
            out[line, j] = r
    return n_sat, n_nan


@njit_fixed_parallel
def quantize_stochastic_kernel(x, scale, qmax, key, out):
    """out[l, j] = clip(floor(x[l, j] / scale[l % C] + u), -qmax, qmax), u = uniform_at(key,
    l * width + j); returns (n_saturated, n_nan)."""
    lines, width = x.shape
    n_scales = scale.shape[0]
    qm = np.float64(qmax)
    n_sat = 0
    n_nan = 0
    for line in prange(lines):
        s = np.float64(scale[line % n_scales])
        base = line * width
        for j in range(width):
            r, flag = saturate(np.floor(np.float64(x[line, j]) / s + uniform_at(key, base + j)), qm)
            n_sat += flag == 1
            n_nan += flag == 2
            out[line, j] = r
    return n_sat, n_nan
