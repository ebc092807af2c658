"""`onchip-ff bench`: simulator reads, training steps and device kernels timed against their torch
float32 equivalents in the same run (median of repeats after a warm-up), with the target ratio of
each entry; written to DIR/bench.json and DIR/bench.md (the README's table) and printed.

Training steps: DF and BP on every hardware configuration in STEP_CONFIGS (every preset, and the
constant-step pulsed device of aihwkit on symmetric pairs), batch 256, 784-1000-1000-1000, each
against the torch float step of the same method.  Pulsed entries also state what their writes ask
of the devices: the mean pulses fired per step (E[n] = |dg| / step summed over the devices of
every layer) and the largest request of one device, in pulses.

`--contention`: the DF step of every configuration timed alone and then beside two busy-loop
processes; the slowdown is the ratio of the two (fair share on 2 cores: 2x).  `--aihwkit PYTHON`:
aihwkit 1.2.0's closest configurations timed by that interpreter (experiments/aihwkit_speed.py)
beside ours, same layer, batch and thread count (experiments/pulse_train_bench.py side_by_side).
"""

from __future__ import annotations

import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from experiments.outdir import atomic_write_json, atomic_write_text
from experiments.pulse_train_bench import median_s
from onchip_ff import config
from onchip_ff.methods import build_learner

LAYERS = (784, 1000, 1000, 1000)
TARGET = 2.0  # every training step and the PCM inference read: at most 2x its torch float equivalent
# name -> overrides of the [hardware] table (all on the sim backend)
STEP_CONFIGS = {
    "ideal": ["hardware.preset=ideal"],
    "fixed8": ["hardware.preset=fixed8"],
    "pcm": ["hardware.preset=pcm"],
    "reram_pulsed": ["hardware.preset=reram_pulsed"],
    "pulsed_constant": ["hardware.preset=reram_pulsed", 'hardware.noise=["pulsed_constant"]'],
}
BUSY_LOOP = "while True: pass"


def _median_s(fn: Callable[[], object], repeats: int) -> float:
    """Median seconds of `repeats` calls after a warm-up (experiments/pulse_train_bench.py median_s)."""
    return median_s(fn, repeats)[0]


def _entry(name: str, shape: str, sim: Callable, ref: Callable | None, repeats: int,
           target: float | None = None, **extra) -> dict:
    """ref None: an entry with no torch equivalent (torch_s and ratio_to_torch null).  target: the
    largest acceptable ratio (None: none set); met: ratio <= target."""
    sim_s = _median_s(sim, repeats)
    torch_s = None if ref is None else _median_s(ref, repeats)
    ratio = None if torch_s is None else sim_s / torch_s
    return {"name": name, "shape": shape, "sim_s": sim_s, "torch_s": torch_s, "ratio_to_torch": ratio,
            "target": target, "met": None if target is None or ratio is None else ratio <= target, **extra}


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
    """One layer's forward read on each kind of array against x @ W^T; the PCM inference read is
    the deployed array one day after programming (drift, frozen read noise, compensation)."""
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
    for name, p, t_s, target in (("ideal MVM", "ideal", None, None), ("fixed8 MVM", "fixed8", None, TARGET),
                                 ("pcm noisy forward MVM", "pcm", None, None),
                                 ("pcm inference forward, 1 day", "pcm", 86400.0, TARGET)):
        tile = make_tile(w, preset(p), np.random.default_rng(1))
        if t_s is not None:
            tile.set_time(t_s)
        out.append(_entry(name, shape, lambda tile=tile: tile.forward(x), ref, repeats, target))
    return out


def _batch(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((batch, 1, 28, 28)).astype(np.float32))
    return x, torch.from_numpy(rng.integers(0, 10, batch))


def _learner(method: str, hardware: list[str]):
    hidden = "[" + ", ".join(str(h) for h in LAYERS[1:]) + "]"
    cfg = config.load(None, [f"objective.method={method}", f"model.hidden={hidden}"] + hardware)
    return build_learner(cfg, (1, 28, 28), 10, torch.Generator().manual_seed(0))


