"""The torch engine of the simulator: analog arrays whose devices, periphery and noise are torch
tensors on any torch device (the GPU path; `hardware.engine = "torch"`, or "auto" with
train.device = "cuda").  Same formulas as the numba engine (hw_models/tiles, hw_models/noise,
hw_models/kernels), computed in float32 torch ops; its random numbers come from torch generators
on the tile's device, so results equal the numba engine's in distribution, not draw for draw
(tests/test_torch_engine.py).

Covers the analog arrays of the `ideal` and `pcm` presets and their variants: one-sided pairs,
noise chain empty or the "pcm" model alone (any of its settings), any periphery (DAC, ADC, output
noise, bound management, drift compensation), exact or granular writes.  Digital arrays and the
other noise models run on the numba engine only: `unsupported` says why for a DeviceConfig.
"""

from __future__ import annotations

from hw_models.device import DeviceConfig


def unsupported(device: DeviceConfig) -> str | None:
    """Why the torch engine cannot simulate arrays of `device` (None: it can)."""
    if device.digital:
        return "digital fixed-point arrays (hardware.weight_bits > 0) run on the numba engine only"
    if device.pair_mapping != "one_sided":
        return "symmetric pairs (pulsed updates) run on the numba engine only; the torch engine takes one-sided pairs"
    names = [m.name for m in device.noise]
    if names not in ([], ["pcm"]):
        return f"noise chain {names}: the torch engine models no noise or the 'pcm' model alone"
    return None
