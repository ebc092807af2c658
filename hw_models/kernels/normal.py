"""Counter-based standard normals and uniforms: the simulator's random numbers, drawn on all cores.

Normal number i of a stream with key `key` is Marsaglia & Tsang's ziggurat ("The Ziggurat Method
for Generating Random Variables", J. Stat. Softw. 5(8), 2000) with 256 layers and 52-bit
mantissas, the variant numpy's Generator.standard_normal uses (numpy/random/src/distributions/
distributions.c, random_standard_normal: layer index from the low 8 bits, sign from the next bit,
52 bits of magnitude; tail by Marsaglia's exponential rejection), fed by splitmix64 (Steele, Lea &
Flood 2014; hw_models/kernels/quantize.py):

  r_0 = splitmix64_mix(key + (i + 1) * GAMMA)          (= the raw draw behind uniform_at(key, i))
  r_j = splitmix64_mix(r_0 + j * GAMMA), j = 1, 2, ...  (the element's own stream, for rejections)

so draw i depends only on (key, i): any split of the work over threads gives the same numbers, and
a kernel can draw its noise where it uses it.  About 98.8 % of draws take the fast path (one hash,
one table compare, one multiply); the rest take one or a few more hashes and one exp or two logs.

The tables are computed at import by Marsaglia & Tsang's recursion (their zigset, generalised to
256 layers and 2**52) from the tail start R and the common layer area V below (numpy's constants);
tests/naive.py holds a pure-Python twin of the draw (bit-exact) and tests/test_normal_kernel.py
checks the distribution (moments, Kolmogorov-Smirnov, tail frequency) over millions of draws.

Uniforms: uniform float32 number i = (splitmix64_mix(key + (i + 1) * GAMMA) >> 40) * 2**-24, in
[0, 1) on the float32 grid of 2**-24 (exact in float32).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from hw_models.kernels._jit import njit_fixed_parallel, njit_inline, prange
from hw_models.kernels.quantize import GAMMA, ONE, seed_key, splitmix64_mix

ZIG_LAYERS = 256
ZIG_R = 3.6541528853610088  # start of the tail (the base layer's right edge)
ZIG_V = 0.00492867323399  # area of every layer: R f(R) + the tail's area, f(x) = exp(-x^2 / 2)
ZIG_M = 2.0 ** 52
MASK_8 = np.uint64(0xFF)
MASK_52 = np.uint64(0x000FFFFFFFFFFFFF)
SHIFT_8 = np.uint64(8)
SHIFT_40 = np.uint64(40)
SHIFT_11 = np.uint64(11)
TWO_POW_MINUS_53 = 2.0 ** -53
TWO_POW_MINUS_24 = np.float32(2.0 ** -24)


def ziggurat_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ki uint64, wi float64, fi float64), 256 entries each: layer i accepts a magnitude m < ki[i]
    at once as x = m wi[i]; fi[i] = f(x_i) at the layer's right edge x_i = wi[i] 2**52.
    Marsaglia & Tsang's zigset: x_255 = R, x_i from V = x_{i+1} (f(x_i) - f(x_{i+1}))."""
    ki = np.zeros(ZIG_LAYERS, np.uint64)
    wi = np.zeros(ZIG_LAYERS)
    fi = np.zeros(ZIG_LAYERS)
    dn = tn = ZIG_R
    q = ZIG_V / math.exp(-0.5 * dn * dn)
    ki[0] = np.uint64(int((dn / q) * ZIG_M))
    wi[0], wi[-1] = q / ZIG_M, dn / ZIG_M
    fi[0], fi[-1] = 1.0, math.exp(-0.5 * dn * dn)
    for i in range(ZIG_LAYERS - 2, 0, -1):
        dn = math.sqrt(-2.0 * math.log(ZIG_V / dn + math.exp(-0.5 * dn * dn)))
        ki[i + 1] = np.uint64(int((dn / tn) * ZIG_M))
        tn = dn
        fi[i] = math.exp(-0.5 * dn * dn)
        wi[i] = dn / ZIG_M
    return ki, wi, fi