class PulseCounter:
    """Counts what the pulsed writes of a learner ask of the devices: E[pulses] = |dg| / step per
    device and polarity (the pulse count's mean under stochastic rounding), and the largest
    request of one device in pulses."""

    def __init__(self) -> None:
        self.pulses, self.max_pulses, self.steps = 0.0, 0.0, 0

    @contextmanager
    def counting(self):
        from hw_models.tiles import update

        real = update.Pulsed.move

        def counted(policy, tile, requests):
            step = pulse_step_uS(update.update_model(tile.device), tile.device.gmax_uS)
            if step:  # requests: +-(delta_w / w_max) gmax / 2 per device of each polarity
                half = np.abs(requests[0]) / np.float32(step)
                self.pulses += 2.0 * float(half.sum(dtype=np.float64))
                self.max_pulses = max(self.max_pulses, float(half.max(initial=0.0)))
            return real(policy, tile, requests)

        update.Pulsed.move = counted
        try:
            yield self
        finally:
            update.Pulsed.move = real


def pulse_step_uS(model, gmax_uS: float) -> float | None:
    """The nominal conductance step of one pulse of a pulsed update model (None: not pulsed)."""
    if model is None:
        return None
    if model.name == "pulsed_constant":
        return model.dw_min_uS
    if model.name == "pulsed_nonlinear":
        return ((model.gmax_uS or gmax_uS) - model.gmin_uS) / model.p_max
    return None


def _step_entries(batch: int, repeats: int) -> list[dict]:
    x, y = _batch(batch)
    shape = f"batch {batch}, " + "-".join(map(str, LAYERS))
    out = []
    for method in ("df", "bp"):
        ref_learner = _learner(method, [])
        ref = lambda r=ref_learner: r.train_step(x, y)  # noqa: E731
        for name, hw in STEP_CONFIGS.items():
            sim = _learner(method, ["hardware.backend=sim"] + hw)
            counter = PulseCounter()
            with counter.counting():
                entry = _entry(f"{method.upper()} train step sim/{name}", shape, lambda s=sim: s.train_step(x, y),
                               ref, repeats, TARGET)
                counter.steps = repeats + 1
            if counter.pulses:
                entry["pulses_per_step"] = counter.pulses / counter.steps
                entry["max_pulses_per_device"] = counter.max_pulses
            out.append(entry)
    return out


def _pulse_train_entries(batch: int, repeats: int, lr: float = 0.05) -> list[dict]:
    """aihwkit's stochastic pulse-train update (pulsed_constant, update_scheme = "pulse_train",
    aihwkit's ConstantStepDevice in our terms: experiments/pulse_train_bench.py) of one array from
    a batch of activations x and errors d, against the float SGD update W -= lr d^T x; with the
    update intensity lr max|x| max|d| / dw_min and the coincidences (pulses per device) fired."""
    from experiments.pulse_train_bench import bench_inputs, constant_step_device, pulse_stats
    from hw_models.tiles import make_tile

    k, m = LAYERS[0], LAYERS[1]
    w, x, d = bench_inputs(batch, k, m)
    tile = make_tile(w, constant_step_device(k), np.random.default_rng(1))
    stats = pulse_stats(x, d, lr, tile)
    wt, xt, dt = (torch.from_numpy(a.copy()) for a in (w, x, d))
    ref = lambda: wt.sub_(lr * (dt.T @ xt))  # noqa: E731
    return [_entry("pulse-train update (aihwkit scheme)", f"batch {batch}, {m}x{k}",
                   lambda: tile.outer_update(x, d, lr), ref, repeats, None, lr=lr, **stats)]


def aihwkit_rows(python: str, batch: int, repeats: int) -> list[dict]:
    """experiments/pulse_train_bench.side_by_side with this process's torch thread count."""
    from experiments.pulse_train_bench import side_by_side
    return side_by_side(python, threads=torch.get_num_threads(), batch=batch, k=LAYERS[0], m=LAYERS[1],
                        repeats=repeats, slow_repeats=max(1, min(repeats, 5)))


def aihwkit_table(rows: list[dict]) -> str:
    """Markdown table of the side-by-side rows (the README's)."""
    out = ["| entry | shape | threads | ours ms | aihwkit ms | aihwkit / ours | note |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['name']} | {r['shape']} | {r['threads']} | {r['ours_s'] * 1e3:.1f} | "
                   f"{r['aihwkit_s'] * 1e3:.1f} | {r['speedup']:.2f} | {r['note']} |")
    return "\n".join(out) + "\n"


