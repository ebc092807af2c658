"""The aihwkit half of the side-by-side timing (experiments/pulse_train_bench.py side_by_side), run
by an interpreter where aihwkit is importable (aihwkit 1.2.0: `make aihwkit-venv`).  Standalone: it
imports numpy, torch and aihwkit only, never onchip-ff.

    python experiments/aihwkit_speed.py IN.npz OUT.json

IN.npz: weight (M, K), x (N, K), d (N, M) float32; lr, threads, repeats, slow_repeats (scalars).
One AnalogLinear(K, M) without bias on one tile (mapping max sizes 0), weights set to `weight`,
torch.set_num_threads(threads).  Timed parts (median of repeats after one warm-up call; the
training steps take slow_repeats and no warm-up when that is 0):
  pcm_forward      InferenceRPUConfig + PCMLikeNoiseModel (8-bit DAC/ADC: inp_res = out_res =
                   1/254, out_bound 10, out_noise 0.04, iterative bound management, abs-max noise
                   management, column-wise weight scaling, global drift compensation), programmed,
                   eval mode, y = layer(x) under no_grad
  constant_step    SingleRPUConfig(device=ConstantStepDevice()) (aihwkit defaults: dw_min 0.001,
                   w in [-0.6, 0.6], dw_min_std 0.3, 7-bit DAC / 9-bit ADC, out_noise 0.06,
                   stochastic pulse trains with desired_bl 31 and both managements): one training
                   step y = layer(x); (y * d).sum().backward(); AnalogSGD(lr).step(), so the tile's
                   update gets exactly (x, d); x requires grad (the backward MVM runs)
  pcm_preset       the same step with aihwkit's PCMPreset (PCMPresetUnitCell: two one-sided
                   PCMPresetDevice (ExpStep) with refresh every mini-batch)
  *_fwd_bwd        the step without the optimizer step (forward + backward only)
OUT.json: {"aihwkit_version", "torch_threads", "parts": {name: {"median_s", "times_s"}}}.
Reads IN.npz with aihwkit_side.read_input (the script's own folder is on sys.path).
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import numpy as np
import torch
from aihwkit.inference import GlobalDriftCompensation, PCMLikeNoiseModel
from aihwkit.nn import AnalogLinear
from aihwkit.optim import AnalogSGD
from aihwkit.simulator.configs import InferenceRPUConfig, SingleRPUConfig
from aihwkit.simulator.configs.devices import ConstantStepDevice
from aihwkit.simulator.parameters.enums import BoundManagementType, NoiseManagementType
from aihwkit.simulator.presets import PCMPreset
from aihwkit_side import read_input  # run as a script: experiments/ is sys.path[0]


def one_tile(rc):
    """The config with the layer on a single tile (no splitting at 512 rows / columns)."""
    rc.mapping.max_input_size = 0
    rc.mapping.max_output_size = 0
    return rc


def pcm_inference_config() -> InferenceRPUConfig:
    rc = InferenceRPUConfig()
    f = rc.forward
    f.inp_res = f.out_res = 1.0 / (2 ** 8 - 2)
    f.out_bound, f.out_noise, f.w_noise = 10.0, 0.04, 0.0
    f.bound_management = BoundManagementType.ITERATIVE
    f.noise_management = NoiseManagementType.ABS_MAX
    rc.mapping.weight_scaling_omega = 1.0
    rc.mapping.weight_scaling_columnwise = True
    rc.mapping.digital_bias = False
    rc.noise_model = PCMLikeNoiseModel(g_max=25.0)
    rc.drift_compensation = GlobalDriftCompensation()
    return one_tile(rc)


def timed(fn, repeats: int, warm_up: bool = True) -> dict:
    """Median and list of wall times of `repeats` calls of fn (after one untimed call)."""
    if warm_up:
        fn()
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "times_s": times}


def layer_with(rc, weight: torch.Tensor) -> AnalogLinear:
    layer = AnalogLinear(weight.shape[1], weight.shape[0], bias=False, rpu_config=rc)
    layer.set_weights(weight)
    return layer


def train_parts(name: str, rc, weight, x, d, lr: float, repeats: int) -> dict:
    """{name: one SGD step, name_fwd_bwd: forward + backward only}, on a fresh layer."""
    layer = layer_with(rc, weight)
    opt = AnalogSGD(layer.parameters(), lr=lr)
    opt.regroup_param_groups(layer)
    x = x.clone().requires_grad_(True)

    def fwd_bwd():
        opt.zero_grad()
        x.grad = None
        (layer(x) * d).sum().backward()

    def step():
        fwd_bwd()
        opt.step()

    warm = repeats > 1
    return {name: timed(step, repeats, warm), f"{name}_fwd_bwd": timed(fwd_bwd, max(repeats, 3))}


def main(argv: list[str]) -> int:
    s = read_input(argv, "aihwkit_speed.py", "OUT.json")
    if s is None:
        return 2
    torch.manual_seed(0)
    weight, x, d = (torch.from_numpy(np.ascontiguousarray(s[k], np.float32)) for k in ("weight", "x", "d"))
    lr, repeats, slow = float(s["lr"]), int(s["repeats"]), int(s["slow_repeats"])
    parts = {}
    layer = layer_with(pcm_inference_config(), weight)
    layer.eval()
    with torch.no_grad():
        layer.program_analog_weights()
        layer.drift_analog_weights(0.0)
        parts["pcm_forward"] = timed(lambda: layer(x), repeats)
    parts.update(train_parts("constant_step", one_tile(SingleRPUConfig(device=ConstantStepDevice())),
                             weight, x, d, lr, slow))
    parts.update(train_parts("pcm_preset", one_tile(PCMPreset()), weight, x, d, lr, slow))
    import aihwkit
    with open(argv[1], "w") as f:
        json.dump({"aihwkit_version": aihwkit.__version__, "torch_threads": torch.get_num_threads(),
                   "parts": parts}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