KI, WI, FI = ziggurat_tables()


class Stream(NamedTuple):
    """Draws given by their stream rather than as an array: kernels that take one draw number i
    where they use it (the same number as element i of fill_normal / fill_uniform(key, ...))."""

    key: np.uint64


@njit_inline
def _u53(r):
    """A uint64 draw -> float64 in [0, 1) with 53 random bits."""
    return np.float64(r >> SHIFT_11) * TWO_POW_MINUS_53


@njit_inline
def normal_at(key, index, ki, wi, fi):
    """Standard normal number `index` of the stream `key` (float64): the ziggurat above."""
    r0 = splitmix64_mix(key + (np.uint64(index) + ONE) * GAMMA)
    r, j = r0, np.uint64(0)
    while True:
        layer = np.intp(r & MASK_8)
        sign = (r >> SHIFT_8) & ONE
        rabs = (r >> np.uint64(9)) & MASK_52
        x = np.float64(rabs) * wi[layer]
        if sign:
            x = -x
        if rabs < ki[layer]:
            return x
        if layer == 0:  # the tail beyond R: exponential rejection (Marsaglia 1964)
            while True:
                j += ONE
                xx = -math.log1p(-_u53(splitmix64_mix(r0 + j * GAMMA))) / ZIG_R
                j += ONE
                yy = -math.log1p(-_u53(splitmix64_mix(r0 + j * GAMMA)))
                if yy + yy > xx * xx:
                    return -(ZIG_R + xx) if sign else ZIG_R + xx
        j += ONE
        if (fi[layer - 1] - fi[layer]) * _u53(splitmix64_mix(r0 + j * GAMMA)) + fi[layer] < math.exp(-0.5 * x * x):
            return x
        j += ONE
        r = splitmix64_mix(r0 + j * GAMMA)


@njit_inline
def uniform32_at(key, index):
    """Uniform number `index` of the stream `key`: float32 in [0, 1) on the grid of 2**-24."""
    r = splitmix64_mix(key + (np.uint64(index) + ONE) * GAMMA)
    return np.float32(r >> SHIFT_40) * TWO_POW_MINUS_24


@njit_fixed_parallel
def _normal_kernel(key, out, ki, wi, fi):
    for i in prange(out.shape[0]):
        out[i] = np.float32(normal_at(key, i, ki, wi, fi))


@njit_fixed_parallel
def _uniform_kernel(key, out):
    for i in prange(out.shape[0]):
        out[i] = uniform32_at(key, i)


def fill_normal(key, out: np.ndarray) -> np.ndarray:
    """Write standard normals 0..n-1 of stream `key` (an int, np.uint64 or np.random.Generator:
    quantize.seed_key) into the C-contiguous float32 array `out`, rounded once from float64;
    returns out."""
    if out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError("fill_normal needs a C-contiguous float32 array")
    with np.errstate(over="ignore"):  # uint64 wrap-around of the hash is intended (matters without JIT)
        _normal_kernel(_key(key), out.reshape(-1), KI, WI, FI)
    return out


def fill_uniform(key, out: np.ndarray) -> np.ndarray:
    """Write float32 uniforms 0..n-1 of stream `key` (as fill_normal) into `out`; returns out."""
    if out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError("fill_uniform needs a C-contiguous float32 array")
    with np.errstate(over="ignore"):
        _uniform_kernel(_key(key), out.reshape(-1))
    return out


def _key(key) -> np.uint64:
    """A Generator gives its next uint64 through seed_key; an int is used as the key itself."""
    if isinstance(key, np.random.Generator):
        return seed_key(key)
    if isinstance(key, bool) or not isinstance(key, (int, np.integer)):
        raise TypeError(f"key must be an int or np.random.Generator, got {type(key).__name__}")
    return np.uint64(int(key) & ((1 << 64) - 1))
