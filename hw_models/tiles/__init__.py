"""Arrays that hold one layer's weight matrix: the Tile protocol every array meets, the analog
crossbar (analog.py, composed of a weight mapping (mapping.py), a periphery chain (chain.py) and an
update policy (update.py), with the devices read out at a time by readout.py) and the digital
fixed-point MAC array (digital.py); make_tile picks one for a DeviceConfig."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from hw_models.device import DeviceConfig


@runtime_checkable
class Tile(Protocol):
    """A weight matrix W (out_features, in_features) on an array.  Contract (tests/test_tiles.py):
    program(W) writes W; weights() is what the array holds; forward(x) ~ x W^T (N, in) -> (N, out)
    and backward(d) ~ d W (N, out) -> (N, in) through the array's periphery; update(dW) applies a
    requested change through the array's update model, write(W') moves towards W' and returns
    weights(), outer_update(x, d, lr) = update(-lr d^T x) (a pulsed device with update_scheme =
    "pulse_train" draws stochastic pulse trains from x and d instead: the same update in the mean);
    weight_range() is the largest |weight| each output row can be written to, (out_features, 1) (a
    pair at full conductance difference; device noise may leave a weight slightly beyond it); set_time(t_s) evaluates the array t_s seconds after programming (drift; a no-op for digital
    storage); state() / load_state() save and restore the array exactly, random streams included.
    Same Generator seed, same results."""

    out_features: int
    in_features: int
    t_s: float  # seconds after programming at which the array is read (writes at device.read_time_s only)

    def program(self, weight: np.ndarray) -> None: ...

    def set_time(self, t_s: float) -> None: ...

    def weights(self) -> np.ndarray: ...

    def weight_range(self) -> np.ndarray: ...

    def forward(self, x: np.ndarray) -> np.ndarray: ...

    def backward(self, d: np.ndarray) -> np.ndarray: ...

    def update(self, delta_w: np.ndarray) -> None: ...

    def write(self, w_target: np.ndarray) -> np.ndarray: ...

    def outer_update(self, x: np.ndarray, d: np.ndarray, lr: float) -> None: ...

    def state(self) -> dict: ...

    def load_state(self, state: dict) -> None: ...


def make_tile(weight: np.ndarray, device: DeviceConfig, rng: np.random.Generator) -> Tile:
    """An array programmed with weight (out, in): with device.engine = "torch" a torch-engine
    array on the CPU (hw_models/torch_engine: TorchDigitalTile if device.weight_bits > 0, else
    TorchTile; torch_layers moves it with its module), else DigitalTile if device.weight_bits > 0,
    else AnalogTile."""
    if device.engine == "torch":
        if device.digital:
            from hw_models.torch_engine.digital import TorchDigitalTile
            return TorchDigitalTile(weight, device, rng)
        from hw_models.torch_engine.tile import TorchTile
        return TorchTile(weight, device, rng)
    if device.digital:
        from hw_models.tiles.digital import DigitalTile
        return DigitalTile(weight, device, rng)
    from hw_models.tiles.analog import AnalogTile
    return AnalogTile(weight, device, rng)
