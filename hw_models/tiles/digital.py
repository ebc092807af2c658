"""Digital fixed-point MAC array holding one weight matrix: integer weight codes with a per-output
scale, integer activations with a per-vector scale, exact integer accumulation (overflow checked
against the accumulator width) and weight updates rounded to the LSB grid (stochastic by default).
"""

from __future__ import annotations

import numpy as np

from hw_models.blas import matmul
from hw_models.device import DeviceConfig
from hw_models.formats import FixedPointFormat, accumulate_int, quantize, scale_for
from hw_models.rng import generator_state, restore_generator
from common.errors import OnchipError


class AccumulatorOverflow(OnchipError):
    """An integer partial sum left the accumulator's range."""


class DigitalTile:
    """One layer's weight matrix on a digital fixed-point MAC array (the Tile protocol,
    hw_models/tiles): integer codes with a per-output scale, exact integer accumulation, updates
    rounded to the LSB grid."""

    def __init__(self, weight: np.ndarray, device: DeviceConfig, rng: np.random.Generator) -> None:
        self.device = device
        self.rng = rng
        # per_column: one scale per index of axis 0 (per output row of W, per vector of a batch)
        self.wfmt = FixedPointFormat(device.weight_bits, "nearest", per_column=True,
                                     field_name="hardware.weight_bits")
        self.ufmt = FixedPointFormat(device.weight_bits, device.update_rounding, per_column=True,
                                     field_name="hardware.weight_bits")
        self.xfmt = (FixedPointFormat(device.input_bits, "nearest", per_column=True,
                                      field_name="hardware.input_bits") if device.input_bits else None)
        self.out_features, self.in_features = weight.shape
        self.t_s = device.read_time_s  # the clock of the Tile protocol (constant: no drift)
        self.program(weight)

    def program(self, weight: np.ndarray) -> None:
        w = np.ascontiguousarray(weight, dtype=np.float32)
        scale = (self.device.weight_headroom * scale_for(w, self.wfmt, axis=0)).astype(np.float32)
        self.codes = quantize(w, scale, self.wfmt, axis=0)
        self.scale = scale.reshape(-1, 1)  # (M, 1): one scale per output
        self._codes_f32 = self.codes.astype(np.float32)

    def set_time(self, t_s: float) -> None:
        """Digital storage does not drift: the array stays as written (t_s stays read_time_s)."""

    def weights(self) -> np.ndarray:
        return self.codes.astype(np.float32) * self.scale

    def weight_range(self) -> np.ndarray:
        """qmax * scale (M, 1): the largest weight code times the row's scale."""
        return self.wfmt.qmax * self.scale

    def _matmul(self, x: np.ndarray, transposed: bool, out_scale: np.ndarray | None) -> np.ndarray:
        """x (N, K) float times the integer matrix (codes^T if not transposed, else codes); inputs
        quantized per vector.  When K * qmax_x * qmax_w < 2^24 and below the accumulator range,
        no partial sum can overflow and float32 BLAS is exact on the integer codes."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        codes_f = self._codes_f32 if transposed else self._codes_f32.T
        if self.xfmt is None:
            y = matmul(x, codes_f)
        else:
            sx = scale_for(x, self.xfmt, axis=0)
            xq = quantize(x, sx, self.xfmt, axis=0)
            sx = sx.reshape(-1, 1)
            bound = x.shape[1] * self.xfmt.qmax * self.wfmt.qmax
            if bound < 2 ** 24 and bound < 2 ** (self.device.acc_bits - 1):
                acc, n_overflow = matmul(xq.astype(np.float32), codes_f), 0
            else:
                codes = self.codes if transposed else np.ascontiguousarray(self.codes.T)
                acc, n_overflow = accumulate_int(xq, codes, self.device.acc_bits, raise_on_overflow=False)
            if n_overflow:
                raise AccumulatorOverflow(f"{n_overflow} running partial sums left the "
                                          f"{self.device.acc_bits}-bit accumulator; raise "
                                          "hardware.acc_bits or lower the weight/input bits")
            y = (acc.astype(np.float64) * sx).astype(np.float32)
        return y if out_scale is None else y * out_scale

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self._matmul(x, False, self.scale.T)

    def backward(self, d: np.ndarray) -> np.ndarray:
        """W^T d: the per-output weight scale is applied to d before the DAC (it sums over m)."""
        return self._matmul(np.asarray(d, np.float32) * self.scale.T, True, None)

    def update(self, delta_w: np.ndarray) -> None:
        """codes <- saturate(codes + round(delta_w / scale)), rounding per hardware.update_rounding."""
        seed = int(self.rng.integers(0, 2 ** 63))
        step = quantize(np.asarray(delta_w, np.float32), self.scale[:, 0], self.ufmt, seed=seed, axis=0)
        q = self.wfmt.qmax
        self.codes = np.clip(self.codes.astype(np.int32) + step, -q, q).astype(self.codes.dtype)
        self._codes_f32 = self.codes.astype(np.float32)

    def write(self, w_target: np.ndarray) -> np.ndarray:
        """Move the codes towards w_target (out, in) by one rounded update; returns the new weights."""
        self.update(np.asarray(w_target, np.float32) - self.weights())
        return self.weights()

    def outer_update(self, x: np.ndarray, d: np.ndarray, lr: float) -> None:
        self.update(-np.float32(lr) * (d.T @ x))

    def state(self) -> dict:
        """Integer codes, scales and the update rounding's random stream (see AnalogTile.state)."""
        return {"kind": "digital", "codes": self.codes, "scale": self.scale, "rng": generator_state(self.rng)}

    def load_state(self, state: dict) -> None:
        if state.get("kind") != "digital" or np.shape(state["codes"]) != self.codes.shape:
            raise ValueError(f"not the state of a {self.codes.shape} digital array")
        self.codes = np.ascontiguousarray(state["codes"], dtype=self.codes.dtype)
        self.scale = np.ascontiguousarray(state["scale"], dtype=np.float32)
        self._codes_f32 = self.codes.astype(np.float32)
        self.rng = restore_generator(state["rng"])
