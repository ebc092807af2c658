"""The periphery chain of one read in torch: DAC (noise management, input quantization), the
analog MVM per physical tile with its read and output noise (one draw per output of the summed
variance, as hw_models/tiles/chain.py), ADC with saturation and bound management, the digital sum
of the tiles; and the drift-compensation readout (hw_models/periphery.py, tiles/chain.py)."""

from __future__ import annotations

import torch

from hw_models.periphery import PeripheryConfig


def dac(x: torch.Tensor, p: PeripheryConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K) inputs -> (normalized inputs on the DAC grid, per-row scale (N, 1))."""
    if p.input_scaling == "absmax":
        scale = x.abs().amax(dim=1, keepdim=True) if x.numel() else torch.ones((x.shape[0], 1), device=x.device)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        xn = x / scale
    else:
        scale = torch.ones((x.shape[0], 1), device=x.device)
        xn = torch.clamp(x, -1.0, 1.0)
    if p.dac_bits:
        q = float(2 ** (p.dac_bits - 1) - 1)
        xn = torch.round(xn * q) / q
    return xn, scale


def adc(y: torch.Tensor, p: PeripheryConfig, noise: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(noise added, digitized over [-out_bound, out_bound] with p.adc_bits, saturating; per-row
    'some output at or beyond full scale')."""
    if noise is not None:
        y = y + noise
    if not p.adc_bits:
        return y, torch.zeros(y.shape[0], dtype=torch.bool, device=y.device)
    qmax = float(2 ** (p.adc_bits - 1) - 1)
    lsb = p.out_bound / qmax
    saturated = (y.abs() >= p.out_bound).any(dim=1)
    return torch.clamp(torch.round(y / lsb), -qmax, qmax) * lsb, saturated


class TorchChain:
    """Reads through `p`; noise from the generator `gen` (on the tensors' device)."""

    def __init__(self, p: PeripheryConfig, gen: torch.Generator) -> None:
        self.p, self.gen = p, gen

    def _noise(self, var_out: torch.Tensor | None, shape) -> torch.Tensor | None:
        out_noise = self.p.out_noise
        device = self.gen.device
        if var_out is None:
            return out_noise * torch.randn(shape, generator=self.gen, device=device) if out_noise else None
        std = torch.sqrt(var_out + out_noise * out_noise)
        return std * torch.randn(shape, generator=self.gen, device=device)

    def mvm(self, x: torch.Tensor, g: torch.Tensor, var: torch.Tensor | None, tile_rows: int) -> torch.Tensor:
        """x (N, K) through normalized conductances g (M, K), per-read variance var or None:
        y = x g^T in input units, digitized per tile of tile_rows inputs."""
        p = self.p
        xn, scale = dac(x, p)
        if var is None and p.out_noise == 0 and p.adc_bits == 0:
            return (xn @ g.T) * scale
        out = torch.zeros((x.shape[0], g.shape[0]), device=x.device)
        for r0 in range(0, g.shape[1], tile_rows):
            sl = slice(r0, r0 + tile_rows)
            out += self._tile_read(xn[:, sl], g[:, sl], None if var is None else var[:, sl])
        return out * scale

    def _tile_read(self, xn: torch.Tensor, g: torch.Tensor, var: torch.Tensor | None) -> torch.Tensor:
        """One tile; with bound management a saturated input row is halved and read again (<= 3
        times), as tiles/chain.py."""
        p = self.p
        rows, factor, result = None, None, None
        for attempt in range(4):
            xs = xn if rows is None else xn[rows] * factor[rows]
            y = xs @ g.T
            y, saturated = adc(y, p, self._noise(None if var is None else (xs * xs) @ var.T, y.shape))
            if rows is None:
                result = y
            else:
                result[rows] = y / factor[rows]
            if not (p.bound_management and p.adc_bits and bool(saturated.any())) or attempt == 3:
                break
            if rows is None:
                factor = torch.ones((xn.shape[0], 1), device=xn.device)
                rows = torch.arange(xn.shape[0], device=xn.device)
            rows = rows[saturated]
            factor[rows] *= 0.5
        return result

    def drift_readout(self, g_norm: torch.Tensor, var_norm: torch.Tensor | None) -> float:
        """Mean |ADC(w + noise)| over all normalized weights (tiles/chain.py drift_readout)."""
        if g_norm.numel() == 0:
            return 0.0
        out, _ = adc(g_norm, self.p, self._noise(var_norm, g_norm.shape))
        return float(out.abs().double().mean())
