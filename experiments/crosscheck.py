"""`onchip-ff crosscheck aihwkit --out DIR`: our `pcm` model against IBM aihwkit's own
PCMLikeNoiseModel, side by side on the same targets and the same layer.

1. Devices: n devices (default 10^6) programmed to g = G/gmax in {0.05, 0.1, 0.25, 0.5, 0.75, 1},
   read at t in {1 h, 1 day, 1 month, 1 year} after programming: mean and std of G(t)/gmax, ours
   (sampled through the crossbar's read-out, and the formula PCM.conductance_moments) and aihwkit's
   (its noise model's three steps on a conductance tensor).  Agreement: within 3 % at every (g, t).
2. A 784x1000 layer with the same weights and periphery (pcm preset: 8-bit DAC and ADC, output
   bound 10, output noise 0.04, bound management, global drift compensation; one physical tile,
   per-column weight scaling), programmed `draws` times and read at 1 s, 1 day, 1 year on a fixed
   input batch: per output, the mean and std over the draws.  Agreement: |difference| within 3 %
   of the outputs' RMS at every output and time.

aihwkit is an optional dependency in its own interpreter (Python 3.12, aihwkit 1.2.0: `make
aihwkit-venv`); its half runs in a subprocess (experiments/aihwkit_side.py) and the two exchange
.npz files in DIR.  Outputs: DIR/crosscheck_aihwkit.json, DIR/crosscheck_aihwkit.md (the tables).
Exit status 0 when every difference is within its bound, 1 otherwise (the tables mark it ✗).
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from common.errors import ConfigError
from experiments.outdir import atomic_write_json, atomic_write_text

G_NORM = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0)
DEVICE_TIMES_S = {"1 h": 3600.0, "1 day": 86400.0, "1 month": 2.592e6, "1 year": 3.1536e7}
LAYER_TIMES_S = {"1 s": 1.0, "1 day": 86400.0, "1 year": 3.1536e7}
TOLERANCE = 0.03  # the acceptance: 3 %
SIDE_SCRIPT = Path(__file__).resolve().parent / "aihwkit_side.py"
DEFAULT_VENV = Path(".venv-aihwkit") / "bin" / "python"


def find_python(explicit: str | None) -> str:
    """The interpreter that runs aihwkit's half: --python, else this one if it imports aihwkit,
    else ./.venv-aihwkit/bin/python (made by `make aihwkit-venv`)."""
    candidates = [explicit] if explicit else [sys.executable, str(DEFAULT_VENV)]
    for python in candidates:
        if not Path(python).is_file():
            continue
        probe = subprocess.run([python, "-c", "import aihwkit; print(aihwkit.__version__)"],
                               capture_output=True, text=True)
        if probe.returncode == 0:
            return python
    where = f"--python {explicit}" if explicit else f"this interpreter nor {DEFAULT_VENV}"
    raise ConfigError(f"aihwkit is not importable by {where}; run `make aihwkit-venv` (Python 3.12, "
                      "aihwkit==1.2.0) or pass --python PATH of an interpreter that has it")


def layer_device(in_features: int, out_features: int):
    """The pcm preset as one physical tile (aihwkit's mapping with max_input_size = 0)."""
    from hw_models.presets import preset
    return dataclasses.replace(preset("pcm"), tile_rows=in_features, tile_cols=out_features)


def problem(seed: int, in_features: int = 784, out_features: int = 1000, batch: int = 8) -> dict:
    """The shared layer: Gaussian weights, and inputs shaped like ReLU activations."""
    rng = np.random.default_rng(seed)
    weight = (rng.standard_normal((out_features, in_features)) / np.sqrt(in_features)).astype(np.float32)
    x = np.maximum(rng.standard_normal((batch, in_features)), 0).astype(np.float32)
    return {"weight": weight, "x": x}


def our_device_moments(n: int, seed: int) -> dict[str, np.ndarray]:
    """Sampled (n devices per g) and formula mean/std of G(t)/gmax, (G, T) each."""
    from hw_models.tiles.readout import read_out
    from hw_models.noise.pcm import PCM
    from hw_models.rng import NormalSource
    model, gmax = PCM(), 25.0
    shape = (len(G_NORM), len(DEVICE_TIMES_S))
    out = {k: np.zeros(shape) for k in ("mean", "std", "formula_mean", "formula_std")}
    for i, g in enumerate(G_NORM):
        rng = np.random.default_rng(seed + i)
        g_prog, state = model.program(np.full(n, g * gmax, np.float32), gmax, rng)
        normals = NormalSource(rng)
        for j, t in enumerate(DEVICE_TIMES_S.values()):
            g_t, _ = read_out((model,), g_prog, state, t, normals)
            g_t = g_t.astype(np.float64) / gmax
            out["mean"][i, j], out["std"][i, j] = g_t.mean(), g_t.std()
            fm, fs = model.conductance_moments(g * gmax, gmax, t)
            out["formula_mean"][i, j], out["formula_std"][i, j] = float(fm) / gmax, float(fs) / gmax
    return out


def our_layer_outputs(weight: np.ndarray, x: np.ndarray, draws: int, seed: int):
    """(mean, std) per output over `draws` programmings, (L, B, M) each, and the compensation
    factors (L, draws)."""
    from hw_models.tiles.analog import AnalogTile
    dev = layer_device(weight.shape[1], weight.shape[0])
    out = np.zeros((len(LAYER_TIMES_S), draws, x.shape[0], weight.shape[0]))
    alpha = np.zeros((len(LAYER_TIMES_S), draws))
    for d in range(draws):
        tile = AnalogTile(weight, dev, np.random.default_rng(seed + 1000 + d))
        for j, t in enumerate(LAYER_TIMES_S.values()):
            tile.set_time(t)
            out[j, d] = tile.forward(x)
            alpha[j, d] = tile.compensation
    return out.mean(axis=1), out.std(axis=1), alpha


def run_aihwkit(python: str, settings: dict, out_dir: Path) -> dict[str, np.ndarray]:
    src, dst = out_dir / "aihwkit_in.npz", out_dir / "aihwkit_out.npz"
    np.savez(src, **settings)
    proc = subprocess.run([python, str(SIDE_SCRIPT), str(src), str(dst)], capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise ConfigError(f"aihwkit's half failed ({python} {SIDE_SCRIPT.name}): {last}")
    with np.load(dst) as f:
        return {k: f[k] for k in f.files}


def compare(ours_dev, aih, ours_layer, x_clean, draws: int) -> dict:
    """Relative differences (device moments) and differences / output RMS (layer)."""
    rel_mean = np.abs(ours_dev["mean"] / aih["dev_mean"] - 1)
    rel_std = np.abs(ours_dev["std"] / aih["dev_std"] - 1)
    mean, std, alpha = ours_layer
    rms = np.sqrt(np.mean(x_clean ** 2))
    d_mean = np.abs(mean - aih["layer_mean"]) / rms
    d_std = np.abs(std - aih["layer_std"]) / rms
    # what sampling alone gives two identical simulators, per output: SE of a difference of means,
    # (s1^2 + s2^2) / n, and of a difference of stds, about (s1^2 + s2^2) / (2 n)
    var_sum = (std ** 2 + aih["layer_std"] ** 2) / rms ** 2
    floor_mean, floor_std = var_sum / draws, var_sum / (2 * draws)

    def ms(a):  # mean over outputs, per time
        return a.mean(axis=(1, 2))

    return {"device_rel_mean": rel_mean, "device_rel_std": rel_std, "output_rms": rms,
            "layer_dmean_max": d_mean.max(axis=(1, 2)), "layer_dmean_rms": np.sqrt(ms(d_mean ** 2)),
            "layer_dstd_max": d_std.max(axis=(1, 2)), "layer_dstd_rms": np.sqrt(ms(d_std ** 2)),
            "layer_dmean_floor": np.sqrt(ms(floor_mean)), "layer_dstd_floor": np.sqrt(ms(floor_std)),
            "layer_dmean_systematic": np.sqrt(np.maximum(ms(d_mean ** 2) - ms(floor_mean), 0)),
            "layer_dstd_systematic": np.sqrt(np.maximum(ms(d_std ** 2) - ms(floor_std), 0)),
            "layer_std_ours": std.mean(axis=(1, 2)) / rms, "layer_std_aihwkit": aih["layer_std"].mean(axis=(1, 2)) / rms,
            "alpha_ours": alpha.mean(axis=1), "alpha_aihwkit": aih["alpha"].mean(axis=1),
            "ideal_dmean_ours": np.abs(mean - x_clean).mean(axis=(1, 2)) / rms,
            "ideal_dmean_aihwkit": np.abs(aih["layer_mean"] - x_clean).mean(axis=(1, 2)) / rms}


def markdown(ours_dev, aih, cmp: dict, meta: dict) -> str:
    ok = lambda v: "✓" if v <= TOLERANCE else "✗"  # noqa: E731
    lines = [f"# pcm vs aihwkit {meta['aihwkit_version']} PCMLikeNoiseModel",
             "",
             f"Devices: {meta['n_devices']:,} per g, G(t)/gmax after programming, drift and 1/f read noise "
             "(ours: sampled; formula: PCM.conductance_moments).",
             "",
             "| g | t | mean ours | mean formula | mean aihwkit | Δ mean | std ours | std formula | std aihwkit | Δ std |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for i, g in enumerate(G_NORM):
        for j, label in enumerate(DEVICE_TIMES_S):
            dm, ds = cmp["device_rel_mean"][i, j], cmp["device_rel_std"][i, j]
            lines.append(f"| {g} | {label} | {ours_dev['mean'][i, j]:.5f} | {ours_dev['formula_mean'][i, j]:.5f} | "
                         f"{aih['dev_mean'][i, j]:.5f} | {100 * dm:.2f} % {ok(dm)} | {ours_dev['std'][i, j]:.5f} | "
                         f"{ours_dev['formula_std'][i, j]:.5f} | {aih['dev_std'][i, j]:.5f} | {100 * ds:.2f} % {ok(ds)} |")
    lines += ["",
              f"Layer {meta['in_features']}x{meta['out_features']}, batch {meta['batch']}, {meta['draws']} "
              "programmings; per output mean and std over the programmings; differences in % of the outputs' "
              f"RMS ({cmp['output_rms']:.4f}); sampling rms: what {meta['draws']} draws give two identical "
              "simulators; systematic: the rest, sqrt(rms^2 - sampling^2); alpha: mean drift-compensation factor.",
              "",
              "| t | Δ mean max | Δ mean rms | sampling rms | systematic | Δ std max | Δ std rms | sampling rms | "
              "systematic | std/RMS ours | std/RMS aihwkit | alpha ours | alpha aihwkit | |mean − W x|/RMS ours | aihwkit |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for j, label in enumerate(LAYER_TIMES_S):
        a, b = cmp["layer_dmean_max"][j], cmp["layer_dstd_max"][j]
        lines.append(f"| {label} | {100 * a:.2f} % {ok(a)} | {100 * cmp['layer_dmean_rms'][j]:.2f} % | "
                     f"{100 * cmp['layer_dmean_floor'][j]:.2f} % | {100 * cmp['layer_dmean_systematic'][j]:.2f} % | "
                     f"{100 * b:.2f} % {ok(b)} | {100 * cmp['layer_dstd_rms'][j]:.2f} % | "
                     f"{100 * cmp['layer_dstd_floor'][j]:.2f} % | {100 * cmp['layer_dstd_systematic'][j]:.2f} % | "
                     f"{100 * cmp['layer_std_ours'][j]:.2f} % | {100 * cmp['layer_std_aihwkit'][j]:.2f} % | "
                     f"{cmp['alpha_ours'][j]:.4f} | {cmp['alpha_aihwkit'][j]:.4f} | "
                     f"{100 * cmp['ideal_dmean_ours'][j]:.2f} % | {100 * cmp['ideal_dmean_aihwkit'][j]:.2f} % |")
    lines += ["", f"Wall time: ours {meta['seconds_ours']:.1f} s, aihwkit {meta['seconds_aihwkit']:.1f} s "
              f"({meta['threads']} thread(s) each)."]
    return "\n".join(lines) + "\n"


def run_crosscheck(out: Path, python: str | None, n_devices: int, draws: int, batch: int, seed: int,
                   threads: int) -> int:
    python = find_python(python)
    out.mkdir(parents=True, exist_ok=True)
    prob = problem(seed, batch=batch)
    out_features, in_features = prob["weight"].shape
    dev = layer_device(in_features, out_features)
    p = dev.periphery  # aihwkit's half is given the same device and periphery
    settings = {"g_norm": np.array(G_NORM), "times_s": np.array(list(DEVICE_TIMES_S.values())),
                "layer_times_s": np.array(list(LAYER_TIMES_S.values())), "n_devices": n_devices,
                "draws": draws, "seed": seed, "gmax_uS": dev.gmax_uS, "dac_bits": p.dac_bits,
                "adc_bits": p.adc_bits, "out_bound": p.out_bound, "out_noise": p.out_noise, "threads": threads,
                **prob}
    print(f"aihwkit's half ({python}) ...", file=sys.stderr, flush=True)
    aih = run_aihwkit(python, settings, out)
    print("our half ...", file=sys.stderr, flush=True)
    import torch
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    ours_dev = our_device_moments(n_devices, seed)
    ours_layer = our_layer_outputs(prob["weight"], prob["x"], draws, seed)
    seconds = time.perf_counter() - t0
    x_clean = (prob["x"].astype(np.float64) @ prob["weight"].T.astype(np.float64))[None]
    cmp = compare(ours_dev, aih, ours_layer, x_clean, draws)
    meta = {"aihwkit_version": str(aih["version"]), "n_devices": n_devices, "draws": draws, "batch": batch,
            "in_features": in_features, "out_features": out_features, "seed": seed, "threads": threads,
            "seconds_ours": seconds, "seconds_aihwkit": float(aih["seconds"].sum())}
    text = markdown(ours_dev, aih, cmp, meta)
    atomic_write_text(out / "crosscheck_aihwkit.md", text)
    payload = {"meta": meta, "g_norm": list(G_NORM), "device_times": list(DEVICE_TIMES_S),
               "layer_times": list(LAYER_TIMES_S),
               "ours": {k: v.tolist() for k, v in ours_dev.items()},
               "aihwkit": {"mean": aih["dev_mean"].tolist(), "std": aih["dev_std"].tolist()},
               "comparison": {k: np.asarray(v).tolist() for k, v in cmp.items()}}
    atomic_write_json(out / "crosscheck_aihwkit.json", payload, indent=1)
    print(text)
    worst = max(cmp["device_rel_mean"].max(), cmp["device_rel_std"].max(), cmp["layer_dmean_max"].max(),
                cmp["layer_dstd_max"].max())
    verdict = "within" if worst <= TOLERANCE else "BEYOND"
    print(f"worst difference {100 * worst:.2f} % ({verdict} the {100 * TOLERANCE:.0f} % bound); -> "
          f"{out / 'crosscheck_aihwkit.md'}, {out / 'crosscheck_aihwkit.json'}")
    return 0 if worst <= TOLERANCE else 1


def cmd_crosscheck(args: argparse.Namespace) -> int:
    for name, value, low in (("--devices", args.devices, 1000), ("--draws", args.draws, 2),
                             ("--batch", args.batch, 1), ("--threads", args.threads, 1)):
        if value < low:
            raise ConfigError(f"{name} must be >= {low}, got {value}")
    return run_crosscheck(Path(args.out), args.python, args.devices, args.draws, args.batch, args.seed,
                          args.threads)


def add_parser(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("crosscheck", help="our pcm model side by side with IBM aihwkit's (optional, "
                       "Python 3.12 + aihwkit 1.2.0: make aihwkit-venv)")
    c.add_argument("reference", choices=["aihwkit"], help="the simulator to compare with")
    c.add_argument("--out", default="runs/crosscheck", help="output folder (default runs/crosscheck)")
    c.add_argument("--python", help=f"interpreter that imports aihwkit (default: this one, else {DEFAULT_VENV})")
    c.add_argument("--devices", type=int, default=1_000_000, help="devices per conductance (default 10^6)")
    c.add_argument("--draws", type=int, default=2000, help="programmings of the layer (default 2000: the "
                   "per-output comparison needs >= ~1600 to push sampling noise under 3 %% of the RMS)")
    c.add_argument("--batch", type=int, default=8, help="inputs read through the layer (default 8)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--threads", type=int, default=1, help="torch threads on each side (default 1)")
    c.set_defaults(func=cmd_crosscheck)
