"""Choose the array model for a device: analog crossbar or digital fixed-point MAC array."""

from __future__ import annotations

import numpy as np

from hw_models.device import DeviceConfig


def make_tile(weight: np.ndarray, device: DeviceConfig, rng: np.random.Generator):
    """An array programmed with weight (out, in): DigitalTile if device.weight_bits > 0, else AnalogTile."""
    if device.digital:
        from hw_models.digital import DigitalTile
        return DigitalTile(weight, device, rng)
    from hw_models.crossbar import AnalogTile
    return AnalogTile(weight, device, rng)
