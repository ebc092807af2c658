"""Plots people would rather look at than read: learning curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def plot_histories(histories: dict[str, list[dict]], path: Path, title: str = "") -> None:
    """Test (solid) and train (dashed) accuracy per epoch, one colour per run."""
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
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
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
