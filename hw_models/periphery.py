"""Periphery of a crossbar: DAC (input quantization, bound management), ADC (output quantization,
saturation, additive output noise) and global drift compensation.

Units follow aihwkit's normalized convention (IOParameters, src/aihwkit/simulator/parameters/io.py):
inputs are scaled into [-1, 1] by the DAC, weights into [-1, 1] by g/gmax, so one tile's output is
a sum of at most `rows` products; `out_bound` and `out_noise` are in those units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hw_models.kernels.adc import adc_convert
from common.coerce import check


@dataclass(frozen=True)
class PeripheryConfig:
    dac_bits: int = 0  # input resolution incl. sign; 0 = ideal (no input quantization)
    input_scaling: str = "absmax"  # "absmax": each input vector scaled by its max |x| (noise management)
    adc_bits: int = 0  # output resolution incl. sign over [-out_bound, out_bound]; 0 = ideal
    out_bound: float = 12.0  # ADC full scale, normalized units (aihwkit default 12)
    out_noise: float = 0.0  # std of additive Gaussian output noise per tile read, normalized units
    bound_management: bool = False  # on ADC saturation, halve that input vector and read again (<= 3 times)
    drift_compensation: bool = False  # rescale outputs by the readout of the programmed state / the readout now

    def __post_init__(self) -> None:
        check(self.dac_bits == 0 or 2 <= self.dac_bits <= 16, "hardware.dac_bits", "0 (ideal) or 2..16",
              self.dac_bits)
        check(self.input_scaling in ("absmax", "none"), "hardware.input_scaling", "'absmax' or 'none'",
              self.input_scaling)
        check(self.adc_bits == 0 or 2 <= self.adc_bits <= 16, "hardware.adc_bits", "0 (ideal) or 2..16",
              self.adc_bits)
        check(self.out_bound > 0, "hardware.out_bound", "> 0", self.out_bound)
        check(self.out_noise >= 0, "hardware.out_noise", ">= 0", self.out_noise)


def dac(x: np.ndarray, cfg: PeripheryConfig) -> tuple[np.ndarray, np.ndarray]:
    """(N, K) float inputs -> (normalized inputs in [-1, 1] on the DAC grid, per-row scale (N, 1))."""
    if cfg.input_scaling == "absmax":
        scale = np.abs(x).max(axis=1, keepdims=True) if x.size else np.ones((x.shape[0], 1), np.float32)
        scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
        xn = x / scale
    else:
        scale = np.ones((x.shape[0], 1), np.float32)
        xn = np.clip(x, -1.0, 1.0)
    if cfg.dac_bits:
        q = float(2 ** (cfg.dac_bits - 1) - 1)
        xn = np.rint(xn * q) / q
    return xn.astype(np.float32, copy=False), scale


def adc(y: np.ndarray, cfg: PeripheryConfig, noise: np.ndarray | None,
        sigma: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One tile's partial sums (N, M) -> (sigma * noise added, digitized to adc_bits over
    [-out_bound, out_bound] with saturation; per-row boolean 'some output saturated').  sigma is
    the output noise cfg.out_noise unless given (1.0 for noise already scaled per output)."""
    sigma = cfg.out_noise if sigma is None else sigma
    out, _, row_sat = adc_convert(np.ascontiguousarray(y, dtype=np.float32), noise, sigma,
                                  cfg.adc_bits, cfg.out_bound, return_row_counts=True)
    return out, row_sat > 0


def compensation_factor(reference: float, now: float) -> float:
    """Global drift compensation factor alpha = reference readout (of the devices as programmed) /
    readout now (aihwkit BaseDriftCompensation.apply, compensation/base.py:56-59; its readouts are
    clamped at >= 1e-4, drift.py:30); outputs are multiplied by alpha."""
    return max(reference, 1e-4) / max(now, 1e-4)
