"""`onchip-ff bench`: simulator kernels and training steps timed against torch float32 in the same
run (median of repeats after a warm-up), written to DIR/bench.json and printed as a table."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from experiments.outdir import atomic_write_json
from onchip_ff import config
from onchip_ff.methods import build_learner

LAYERS = (784, 1000, 1000, 1000)


def _median_s(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: JIT compilation, allocator, BLAS threads
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _entry(name: str, shape: str, sim: Callable, ref: Callable | None, repeats: int) -> dict:
    """ref None: an entry with no torch equivalent (torch_s and ratio_to_torch null)."""
    sim_s = _median_s(sim, repeats)
    torch_s = None if ref is None else _median_s(ref, repeats)
    return {"name": name, "shape": shape, "sim_s": sim_s, "torch_s": torch_s,
            "ratio_to_torch": None if torch_s is None else sim_s / torch_s}


def _device_entries(repeats: int, n: int = 1_000_000) -> list[dict]:
    """Programming n PCM devices (uniform targets in [0, gmax]) and reading them 1 day later
    (drift, frozen read noise): the deployment path of the pcm noise model."""
    from hw_models.tiles.readout import read_out
    from hw_models.noise.pcm import PCM
    from hw_models.rng import NormalSource

    model, rng = PCM(), np.random.default_rng(0)
    target = rng.uniform(0, 25.0, n).astype(np.float32)
    normals = NormalSource(rng)

    def program_and_drift():
        g_prog, state = model.program(target, 25.0, rng)
        return read_out((model,), g_prog, state, 86400.0, normals)

    return [_entry("pcm program + 1 day drift", f"{n:,} devices", program_and_drift, None, repeats)]


def _mvm_entries(batch: int, repeats: int) -> list[dict]:
    from hw_models.presets import preset
    from hw_models.tiles import make_tile

    rng = np.random.default_rng(0)
    k, m = LAYERS[0], LAYERS[1]
    w = (rng.standard_normal((m, k)) * 0.03).astype(np.float32)
    x = rng.standard_normal((batch, k)).astype(np.float32)
    wt, xt = torch.from_numpy(w), torch.from_numpy(x)
    ref = lambda: xt @ wt.T  # noqa: E731
    shape = f"{batch}x{k} @ {k}x{m}"
    out = []
    for name, p in (("fixed8 MVM", "fixed8"), ("pcm noisy forward MVM", "pcm"), ("ideal MVM", "ideal")):
        tile = make_tile(w, preset(p), np.random.default_rng(1))
        out.append(_entry(name, shape, lambda tile=tile: tile.forward(x), ref, repeats))
    return out


def _step_entries(batch: int, repeats: int) -> list[dict]:
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((batch, 1, 28, 28)).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, 10, batch))
    hidden = "[" + ", ".join(str(h) for h in LAYERS[1:]) + "]"

    def learner(extra):
        cfg = config.load(None, ["objective.method=df", f"model.hidden={hidden}"] + extra)
        return build_learner(cfg, (1, 28, 28), 10, torch.Generator().manual_seed(0))

    ref_learner = learner([])
    ref = lambda: ref_learner.train_step(x, y)  # noqa: E731
    shape = f"batch {batch}, " + "-".join(map(str, LAYERS))
    out = []
    for p in ("ideal", "fixed8", "pcm"):
        sim_learner = learner(["hardware.backend=sim", f"hardware.preset={p}"])
        out.append(_entry(f"DF train step sim/{p}", shape, lambda s=sim_learner: s.train_step(x, y),
                          ref, repeats))
    return out


def run_bench(out: Path, batch: int = 256, repeats: int = 10) -> int:
    entries = _mvm_entries(batch, repeats) + _step_entries(batch, repeats) + _device_entries(repeats)
    meta = {"torch_threads": torch.get_num_threads(), "torch_version": torch.__version__,
            "numpy_version": np.__version__, "batch": batch, "repeats": repeats}
    atomic_write_json(out / "bench.json", {"meta": meta, "entries": entries})
    print(f"{'name':<28}{'shape':<34}{'sim ms':>9}{'torch ms':>10}{'ratio':>8}")
    for e in entries:
        ref = "–" if e["torch_s"] is None else f"{e['torch_s'] * 1e3:.2f}"
        ratio = "–" if e["ratio_to_torch"] is None else f"{e['ratio_to_torch']:.2f}"
        print(f"{e['name']:<28}{e['shape']:<34}{e['sim_s'] * 1e3:>9.2f}{ref:>10}{ratio:>8}")
    print(f"\n-> {out / 'bench.json'}")
    return 0
