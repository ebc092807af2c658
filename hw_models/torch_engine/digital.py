"""TorchDigitalTile: a digital fixed-point MAC array in torch tensors on any torch device — the Tile
protocol with the formulas of hw_models/tiles/digital.py DigitalTile and hw_models/formats.py:

  program:  scale = headroom absmax_m / qmax (per output row; absmax 0 -> 1), codes = clip(rint(w /
            scale), -qmax, qmax)  (float64 division, ties to even)
  read:     inputs quantized per vector the same way (input_bits; none: float inputs), the integer
            products summed exactly, times the input and weight scales
  update:   codes += clip(floor(dw / scale + u)) (stochastic rounding, u ~ U[0, 1)) or rint(dw /
            scale) (update_rounding = "nearest"), saturating at +-qmax

Exactness: integer codes are exact in float32 and their products sum exactly while K qmax_x qmax_w
< 2^24 (float32 GEMM, codes below 2^11 so TF32 would keep them too); beyond that the sum runs in
float64 (exact below 2^53).  The accumulator cannot overflow when K qmax_x qmax_w < 2^(acc_bits-1);
the numba engine checks the running partial sums of the other cases, this engine refuses them.
So forward and backward equal the numba engine's bit for bit; updates agree in distribution (torch
generators, not the numba engine's counter-based uniforms).
"""

from __future__ import annotations

import numpy as np
import torch

from common.errors import ConfigError
from hw_models.device import DeviceConfig


def _qmax(bits: int) -> int:
    return 2 ** (int(bits) - 1) - 1


def _scale(x: torch.Tensor, qmax: int) -> torch.Tensor:
    """float32 per-row scales absmax / qmax (absmax 0 -> 1), (N, 1)."""
    absmax = x.abs().amax(dim=1, keepdim=True) if x.shape[1] else torch.zeros((x.shape[0], 1), device=x.device)
    if not bool(torch.isfinite(absmax).all()):
        raise ValueError("cannot choose a scale: x contains inf or NaN")
    return torch.where(absmax > 0, absmax / float(qmax), torch.ones_like(absmax))


def _codes(x: torch.Tensor, scale: torch.Tensor, qmax: int) -> torch.Tensor:
    """clip(rint(x / scale), -qmax, qmax) in float64, as float32 values."""
    return torch.clamp(torch.round(x.double() / scale.double()), -qmax, qmax).float()