@contextmanager
def busy_loops(n: int):
    """n processes that spin on the CPU for the duration of a with-block (killed afterwards)."""
    procs = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(n)]
    try:
        time.sleep(0.5)  # let them start spinning
        yield procs
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def _contention_entries(batch: int, repeats: int, loops: int = 2) -> list[dict]:
    """DF step of every configuration alone, then beside `loops` busy-loop processes."""
    x, y = _batch(batch)
    out = []
    for name, hw in {"torch": [], **{k: ["hardware.backend=sim"] + v for k, v in STEP_CONFIGS.items()}}.items():
        learner = _learner("df", hw)
        step = lambda s=learner: s.train_step(x, y)  # noqa: E731
        alone = _median_s(step, repeats)
        with busy_loops(loops):
            shared = _median_s(step, repeats)
        out.append({"name": f"DF train step {'torch' if name == 'torch' else 'sim/' + name} beside {loops} busy loops",
                    "shape": f"batch {batch}", "alone_s": alone, "shared_s": shared, "slowdown": shared / alone,
                    "target": TARGET, "met": shared / alone <= TARGET})
    return out


def table(entries: list[dict]) -> str:
    """Markdown table of bench entries (the README's)."""
    rows = ["| entry | shape | sim ms | torch ms | ratio | target |", "|---|---|---|---|---|---|"]
    for e in entries:
        if "slowdown" in e:
            sim, ref, ratio = f"{e['shared_s'] * 1e3:.1f}", f"{e['alone_s'] * 1e3:.1f} (alone)", f"{e['slowdown']:.2f}"
        else:
            sim = f"{e['sim_s'] * 1e3:.2f}"
            ref = "–" if e["torch_s"] is None else f"{e['torch_s'] * 1e3:.2f}"
            ratio = "–" if e["ratio_to_torch"] is None else f"{e['ratio_to_torch']:.2f}"
        target = "–" if e.get("target") is None else f"≤ {e['target']:g} " + ("✓" if e["met"] else "✗")
        name = e["name"]
        if "coincidences_per_step" in e:
            name += (f" (intensity ≤ {e['intensity_max']:.2f}, {e['coincidences_per_step'] / 1e6:.2f} M "
                     f"coincidences/step)")
        if "pulses_per_step" in e:
            name += f" ({e['pulses_per_step'] / 1e6:.2f} M pulses/step, ≤ {e['max_pulses_per_device']:.1f} per device)"
        rows.append(f"| {name} | {e['shape']} | {sim} | {ref} | {ratio} | {target} |")
    return "\n".join(rows) + "\n"


def run_bench(out: Path, batch: int = 256, repeats: int = 10, contention: bool = False,
              aihwkit_python: str | None = None) -> int:
    """Time every entry; with contention, also the DF steps beside two busy loops; with
    aihwkit_python (an interpreter where aihwkit 1.2.0 imports), the side-by-side with aihwkit."""
    entries = (_mvm_entries(batch, repeats) + _step_entries(batch, repeats)
               + _pulse_train_entries(batch, repeats) + _device_entries(repeats))
    if contention:
        entries += _contention_entries(batch, repeats)
    side = aihwkit_rows(aihwkit_python, batch, repeats) if aihwkit_python else []
    import numba
    meta = {"torch_threads": torch.get_num_threads(), "numba_threads": numba.get_num_threads(),
            "torch_version": torch.__version__, "numpy_version": np.__version__, "batch": batch,
            "repeats": repeats, "target_ratio": TARGET}
    atomic_write_json(out / "bench.json", {"meta": meta, "entries": entries, "aihwkit": side})
    md = table(entries) + ("\n" + aihwkit_table(side) if side else "")
    atomic_write_text(out / "bench.md", md)
    print(md)
    missed = [e["name"] for e in entries if e.get("met") is False]
    print(f"{len(missed)} of {sum(e.get('met') is not None for e in entries)} targets missed"
          + (": " + "; ".join(missed) if missed else ""))
    print(f"-> {out / 'bench.json'}, {out / 'bench.md'}")
    return 0
