"""Timing of aihwkit's stochastic pulse-train update as simulated here (pulsed_constant with
update_scheme = "pulse_train", hw_models/kernels/pulse_train.py) on one 784x1000 layer, and a
side-by-side with aihwkit itself run in its own interpreter (experiments/aihwkit_speed.py).
Functions for `onchip-ff bench`, not tests.

The layer is aihwkit's ConstantStepDevice in our terms: symmetric pairs of pulsed_constant devices
(aihwkit's device-to-device and cycle-to-cycle defaults) whose pair step equals aihwkit's
dw_min = 0.001 in weight units and whose range is aihwkit's [-0.6, 0.6] (every output column has
max|W| = W_SCALE, headroom W_RANGE / W_SCALE, dw_min_uS = DW_MIN_W gmax / (2 W_RANGE)); 7-bit DAC,
9-bit ADC, out_noise 0.06, bound management, one tile (aihwkit's IO defaults).  Inputs: x as
activations in [0, 1] (uniform, half of them exactly 0, as after a ReLU), d ~ N(0, d_std) (a
gradient of a mean-reduced loss: 1e-3 .. 1e-2), w ~ U(-1/sqrt(K), 1/sqrt(K)) (torch's Linear init).
Update intensity of sample n: lr max|x_n| max|d_n| / dw_min (aihwkit's k; BL = min(ceil(k), 31)).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

DW_MIN_W = 0.001  # aihwkit ConstantStepDevice dw_min (weight units)
W_RANGE = 0.6  # aihwkit PulsedDevice w_max = -w_min
AIHWKIT_SCRIPT = Path(__file__).with_name("aihwkit_speed.py")


def median_s(fn: Callable[[], object], repeats: int) -> tuple[float, list[float]]:
    """(median seconds, every time) of `repeats` calls of fn after one warm-up call (JIT
    compilation, allocator, thread pools); `onchip-ff bench` times every entry with it."""
    fn()  # warm-up: JIT compilation, allocation
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def bench_inputs(batch: int = 256, k: int = 784, m: int = 1000, d_std: float = 3e-3,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(w (m, k), x (batch, k), d (batch, m)) float32 as in the module docstring; every row of w
    has one entry of magnitude exactly 1/sqrt(k), so every column's w_max is the same."""
    rng = np.random.default_rng(seed)
    a = 1.0 / np.sqrt(k)
    w = rng.uniform(-a, a, (m, k)).astype(np.float32)
    w[:, 0] = np.where(rng.random(m) < 0.5, -a, a)
    x = (rng.uniform(0, 1, (batch, k)) * (rng.random((batch, k)) < 0.5)).astype(np.float32)
    d = rng.normal(0, d_std, (batch, m)).astype(np.float32)
    return w, x, d


def constant_step_device(k: int = 784, scheme: str = "pulse_train"):
    """DeviceConfig of aihwkit's ConstantStepDevice layer in our terms (module docstring)."""
    from hw_models.device import DeviceConfig
    from hw_models.noise.pulsed_constant import PulsedConstant
    from hw_models.periphery import PeripheryConfig

    gmax = 25.0
    model = PulsedConstant(dw_min_uS=DW_MIN_W * gmax / (2 * W_RANGE), update_scheme=scheme)
    return DeviceConfig(gmax_uS=gmax, pair_mapping="symmetric", weight_headroom=W_RANGE * np.sqrt(k),
                        tile_rows=1024, tile_cols=1024,
                        periphery=PeripheryConfig(dac_bits=7, adc_bits=9, out_bound=12.0, out_noise=0.06,
                                                  bound_management=True),
                        noise=(model,))


def pulse_stats(x: np.ndarray, d: np.ndarray, lr: float, tile) -> dict:
    """Update intensity per sample (weight units), BL per sample, and coincidences of one step:
    drawn (a pulse_train_update on copies of the tile's devices) and expected."""
    from hw_models.kernels import pulse_train as P

    model = tile.device.noise[0]
    k_int = lr * np.abs(x).max(axis=1) * np.abs(d).max(axis=1) / DW_MIN_W
    d_uS = d * (np.float32(tile.device.gmax_uS / 2) / tile.w_max[:, 0])
    bl, _, _ = P.management(x, d_uS, lr, model.dw_min_uS, model.desired_bl, model.update_management,
                            model.update_bl_management)
    _, _, drawn = model.pulse_train_update([g.copy() for g in tile.g_prog], tile.states, x, d_uS, lr,
                                           tile.device.gmax_uS, np.random.default_rng(0))
    pairs = tile.g_eff.size  # a coincidence fires one pulse at each device of its pair
    return {"intensity_median": float(np.median(k_int)), "intensity_max": float(k_int.max()),
            "bl_mean": float(bl.mean()), "coincidences_per_step": int(drawn),
            "coincidences_expected": P.expected_coincidences(
                x, d_uS, lr, model.dw_min_uS, model.desired_bl, model.update_management,
                model.update_bl_management),
            "pulses_per_device_per_step": drawn / pairs, "pairs": pairs}


