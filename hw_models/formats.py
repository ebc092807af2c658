"""Fixed-point formats (signed symmetric integers), their scales, quantization to codes with
nearest or stochastic rounding and saturation, dequantization, and integer accumulation with an
accumulator-overflow check.

A `bits`-bit code q lies in [-qmax, qmax], qmax = 2**(bits-1) - 1 (symmetric: -2**(bits-1) is
never produced); the value it stands for is q * scale.
  nearest:    q = clip(rint(x / scale), -qmax, qmax)   ties to even (IEEE, np.rint)
  stochastic: q = clip(floor(x / scale + u), -qmax, qmax), u in [0, 1) from a counter-based
              splitmix64 hash of (seed, C-order flat index of x): E[q] = x / scale inside the range,
              and the codes depend only on seed and index (not on threads or chunking).
Division is done in float64 (see hw_models/kernels/quantize.py for the bit-exactness argument).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hw_models.kernels import quantize as qk
from hw_models.kernels.intmvm import checked_int_matmul, int_matmul, product_bound
from common.errors import ConfigError

ROUNDINGS = ("nearest", "stochastic")


@dataclass(frozen=True)
class FixedPointFormat:
    """A signed symmetric integer format.  `field_name` / `rounding_field` are the config fields
    named in a ConfigError (e.g. FixedPointFormat(0, field_name="hardware.weight_bits"))."""

    bits: int
    rounding: str = "nearest"
    per_column: bool = False  # one scale per output column instead of one per tensor
    field_name: str = field(default="format.bits", compare=False, repr=False)
    rounding_field: str = field(default="format.rounding", compare=False, repr=False)

    def __post_init__(self) -> None:
        b = self.bits
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or not 2 <= b <= 16:
            raise ConfigError(f"{self.field_name} must be 2..16, got {b!r}")
        if self.rounding not in ROUNDINGS:
            raise ConfigError(f"{self.rounding_field} must be 'nearest' or 'stochastic', "
                              f"got {self.rounding!r}")

    @property
    def qmax(self) -> int:
        return 2 ** (int(self.bits) - 1) - 1

    @property
    def dtype(self) -> np.dtype:
        """Storage type of the codes: int8 for bits <= 8, int16 otherwise."""
        return np.dtype(np.int8) if self.bits <= 8 else np.dtype(np.int16)


def _output_axis(x: np.ndarray, axis: int | None) -> int:
    if x.ndim == 0:
        raise ValueError("per-column scaling needs an array with at least one axis")
    ax = -1 if axis is None else int(axis)
    if not -x.ndim <= ax < x.ndim:
        raise ValueError(f"axis {axis} out of range for shape {x.shape}")
    return ax % x.ndim


def _float_input(x) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind not in "fiu":
        raise TypeError(f"expected a real numeric array, got dtype {x.dtype}")
    return x if x.dtype in (np.float32, np.float64) else x.astype(np.float64)


def scale_for(x, fmt: FixedPointFormat, axis: int | None = None) -> np.ndarray:
    """float32 scale(s) = absmax / qmax (absmax 0 -> 1): a 0-d array per tensor, or one per index
    of the output axis `axis` (default: last) when fmt.per_column."""
    x = _float_input(x)
    if fmt.per_column:
        ax = _output_axis(x, axis)
        others = tuple(i for i in range(x.ndim) if i != ax)
        absmax = np.max(np.abs(x), axis=others, initial=0.0)
    else:
        absmax = np.max(np.abs(x), initial=0.0)
    absmax = np.asarray(absmax, dtype=np.float32)
    if not np.all(np.isfinite(absmax)):
        raise ValueError("cannot choose a scale: x contains inf or NaN")
    scale = absmax / np.float32(fmt.qmax)
    return np.where(absmax > 0, scale, np.float32(1.0)).astype(np.float32)


def quantize(x, scale, fmt: FixedPointFormat, seed=None, axis: int | None = None,
             return_saturated: bool = False):
    """Codes of x (dtype fmt.dtype, shape of x), saturating at +-qmax.  `scale`: a scalar, or with
    fmt.per_column a 1-D array with one entry per index of `axis` (default: last); it is used as
    float32, as scale_for returns it.  Stochastic rounding needs `seed` (int, or np.random.Generator
    to draw one from).  With return_saturated also returns the number of elements clipped."""
    x = _float_input(x)
    s = np.ascontiguousarray(scale, dtype=np.float32)
    if fmt.per_column:
        ax = _output_axis(x, axis)
        if s.shape != (x.shape[ax],):
            raise ValueError(f"per-column scale must have shape ({x.shape[ax]},), got {s.shape}")
        width = int(np.prod(x.shape[ax + 1:], dtype=np.int64))
    else:
        if s.size != 1:
            raise ValueError(f"per-tensor scale must be a scalar, got shape {s.shape}")
        s = s.reshape(1)
        width = x.shape[-1] if x.ndim else 1
    if not (np.all(np.isfinite(s)) and np.all(s > 0)):
        raise ValueError("scale must be finite and > 0")
    out = np.empty(x.shape, dtype=fmt.dtype)
    if x.size == 0:
        return (out, 0) if return_saturated else out
    x2 = np.ascontiguousarray(x).reshape(-1, width)
    out2 = out.reshape(x2.shape)
    if fmt.rounding == "nearest":
        n_sat, n_nan = qk.quantize_nearest_kernel(x2, s, fmt.qmax, out2)
    else:
        if seed is None:
            raise ValueError("stochastic rounding needs a seed (int or np.random.Generator)")
        key = qk.seed_key(seed)
        with np.errstate(over="ignore"):  # uint64 wrap-around is intended (matters without JIT)
            n_sat, n_nan = qk.quantize_stochastic_kernel(x2, s, fmt.qmax, key, out2)
    if n_nan:
        raise ValueError(f"cannot quantize: x contains {n_nan} NaN values")
    return (out, int(n_sat)) if return_saturated else out


def dequantize(q, scale, axis: int | None = None) -> np.ndarray:
    """float32 values q * scale; a 1-D scale applies along `axis` (default: last)."""
    q = np.asarray(q)
    s = np.asarray(scale, dtype=np.float32)
    if s.ndim == 0:
        return q.astype(np.float32) * s
    ax = _output_axis(q, axis)
    if s.shape != (q.shape[ax],):
        raise ValueError(f"per-column scale must have shape ({q.shape[ax]},), got {s.shape}")
    shape = [1] * q.ndim
    shape[ax] = -1
    return q.astype(np.float32) * s.reshape(shape)


def accumulate_int(a_codes, b_codes, acc_bits: int = 32,
                   raise_on_overflow: bool = True) -> tuple[np.ndarray, int]:
    """Exact a (N, K) @ b (K, M) of codes as int64, modelling an `acc_bits` signed accumulator that
    sums k = 0..K-1 in order.  Returns (result, n_overflow): the number of outputs whose RUNNING
    partial sum left [-2**(acc_bits-1), 2**(acc_bits-1) - 1] (the result itself stays the exact
    sum).  When K * max|a| * max|b| < 2**(acc_bits-1) no partial sum can leave the range and the
    fast int_matmul runs; otherwise an exact running-sum kernel decides.  Raises OverflowError when
    n_overflow > 0 and raise_on_overflow."""
    a, b = np.asarray(a_codes), np.asarray(b_codes)
    if isinstance(acc_bits, bool) or not isinstance(acc_bits, (int, np.integer)) or not 2 <= acc_bits <= 63:
        raise ValueError(f"acc_bits must be an int in 2..63, got {acc_bits!r}")
    shapes_ok = a.ndim == 2 and b.ndim == 2 and a.shape[1] == b.shape[0]  # else int_matmul says why
    if shapes_ok and product_bound(a, b) < 2 ** (int(acc_bits) - 1):
        return int_matmul(a, b), 0
    out, n_overflow = checked_int_matmul(a, b, int(acc_bits))
    if n_overflow and raise_on_overflow:
        raise OverflowError(f"{n_overflow} of {out.size} outputs overflowed a {acc_bits}-bit accumulator "
                            f"(running partial sums); widen acc_bits or narrow the codes")
    return out, n_overflow
