"""The periphery chain of one read of an analog array: DAC (noise management, input quantization),
the analog MVM per physical tile with its read and output noise, ADC with saturation and bound
management, the digital sum of the tiles; and the drift-compensation readout through the same
periphery (hw_models/periphery.py holds the converters)."""

from __future__ import annotations

import numpy as np

from hw_models.blas import matmul
from hw_models.periphery import PeripheryConfig, adc, dac
from hw_models.rng import NormalSource


class PeripheryChain:
    """Reads of an array through `periphery`; every noise draw comes from `normals` (the array's
    stream, so a seed fixes every read)."""

    def __init__(self, periphery: PeripheryConfig, normals: NormalSource) -> None:
        self.p = periphery
        self.normals = normals

    def mvm(self, x: np.ndarray, g: np.ndarray, var: np.ndarray | None, tile_rows: int) -> np.ndarray:
        """x (N, K) through normalized conductances g (M, K) (per-read variance var (M, K) or None):
        y = x g^T in input units, digitized per tile of tile_rows inputs."""
        p = self.p
        x = np.ascontiguousarray(x, dtype=np.float32)
        xn, scale = dac(x, p)
        ideal_tiles = var is None and p.out_noise == 0 and p.adc_bits == 0
        if ideal_tiles:  # per-tile digitization is the identity: one GEMM, same sum
            return matmul(xn, g.T) * scale
        out = np.zeros((x.shape[0], g.shape[0]), np.float32)
        for r0 in range(0, g.shape[1], tile_rows):
            out += self._tile_read(xn[:, r0:r0 + tile_rows], g[:, r0:r0 + tile_rows],
                                   None if var is None else var[:, r0:r0 + tile_rows])
        return out * scale

    def _tile_read(self, xn: np.ndarray, g: np.ndarray, var: np.ndarray | None) -> np.ndarray:
        """One tile: analog MVM, noise, ADC; with bound management a saturated input vector is
        halved and read again (<= 3 times).  Independent per-device Gaussian reads sum to
        N(0, sum_k x_k^2 sigma_k^2) at each output, and the additive output noise N(0, out_noise^2)
        is independent of them, so both are drawn as one normal per output of variance
        sum_k x_k^2 sigma_k^2 + out_noise^2 (their exact joint distribution)."""
        p = self.p
        factor, rows, result = None, None, None
        for attempt in range(4):
            xs = xn if rows is None else xn[rows] * factor[rows]
            y = matmul(xs, g.T)
            noise, sigma = self._noise(None if var is None else matmul(xs * xs, var.T), y.shape)
            y, saturated = adc(y, p, noise, sigma)
            if rows is None:
                result = y
            else:
                result[rows] = y / factor[rows]
            if not (p.bound_management and p.adc_bits and saturated.any()) or attempt == 3:
                break
            if rows is None:
                factor = np.ones((xn.shape[0], 1), np.float32)
                rows = np.arange(xn.shape[0])
            rows = rows[saturated]
            factor[rows] *= np.float32(0.5)
        return result

    def _noise(self, var_out: np.ndarray | None, shape: tuple[int, int]) -> tuple[np.ndarray | None, float]:
        """(noise, sigma) for the ADC, which adds sigma * noise: read noise of per-output variance
        var_out (normalized units, updated in place; None = none) plus the output noise, as one
        draw per output (see _tile_read), or the output noise alone."""
        out_noise = self.p.out_noise
        if var_out is None:
            return (self.normals.standard_normal(shape) if out_noise else None), out_noise
        if out_noise:
            var_out += np.float32(out_noise * out_noise)
        np.sqrt(var_out, out=var_out)
        var_out *= self.normals.standard_normal(shape)
        return var_out, 1.0

    def drift_readout(self, g_norm: np.ndarray, var_norm: np.ndarray | None) -> float:
        """Global drift compensation's readout (aihwkit GlobalDriftCompensation: the mean |output| of
        the one-hot inputs eye(in_size) read through the tile, src/aihwkit/inference/compensation/
        drift.py:28-38): each one-hot input reads one normalized weight w through this periphery —
        the DAC passes the 1 exactly, the device's per-read noise (var_norm, None = none) and the
        output noise are added (_noise: a one-hot input's read variance is the device's own), the
        ADC digitizes — so the readout is mean |ADC(w + noise)| over all weights.  Bound management
        never acts: |w| <= 1 < out_bound for every sensible bound."""
        if g_norm.size == 0:
            return 0.0
        y = np.ascontiguousarray(g_norm, dtype=np.float32).reshape(g_norm.shape[0], -1)
        var = None if var_norm is None else np.array(var_norm.reshape(y.shape), dtype=np.float32)
        noise, sigma = self._noise(var, y.shape)
        out, _ = adc(y, self.p, noise, sigma)
        return float(np.abs(out).mean(dtype=np.float64))
