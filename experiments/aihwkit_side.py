"""The aihwkit half of `onchip-ff crosscheck aihwkit`, run by an interpreter where aihwkit is
importable (aihwkit 1.2.0 has CPU wheels for Python 3.12: `make aihwkit-venv`).  Standalone: it
imports numpy, torch and aihwkit only, never onchip-ff.

    python experiments/aihwkit_side.py IN.npz OUT.npz

IN.npz (written by experiments/crosscheck.py): g_norm (G,), times_s (T,), layer_times_s (L,),
weight (M, K), x (B, K) float32, and settings: n_devices, draws, seed, gmax_uS, dac_bits, adc_bits,
out_bound, out_noise.  OUT.npz:
  dev_mean, dev_std (G, T): mean and std of G(t)/gmax over n_devices devices programmed to g_norm
      gmax each (PCMLikeNoiseModel: programming noise, drift coefficients from the target, drift
      and 1/f noise at t_inference = t);
  layer_mean, layer_std (L, B, M): per output, over `draws` programmings, of an AnalogLinear(K, M)
      with InferenceRPUConfig (PCMLikeNoiseModel, GlobalDriftCompensation, one tile, per-column
      weight scaling) programmed with `weight`, drifted to t and read with x in eval mode;
  alpha (L, draws): the drift-compensation factor of each read; seconds: wall time of each part.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
from aihwkit.inference import GlobalDriftCompensation, PCMLikeNoiseModel
from aihwkit.nn import AnalogLinear
from aihwkit.simulator.configs import InferenceRPUConfig
from aihwkit.simulator.parameters.enums import BoundManagementType, NoiseManagementType


def device_moments(s: dict) -> tuple[np.ndarray, np.ndarray]:
    model = PCMLikeNoiseModel(g_max=float(s["gmax_uS"]))
    n = int(s["n_devices"])
    g_norm, times = s["g_norm"], s["times_s"]
    mean = np.zeros((g_norm.size, times.size))
    std = np.zeros_like(mean)
    for i, g in enumerate(g_norm):
        torch.manual_seed(int(s["seed"]) + i)
        target = torch.full((n,), float(g) * float(s["gmax_uS"]))
        g_prog = model.apply_programming_noise_to_conductance(target)
        nu = model.generate_drift_coefficients(target)
        for j, t in enumerate(times):
            g_t = model.apply_drift_noise_to_conductance(g_prog, nu, float(t)).double() / float(s["gmax_uS"])
            mean[i, j], std[i, j] = g_t.mean().item(), g_t.std(unbiased=False).item()
    return mean, std


def rpu_config(s: dict) -> InferenceRPUConfig:
    rc = InferenceRPUConfig()
    f = rc.forward
    f.inp_res = 1.0 / (2 ** int(s["dac_bits"]) - 2) if int(s["dac_bits"]) else -1.0
    f.out_res = 1.0 / (2 ** int(s["adc_bits"]) - 2) if int(s["adc_bits"]) else -1.0
    f.out_bound = float(s["out_bound"])
    f.out_noise = float(s["out_noise"])
    f.w_noise = 0.0
    f.bound_management = BoundManagementType.ITERATIVE
    f.noise_management = NoiseManagementType.ABS_MAX
    rc.mapping.weight_scaling_omega = 1.0
    rc.mapping.weight_scaling_columnwise = True
    rc.mapping.max_input_size = 0
    rc.mapping.max_output_size = 0
    rc.mapping.digital_bias = False
    rc.noise_model = PCMLikeNoiseModel(g_max=float(s["gmax_uS"]))
    rc.drift_compensation = GlobalDriftCompensation()
    return rc


def layer_outputs(s: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    weight = torch.from_numpy(s["weight"])
    x = torch.from_numpy(s["x"])
    times, draws = s["layer_times_s"], int(s["draws"])
    layer = AnalogLinear(weight.shape[1], weight.shape[0], bias=False, rpu_config=rpu_config(s))
    layer.set_weights(weight)
    layer.eval()
    out = np.zeros((times.size, draws, x.shape[0], weight.shape[0]))
    alpha = np.zeros((times.size, draws))
    with torch.no_grad():
        for d in range(draws):
            torch.manual_seed(int(s["seed"]) + 1000 + d)
            layer.program_analog_weights()
            for j, t in enumerate(times):
                layer.drift_analog_weights(float(t))
                out[j, d] = layer(x).double().numpy()
                alpha[j, d] = float(next(layer.analog_tiles()).alpha)
    return out.mean(axis=1), out.std(axis=1), alpha


def read_input(argv: list[str], script: str, out: str) -> dict | None:
    """The settings of IN.npz given as argv = [IN.npz, OUT] (torch threads set from its `threads`,
    default 1), or None after printing the usage of `script` when argv is not that."""
    if len(argv) != 2:
        print(f"usage: python experiments/{script} IN.npz {out}", file=sys.stderr)
        return None
    with np.load(argv[0]) as f:
        s = {k: f[k] for k in f.files}
    torch.set_num_threads(int(s.get("threads", 1)))
    return s


def main(argv: list[str]) -> int:
    s = read_input(argv, "aihwkit_side.py", "OUT.npz")
    if s is None:
        return 2
    t0 = time.perf_counter()
    dev_mean, dev_std = device_moments(s)
    t1 = time.perf_counter()
    layer_mean, layer_std, alpha = layer_outputs(s)
    t2 = time.perf_counter()
    import aihwkit
    np.savez(argv[1], dev_mean=dev_mean, dev_std=dev_std, layer_mean=layer_mean, layer_std=layer_std,
             alpha=alpha, seconds=np.array([t1 - t0, t2 - t1]), version=np.array(aihwkit.__version__))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
