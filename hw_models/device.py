"""DeviceConfig: everything the simulator needs to know about the hardware one layer runs on,
as a frozen dataclass of numbers with units, composed of a periphery and a chain of noise models.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from common.coerce import check
from hw_models.noise.base import NoiseModel
from hw_models.periphery import PeripheryConfig


ENGINES = ("auto", "numba", "torch")


@dataclass(frozen=True)
class DeviceConfig:
    gmax_uS: float = 25.0  # maximum device conductance (PCM: 25 uS, Joshi et al. 2020)
    tile_rows: int = 256  # crossbar rows (inputs) per tile; partial sums digitized per tile
    tile_cols: int = 256  # crossbar columns (outputs) per tile
    weight_headroom: float = 1.0  # w_max = headroom * max|W| of each column at programming
    pair_mapping: str = "symmetric"  # "symmetric": G+-/ = gmax/2 (1 +- w); "one_sided": one device at 0
    read_time_s: float = 0.0  # seconds after programming (aihwkit t_inference) at which reads happen unless set_time is called
    # one-sided pairs: smallest weight change one re-programming applies, normalized (fraction of
    # w_max); an update moves a pair by a stochastically rounded whole number of these increments,
    # and only pairs that move are re-programmed (AnalogTile.update).  0 = exact writes of every
    # changed pair
    write_granularity: float = 0.0
    weight_bits: int = 0  # > 0: digital fixed-point MAC array with integer weights (no analog devices)
    input_bits: int = 0  # digital array: activation bits (per-vector absmax scale)
    acc_bits: int = 32  # digital array: signed accumulator width in bits; a running-sum overflow raises
    update_rounding: str = "stochastic"  # digital array: rounding of weight updates to the LSB grid
    # simulation engine: "numba" (numpy/numba kernels on the CPU), "torch" (torch tensors on the
    # model's torch device: hw_models/torch_engine), "auto" (torch when the model sits on a CUDA
    # device, numba otherwise)
    engine: str = "auto"
    periphery: PeripheryConfig = field(default_factory=PeripheryConfig)
    noise: tuple[NoiseModel, ...] = ()

    def __post_init__(self) -> None:
        check(self.gmax_uS > 0, "hardware.gmax_uS", "> 0", self.gmax_uS)
        check(self.tile_rows >= 1, "hardware.tile_rows", ">= 1", self.tile_rows)
        check(self.tile_cols >= 1, "hardware.tile_cols", ">= 1", self.tile_cols)
        check(self.weight_headroom >= 1, "hardware.weight_headroom", ">= 1", self.weight_headroom)
        check(self.pair_mapping in ("symmetric", "one_sided"), "hardware.pair_mapping",
              "'symmetric' or 'one_sided'", self.pair_mapping)
        check(self.read_time_s >= 0, "hardware.read_time_s", ">= 0", self.read_time_s)
        check(self.weight_bits == 0 or 2 <= self.weight_bits <= 16, "hardware.weight_bits",
              "0 (analog) or 2..16", self.weight_bits)
        check(self.input_bits == 0 or 2 <= self.input_bits <= 16, "hardware.input_bits",
              "0 (float inputs) or 2..16", self.input_bits)
        check(8 <= self.acc_bits <= 63, "hardware.acc_bits", "8..63 (int64 arithmetic holds the exact sum)",
              self.acc_bits)
        check(self.update_rounding in ("nearest", "stochastic"), "hardware.update_rounding",
              "'nearest' or 'stochastic'", self.update_rounding)
        check(self.engine in ENGINES, "hardware.engine", "'auto', 'numba' or 'torch'", self.engine)
        check(not (self.weight_bits and self.noise), "hardware.noise",
              "empty when hardware.weight_bits > 0 (a digital array has no analog devices; for "
              "analog weight levels use the 'weight_quantization' noise model)", [m.name for m in self.noise])

        pulsed = [m.name for m in self.noise if "update" in m.stages]
        check(not (pulsed and self.pair_mapping == "one_sided"), "hardware.pair_mapping",
              f"'symmetric' with pulsed-update models {pulsed} (one-sided pairs are re-programmed, "
              "never pulsed)", self.pair_mapping)
        check(0 <= self.write_granularity <= 1, "hardware.write_granularity",
              ">= 0 and <= 1 (a fraction of w_max; 0 = exact writes)", self.write_granularity)
        check(self.write_granularity == 0 or (self.pair_mapping == "one_sided" and not self.weight_bits),
              "hardware.write_granularity", "0 unless pair_mapping = 'one_sided' on an analog array "
              "(symmetric pairs take pulsed updates, digital arrays round with update_rounding)",
              self.write_granularity)

    @property
    def digital(self) -> bool:
        return self.weight_bits > 0
