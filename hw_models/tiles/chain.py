"""The periphery chain of one read of an analog array: DAC (noise management, input quantization),
the analog MVM per physical tile with its read and output noise, ADC with saturation and bound
management, the digital sum of the tiles; and the drift-compensation readout through the same
periphery (hw_models/periphery.py holds the converters)."""

from __future__ import annotations

import numpy as np

from hw_models.blas import matmul
from hw_models.periphery import PeripheryConfig, adc, dac, drift_readout
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
            noise, sigma = self._output_noise(xs, var, y.shape)
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

    def _output_noise(self, xs: np.ndarray, var: np.ndarray | None,
                      shape: tuple[int, int]) -> tuple[np.ndarray | None, float]:
        """(noise, sigma) for the ADC, which adds sigma * noise: read + output noise of one tile
        read as one draw per output (see _tile_read), or the output noise alone."""
        out_noise = self.p.out_noise
        if var is None:
            return (self.normals.standard_normal(shape) if out_noise else None), out_noise
        sd = matmul(xs * xs, var.T)  # read variance per output, normalized units
        if out_noise:
            sd += np.float32(out_noise * out_noise)
        np.sqrt(sd, out=sd)
        sd *= self.normals.standard_normal(shape)
        return sd, 1.0

    def drift_readout(self, g_norm: np.ndarray, var_norm: np.ndarray | None) -> float:
        """Global drift compensation's readout of normalized weights through this periphery."""
        return drift_readout(g_norm, var_norm, self.p, self.normals)
