"""The torch engine of the simulator: arrays whose devices, periphery and noise are torch tensors
on any torch device (the GPU path; `hardware.engine = "torch"`, or "auto" with train.device =
"cuda").  Same formulas as the numba engine (hw_models/tiles, hw_models/noise, hw_models/kernels),
computed in float32 torch ops; its random numbers come from torch generators on the tile's device,
so results equal the numba engine's in distribution, not draw for draw (tests/test_torch_engine.py).

Covers analog arrays of either pair mapping whose noise chain is made of the models with a torch
twin (devices.py STAGES: every model — "pcm", "gaussian_weight", "gaussian_read", "stuck_at",
"gmax_variability", "weight_quantization", "pulsed_nonlinear", "pulsed_constant"; any order, any
settings), with any periphery (DAC, ADC, output noise, bound management, drift compensation), exact
or granular re-programming of one-sided pairs and pulse-count updates of symmetric pairs (tile.py);
and digital fixed-point arrays (digital.py).  aihwkit's stochastic pulse trains (pulsed_constant's
update_scheme = "pulse_train") run on the numba engine only: `unsupported` says why for a
DeviceConfig.
"""

from __future__ import annotations

from hw_models.device import DeviceConfig


def unsupported(device: DeviceConfig) -> str | None:
    """Why the torch engine cannot simulate arrays of `device` (None: it can)."""
    if device.digital:
        return None
    if any(getattr(m, "pulse_train", False) for m in device.noise):
        return ("update_scheme = 'pulse_train' (aihwkit's stochastic pulse trains) runs on the numba engine only; "
                "the torch engine fires pulse counts (update_scheme = 'pulse_count')")
    from hw_models.torch_engine.devices import STAGES
    names = [m.name for m in device.noise]
    missing = [n for n in names if n not in STAGES]
    if missing:
        return (f"noise model(s) {missing} run on the numba engine only; the torch engine models "
                f"{', '.join(sorted(STAGES))}")
    return None
