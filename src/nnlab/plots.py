"""Figures, drawn only from what run folders hold (metrics rows, summaries).

matplotlib is imported inside each function (with the file-only Agg backend),
so importing nnlab never pays for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: Sequence[dict[str, float]], path: Path, title: str = "") -> Path:
    """Loss and accuracy, train and test, against epoch: two panels side by side."""
    plt = _pyplot()
    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for split, style in (("train", "-"), ("test", "--")):
        ax_loss.plot(epochs, [r[f"{split}_loss"] for r in history], style, label=split)
        ax_acc.plot(epochs, [r[f"{split}_acc"] for r in history], style, label=split)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
