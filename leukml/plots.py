"""Figures of a run: confusion matrices and training curves.

Plain ``matplotlib.figure.Figure`` objects with the Agg canvas, never pyplot: no global figure
registry, nothing to close, and safe to draw on a background thread (the tracking layer renders
while training goes on).
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from leukml import CLASS_NAMES


def confusion_figure(confusion: np.ndarray, title: str) -> Figure:
    """2x2 confusion matrix; rows true class, columns predicted (hem, all)."""
    fig = Figure(figsize=(3.6, 3.2), dpi=100, layout="tight")
    ax = fig.subplots()
    ax.imshow(confusion, cmap="Blues")
    for (i, j), count in np.ndenumerate(confusion):
        dark = count > confusion.max() / 2
        ax.text(j, i, str(count), ha="center", va="center", color="white" if dark else "black")
    ax.set_xticks([0, 1], CLASS_NAMES)
    ax.set_yticks([0, 1], CLASS_NAMES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    return fig


def curves_figure(history: dict[str, list[float]], val_label: str = "val") -> Figure:
    """Loss and accuracy per epoch, train vs validation."""
    fig = Figure(figsize=(9, 3.4), dpi=100, layout="tight")
    for ax, metric in zip(fig.subplots(1, 2), ("loss", "accuracy"), strict=True):
        for side, label in (("train", "train"), ("val", val_label)):
            values = history.get(f"{side}_{metric}", [])
            ax.plot(range(1, len(values) + 1), values, label=label)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.legend()
    return fig


def milestone_figure(series: dict[str, dict[int, float]], ylabel: str) -> Figure:
    """One line per configuration over the epoch milestones (the paper's Figure 9)."""
    fig = Figure(figsize=(6.4, 3.6), dpi=100, layout="tight")
    ax = fig.subplots()
    for label, points in series.items():
        epochs = sorted(points)
        ax.plot(epochs, [points[e] for e in epochs], marker="o", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.legend()
    return fig
