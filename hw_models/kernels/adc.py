"""Fused ADC kernel: additive output noise, then a signed symmetric `bits`-bit conversion over
[-range_, range_] (round to nearest, saturating), counting saturated outputs.

Arithmetic (mirrored op for op by tests/naive.py: naive_adc_convert, bit-exact):
  y = partial + float32(sigma) * noise          in float32 (no fastmath, so no FMA contraction)
  lsb = range_ / qmax, qmax = 2**(bits-1) - 1   in float64
  level = clip(rint(float64(y) / lsb), -qmax, qmax)   (IEEE round half to even)
  out = float32(level * lsb)
An output counts as saturated when |y| >= range_ (at or beyond full scale: the converter cannot tell
it from a larger value; aihwkit's bound-management convention).  bits = 0 is an ideal ADC: only the
noise is added and nothing saturates.  NaN stays NaN and is not counted.
"""

from __future__ import annotations

import numpy as np

from hw_models.kernels._jit import njit_fixed_parallel, prange


def adc_convert(partial, noise, sigma: float, bits: int, range_: float,
                return_row_counts: bool = False):
    """partial: float32 (T, N, M) or (N, M) partial sums; noise: standard-normal draws of the same
    shape or None (no noise).  Returns (float32 outputs on the ADC grid, number of saturated
    outputs); with return_row_counts also the saturated count per row n (N,) int64, summed over
    tiles and columns (for bound management)."""
    partial = np.asarray(partial)
    if partial.dtype != np.float32:
        raise TypeError(f"partial must be float32, got dtype {partial.dtype}")
    if partial.ndim not in (2, 3):
        raise ValueError(f"partial must be (T, N, M) or (N, M), got shape {partial.shape}")
    if noise is not None:
        noise = np.asarray(noise)
        if noise.dtype != np.float32 or noise.shape != partial.shape:
            raise ValueError(f"noise must be float32 of shape {partial.shape}, "
                             f"got {noise.dtype} {noise.shape}")
    sigma, range_ = float(sigma), float(range_)
    if not (np.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"sigma must be finite and >= 0, got {sigma}")
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or bits not in (0, *range(2, 17)):
        raise ValueError(f"bits must be 0 (ideal) or 2..16, got {bits!r}")
    if bits and not (np.isfinite(range_) and range_ > 0):
        raise ValueError(f"range_ must be finite and > 0, got {range_}")
    p3 = np.ascontiguousarray(partial if partial.ndim == 3 else partial[None])
    has_noise = noise is not None and sigma != 0.0
    n3 = np.ascontiguousarray(noise if partial.ndim == 3 else noise[None]) if has_noise else p3
    qmax = 2 ** (int(bits) - 1) - 1 if bits else 0
    lsb = range_ / qmax if bits else 1.0
    out = np.empty_like(p3)
    row_sat = np.zeros(p3.shape[1], dtype=np.int64)
    adc_kernel(p3, n3, has_noise, np.float32(sigma), qmax, lsb, range_, out, row_sat)
    out = out.reshape(partial.shape)
    n_sat = int(row_sat.sum())
    return (out, n_sat, row_sat) if return_row_counts else (out, n_sat)


@njit_fixed_parallel
def adc_kernel(partial, noise, has_noise, sigma, qmax, lsb, range_, out, row_sat):
    """Parallel over rows n; writes out (T, N, M) and row_sat[n] (count of |y| >= range_)."""
    n_tiles, n_rows, m_cols = partial.shape
    qm = np.float64(qmax)
    for n in prange(n_rows):
        count = 0
        for t in range(n_tiles):
            for m in range(m_cols):
                y = partial[t, n, m]
                if has_noise:
                    y = y + sigma * noise[t, n, m]
                if qmax > 0:
                    if abs(np.float64(y)) >= range_:
                        count += 1
                    level = np.rint(np.float64(y) / lsb)
                    if level > qm:
                        level = qm
                    elif level < -qm:
                        level = -qm
                    out[t, n, m] = np.float32(level * lsb)
                else:
                    out[t, n, m] = y
        row_sat[n] = count
