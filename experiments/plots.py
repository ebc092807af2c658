"""Plots people would rather look at than read: learning curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from experiments.outdir import save_figure  # noqa: E402


def plot_histories(histories: dict[str, list[dict]], path: Path, title: str = "") -> None:
    """Test (solid) and train (dashed) accuracy per epoch, one colour per run; the legend sits to
    the right of the axes, off the data."""
    fig, ax = plt.subplots(figsize=(7.6, 4), dpi=120)
    for i, (name, hist) in enumerate(histories.items()):
        epochs = [h["epoch"] for h in hist]
        colour = f"C{i}"
        ax.plot(epochs, [h["test_accuracy"] for h in hist], "-o", color=colour, label=f"{name} test")
        ax.plot(epochs, [h["train_accuracy"] for h in hist], "--x", color=colour, label=f"{name} train")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    fig.tight_layout()
    save_figure(fig, path)


def plot_drift(rows: list[dict], float_accuracy: float, path: Path, title: str = "") -> None:
    """Test accuracy vs time after programming (log axis), mean ± std over seeds, with and
    without drift compensation; the float accuracy as a dashed line; the legend under the axes,
    off the data."""
    import numpy as np
    fig, ax = plt.subplots(figsize=(6, 4.4), dpi=120)
    for i, comp in enumerate((False, True)):
        times = sorted({r["time_s"] for r in rows if r["compensation"] == comp})
        accs = [[r["test_accuracy"] for r in rows if r["compensation"] == comp and r["time_s"] == t]
                for t in times]
        mean, std = np.array([np.mean(a) for a in accs]), np.array([np.std(a) for a in accs])
        label = "with global drift compensation" if comp else "no compensation"
        ax.plot(times, mean, "-o", color=f"C{i}", label=label)
        ax.fill_between(times, mean - std, mean + std, color=f"C{i}", alpha=0.2)
    ax.axhline(float_accuracy, color="k", ls="--", lw=1, label="float reference")
    ax.set_xscale("log")
    ax.set_xlabel("time after programming (s)")
    ax.set_ylabel("test accuracy")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False)
    fig.tight_layout()
    save_figure(fig, path)
