"""The torch engine of the simulator: arrays whose devices, periphery and noise are torch tensors
on any torch device (the GPU path; `hardware.engine = "torch"`, or "auto" with train.device =
"cuda").  Same formulas as the numba engine (hw_models/tiles, hw_models/noise, hw_models/kernels),
computed in float32 torch ops; its random numbers come from torch generators on the tile's device,
so results equal the numba engine's in distribution, not draw for draw (tests/test_torch_engine.py).

Covers analog arrays with one-sided pairs whose noise chain is made of the models with a torch twin
(devices.py STAGES: "pcm", "gaussian_weight", "gaussian_read", "stuck_at", "gmax_variability",
"weight_quantization" — every model without an update stage; any order, any settings), with any periphery (DAC, ADC, output noise, bound management, drift compensation) and
exact or granular writes (tile.py); and digital fixed-point arrays (digital.py).  Symmetric pairs
and the pulsed update models run on the numba engine only: `unsupported` says why for a
DeviceConfig.
"""

from __future__ import annotations

from hw_models.device import DeviceConfig


def unsupported(device: DeviceConfig) -> str | None:
    """Why the torch engine cannot simulate arrays of `device` (None: it can)."""
    if device.digital:
        return None
    if device.pair_mapping != "one_sided":
        return "symmetric pairs (pulsed updates) run on the numba engine only; the torch engine takes one-sided pairs"
    from hw_models.torch_engine.devices import STAGES
    names = [m.name for m in device.noise]
    missing = [n for n in names if n not in STAGES]
    if missing:
        return (f"noise model(s) {missing} run on the numba engine only; the torch engine models "
                f"{', '.join(sorted(STAGES))}")
    return None