class TorchDigitalTile:
    """A digital array of `device` holding W (out, in) in torch on `torch_device`."""

    tensors = True  # torch_layers passes tensors, not numpy arrays

    def __init__(self, weight, device: DeviceConfig, rng: np.random.Generator,
                 torch_device: str | torch.device = "cpu") -> None:
        self._setup(device, rng, torch_device, tuple(np.shape(weight)))
        self.program(weight)

    def _setup(self, device: DeviceConfig, rng: np.random.Generator, torch_device, shape: tuple[int, int]) -> None:
        """Device, formats, size and generator (seeded from a draw of rng); refuses accumulators
        that could overflow."""
        self.device = device
        self.torch_device = torch.device(torch_device)
        self.gen = torch.Generator(device=self.torch_device).manual_seed(int(rng.integers(0, 2 ** 63)))
        self.qmax = _qmax(device.weight_bits)
        self.qmax_x = _qmax(device.input_bits) if device.input_bits else 0
        self.out_features, self.in_features = shape
        self._check_accumulator()
        self.t_s = device.read_time_s

    def _tensor(self, a) -> torch.Tensor:
        t = torch.as_tensor(a) if not isinstance(a, torch.Tensor) else a
        return t.detach().to(device=self.torch_device, dtype=torch.float32)

    def _check_accumulator(self) -> None:
        if not self.qmax_x:
            return
        for k in (self.in_features, self.out_features):
            if k * self.qmax_x * self.qmax >= 2 ** (self.device.acc_bits - 1):
                raise ConfigError(f"hardware.engine = 'torch': a sum of {k} products of {self.device.input_bits}-bit "
                                  f"inputs and {self.device.weight_bits}-bit weights can overflow the "
                                  f"{self.device.acc_bits}-bit accumulator; the torch engine models accumulators "
                                  "that cannot overflow (raise hardware.acc_bits), the numba engine checks the "
                                  "running sums")

    # ---- the Tile protocol ------------------------------------------------------------------
    def program(self, weight) -> None:
        """Codes of W (out, in) with per-row scales headroom absmax / qmax."""
        w = self._tensor(weight)
        self.scale = (self.device.weight_headroom * _scale(w, self.qmax)).float()  # (M, 1)
        self.codes = _codes(w, self.scale, self.qmax)  # float32 integer values

    def set_time(self, t_s: float) -> None:
        """Digital storage does not drift: the array stays as written."""

    def weights(self) -> torch.Tensor:
        return self.codes * self.scale

    def weight_range(self) -> torch.Tensor:
        """qmax * scale (M, 1)."""
        return self.qmax * self.scale

    def _matmul(self, x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """x (N, K) times the integer matrix codes (K, M'), inputs quantized per vector."""
        if not self.qmax_x:
            return x @ codes
        sx = _scale(x, self.qmax_x)
        xq = _codes(x, sx, self.qmax_x)
        if x.shape[1] * self.qmax_x * self.qmax < 2 ** 24 and max(self.qmax_x, self.qmax) < 2 ** 11:
            acc = (xq @ codes).double()
        else:
            acc = xq.double() @ codes.double()
        return (acc * sx.double()).float()

    def forward(self, x) -> torch.Tensor:
        """y = W x for a batch x (N, in) -> (N, out)."""
        return self._matmul(self._tensor(x), self.codes.T) * self.scale.T

    def backward(self, d) -> torch.Tensor:
        """W^T d: the per-output weight scale is applied to d before the input quantization."""
        return self._matmul(self._tensor(d) * self.scale.T, self.codes)

    def update(self, delta_w) -> None:
        """codes <- clip(codes + round(delta_w / scale)), rounding per hardware.update_rounding."""
        v = self._tensor(delta_w).double() / self.scale.double()
        if self.device.update_rounding == "stochastic":
            step = torch.floor(v + torch.rand(v.shape, generator=self.gen, device=v.device, dtype=torch.float64))
        else:
            step = torch.round(v)
        if bool(torch.isnan(step).any()):
            raise ValueError("cannot quantize: the update contains NaN values")
        step = torch.clamp(step, -self.qmax, self.qmax)
        self.codes = torch.clamp(self.codes + step.float(), -self.qmax, self.qmax)

    def write(self, w_target) -> torch.Tensor:
        """Move the codes towards w_target by one rounded update; returns the new weights."""
        self.update(self._tensor(w_target) - self.weights())
        return self.weights()

    def outer_update(self, x, d, lr: float) -> None:
        """Rank-N update W <- W - lr d^T x."""
        self.update(-lr * (self._tensor(d).T @ self._tensor(x)))

    # ---- devices and state ------------------------------------------------------------------
    def to(self, torch_device) -> "TorchDigitalTile":
        """Move the codes and scales to torch_device; the generator is reseeded there from a draw
        of the old one."""
        dev = torch.device(torch_device)
        if dev == self.torch_device:
            return self
        seed = int(torch.randint(0, 2 ** 62, (1,), generator=self.gen, device=self.gen.device))
        self.codes, self.scale = self.codes.to(dev), self.scale.to(dev)
        self.gen = torch.Generator(device=dev).manual_seed(seed)
        self.torch_device = dev
        return self

    def state(self) -> dict:
        """Codes (int), scales and the generator's state."""
        dtype = np.int8 if self.device.weight_bits <= 8 else np.int16
        return {"kind": "digital-torch", "codes": self.codes.cpu().numpy().astype(dtype),
                "scale": self.scale.cpu().numpy(), "generator": self.gen.get_state().numpy(),
                "torch_device": str(self.torch_device)}

    def load_state(self, state: dict) -> None:
        """Restore a state() of an array of the same shape and device (on this tile's device)."""
        if state.get("kind") != "digital-torch" or tuple(np.shape(state["codes"])) != tuple(self.codes.shape):
            raise ValueError(f"not the state of a {tuple(self.codes.shape)} torch-engine digital array")
        self.codes = self._tensor(np.asarray(state["codes"], np.float32))
        self.scale = self._tensor(state["scale"])
        if state["torch_device"] == str(self.torch_device):
            self.gen.set_state(torch.as_tensor(state["generator"], dtype=torch.uint8))

    @classmethod
    def from_digital(cls, tile, torch_device) -> "TorchDigitalTile":
        """A torch-engine copy of a numba-engine DigitalTile (hw_models/tiles/digital.py) on
        torch_device: its codes and scales; the generator seeded from a draw of its Generator."""
        new = cls.__new__(cls)
        new._setup(tile.device, tile.rng, torch_device, (tile.out_features, tile.in_features))
        new.t_s = tile.t_s
        new.codes = new._tensor(tile.codes.astype(np.float32))
        new.scale = new._tensor(tile.scale)
        return new
