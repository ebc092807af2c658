"""Plots of the memory report: stacked component bars per method, and peak bytes against batch
size for DF, FF, DeeperForward, IntFF, Scalable FF, BP and checkpointed BP (measured solid,
predicted dashed) — for the PyTorch view (memory.png) and the chip view (chip.png: digital buffers
tallied on the simulator, in MiB = bits / 8 / 2^20)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from accountant.memory import METHODS  # noqa: E402
from experiments.outdir import save_figure  # noqa: E402

STACK = (("weights", ("weights", "master_copy")), ("optimizer", ("optimizer",)),
         ("activations", ("activations",)), ("gradients", ("gradients",)),
         ("inputs + workspace", ("inputs", "workspace")))
LINES = ("df", "ff", "deeperforward", "intff", "sff", "bp", "bp_ckpt")
CHIP_STACK = (("optimizer", ("optimizer",)), ("activations", ("activations",)), ("errors", ("errors",)),
              ("weight gradients", ("weight_grads",)), ("inputs + digital params", ("inputs", "digital_params")))
MB = 2.0 ** 20


@dataclass(frozen=True)
class _View:
    stack: tuple
    measured: str  # row field of the measurement
    predicted: str
    scale: float  # row value -> MiB
    word: str  # "measured" / "tallied"
    what: str  # title: what the bars are


PYTORCH = _View(STACK, "measured_bytes", "predicted_bytes", 1 / MB, "measured", "training peak")
CHIP = _View(CHIP_STACK, "tallied", "predicted", 1 / (8 * MB), "tallied", "chip digital buffers")


def plot_memory(rows: list[dict], path: Path) -> None:
    """memory.png: one column per architecture: top, components at the largest batch and smallest
    depth (float32, gradients freed as the learners run — else kept —, the most common optimizer);
    bottom, peak vs batch at that depth."""
    _plot(rows, path, PYTORCH)


def plot_chip(chip: list[dict], path: Path) -> None:
    """chip.png: as memory.png for the chip view's digital buffers at the peak (arrays not drawn:
    their devices are in chip.csv)."""
    _plot(chip, path, CHIP)


def _plot(rows: list[dict], path: Path, view: _View) -> None:
    def _value(row: dict) -> float:
        v = row[view.measured] if row[view.measured] is not None else row[view.predicted]
        return (v or 0) * view.scale

    base = [r for r in rows if r["format"] == "float32"]
    archs = sorted({r["arch"] for r in base}) or ["mlp"]
    fig, axes = plt.subplots(2, len(archs), figsize=(6.5 * len(archs), 8), dpi=110, squeeze=False)
    for col, arch in enumerate(archs):
        sel = [r for r in base if r["arch"] == arch]
        if not sel:
            continue
        grads = "freed" if any(r["grads"] == "freed" for r in sel) else sel[0]["grads"]
        sel = [r for r in sel if r["grads"] == grads]
        opts = [r["optimizer"] for r in sel]
        opt = max(set(opts), key=opts.count)
        sel = [r for r in sel if r["optimizer"] == opt]
        depth = min(r["depth"] for r in sel)
        batch = max(r["batch"] for r in sel if r["depth"] == depth)
        methods = [m for m in METHODS if any(r["method"] == m for r in sel)]
        ax = axes[0][col]
        bottom = [0.0] * len(methods)
        for i, (label, comps) in enumerate(view.stack):
            heights = []
            for m in methods:
                vals = [_value(r) for r in sel if r["method"] == m and r["batch"] == batch
                        and r["depth"] == depth and r["component"] in comps]
                heights.append(max(sum(vals), 0.0))
            ax.bar(methods, heights, bottom=bottom, label=label, color=f"C{i}")
            bottom = [b + h for b, h in zip(bottom, heights)]
        top = max(bottom, default=0.0)
        for j, m in enumerate(methods):
            peak = [_value(r) for r in sel if r["method"] == m and r["batch"] == batch
                    and r["depth"] == depth and r["component"] == "peak"]
            if peak:
                ax.plot([j - 0.4, j + 0.4], [peak[0]] * 2, "k-", lw=1.5)
                top = max(top, peak[0])
        ax.set_ylim(0, top * 1.35 or 1.0)  # headroom above the bars for the legend
        ax.set_ylabel(f"MiB ({view.word}; black line: peak)")
        ax.tick_params(axis="x", labelrotation=30 if len(methods) > 5 else 0)
        ax.set_title(f"{view.what}: {arch}\ndepth {depth}, batch {batch}, float32, {opt}, grads {grads}",
                     fontsize=9)
        ax.legend(fontsize=7, ncol=3, loc="upper center")
        ax = axes[1][col]
        for i, m in enumerate(LINES):
            pts = sorted(((r["batch"], r) for r in sel if r["method"] == m and r["depth"] == depth
                          and r["component"] == "peak"), key=lambda t: t[0])
            if not pts:
                continue
            xs = [b for b, _ in pts]
            ax.plot(xs, [(r[view.measured] or 0) * view.scale for _, r in pts], "-o", color=f"C{i}",
                    label=f"{m} {view.word}")
            ax.plot(xs, [r[view.predicted] * view.scale for _, r in pts], "--", color=f"C{i}", alpha=0.7,
                    label=f"{m} predicted")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel("peak MiB")
        ax.set_title(f"{arch}, depth {depth}:\n{view.what} at the peak vs batch", fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    save_figure(fig, path)