def time_pulse_train(batch: int = 256, k: int = 784, m: int = 1000, repeats: int = 5,
                     d_std: float = 3e-3, lr: float = 0.05, threads: int = 0) -> dict:
    """Median seconds of AnalogTile.outer_update(x, d, lr) with the pulse_train scheme on a k x m
    constant-step array (module docstring), with the pulse statistics of one step (pulse_stats);
    threads 0: the pools as they are."""
    from hw_models.blas import threads as pool
    from hw_models.tiles import make_tile

    w, x, d = bench_inputs(batch, k, m, d_std)
    with pool(threads):
        tile = make_tile(w, constant_step_device(k), np.random.default_rng(1))
        stats = pulse_stats(x, d, lr, tile)
        seconds, times = median_s(lambda: tile.outer_update(x, d, lr), repeats)
    return {"seconds": seconds, "times_s": times, "batch": batch, "shape": f"{m}x{k}", "lr": lr,
            "d_std": d_std, **stats}


def _ours(w, x, d, lr: float, repeats: int) -> dict[str, float]:
    """Our equivalents of aihwkit_speed.py's parts, median seconds."""
    from hw_models.presets import preset
    from hw_models.tiles import make_tile

    out = {}
    pcm = make_tile(w, preset("pcm"), np.random.default_rng(1))
    out["pcm_forward"] = median_s(lambda: pcm.forward(x), repeats)[0]
    devices = (("constant_step", constant_step_device(w.shape[1])), ("reram_pulsed", preset("reram_pulsed")))
    for name, dev in devices:
        tile = make_tile(w, dev, np.random.default_rng(2))

        def step(tile=tile):
            tile.forward(x)
            tile.backward(d)
            tile.outer_update(x, d, lr)

        out[name] = median_s(step, repeats)[0]
        out[f"{name}_update"] = median_s(lambda tile=tile: tile.outer_update(x, d, lr), repeats)[0]
    return out


def side_by_side(python: str = "/tmp/aihwkit-venv/bin/python", threads: int = 1, batch: int = 256,
                 k: int = 784, m: int = 1000, d_std: float = 3e-3, lr: float = 0.05, repeats: int = 5,
                 slow_repeats: int = 5, timeout_s: float = 1800.0) -> list[dict]:
    """Run experiments/aihwkit_speed.py with `python` (torch threads = threads) on the inputs of
    bench_inputs, then our equivalents in this process with the same thread count; rows {name,
    ours_s, aihwkit_s, speedup = aihwkit_s / ours_s, note}.  Updates: aihwkit's is its step minus
    its forward + backward."""
    from hw_models.blas import threads as pool

    w, x, d = bench_inputs(batch, k, m, d_std)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.npz", Path(tmp) / "out.json"
        np.savez(src, weight=w, x=x, d=d, lr=lr, threads=threads, repeats=repeats, slow_repeats=slow_repeats)
        subprocess.run([python, str(AIHWKIT_SCRIPT), str(src), str(dst)], check=True, timeout=timeout_s)
        theirs = {n: p["median_s"] for n, p in json.loads(dst.read_text())["parts"].items()}
    with pool(threads):
        ours = _ours(w, x, d, lr, repeats)
    shape = f"batch {batch}, {k}->{m}"
    rows = [("pcm inference forward", ours["pcm_forward"], theirs["pcm_forward"], "pcm preset vs "
             "InferenceRPUConfig + PCMLikeNoiseModel"),
            ("constant-step train step", ours["constant_step"], theirs["constant_step"],
             "forward + backward + pulse-train update"),
            ("constant-step update", ours["constant_step_update"],
             theirs["constant_step"] - theirs["constant_step_fwd_bwd"],
             "aihwkit: step - (forward + backward)"),
            ("pulsed pcm-like train step", ours["reram_pulsed"], theirs["pcm_preset"],
             "not like for like: ours reram_pulsed (NeuroSim curve, pulse counts), aihwkit PCMPreset "
             "(ExpStep pair, stochastic pulses, refresh)")]
    return [{"name": n, "shape": shape, "threads": threads, "ours_s": o, "aihwkit_s": a,
             "speedup": a / o if o > 0 else None, "note": note} for n, o, a, note in rows]


def _main(argv: list[str]) -> int:
    """python -m experiments.pulse_train_bench [PYTHON [THREADS ...]]: print both timings as JSON."""
    python = argv[0] if argv else "/tmp/aihwkit-venv/bin/python"
    out = {"pulse_train": [time_pulse_train(d_std=s, threads=t) for t in (1, 2) for s in (1e-3, 1e-2)]}
    out["side_by_side"] = [r for t in (map(int, argv[1:]) if len(argv) > 1 else (1, 2))
                           for r in side_by_side(python, threads=t)]
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
