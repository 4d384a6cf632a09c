"""Figures of a run: confusion matrices and training curves (matplotlib, no display needed)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from leukml import CLASS_NAMES  # noqa: E402


def confusion_figure(confusion: np.ndarray, title: str) -> Figure:
    """2x2 confusion matrix; rows true class, columns predicted (hem, all)."""
    fig, ax = plt.subplots(figsize=(3.6, 3.2), dpi=100)
    ax.imshow(confusion, cmap="Blues")
    for (i, j), count in np.ndenumerate(confusion):
        dark = count > confusion.max() / 2
        ax.text(j, i, str(count), ha="center", va="center", color="white" if dark else "black")
    ax.set_xticks([0, 1], CLASS_NAMES)
    ax.set_yticks([0, 1], CLASS_NAMES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def curves_figure(history: dict[str, list[float]], val_label: str = "val") -> Figure:
    """Loss and accuracy per epoch, train vs validation."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), dpi=100)
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for side, label in (("train", "train"), ("val", val_label)):
            values = history.get(f"{side}_{metric}", [])
            ax.plot(range(1, len(values) + 1), values, label=label)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.legend()
    fig.tight_layout()
    return fig


def close(fig: Figure) -> None:
    plt.close(fig)


def milestone_figure(series: dict[str, dict[int, float]], ylabel: str) -> Figure:
    """One line per configuration over the epoch milestones (the paper's Figure 9)."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    for label, points in series.items():
        epochs = sorted(points)
        ax.plot(epochs, [points[e] for e in epochs], marker="o", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.legend()
    fig.tight_layout()
    return fig
