"""Figures of a run: confusion matrices, training curves, per-subject accuracy.

Plain ``matplotlib.figure.Figure`` objects with the Agg canvas, never pyplot: no global figure
registry, nothing to close, and safe to draw on a background thread (the tracking layer renders
while training goes on).
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from leukml import CLASS_NAMES
from leukml.training.evaluation import SubjectScore

CLASS_COLORS = ("tab:blue", "tab:red")  # hem, all


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


def milestone_figure(
    series: dict[str, dict[int, float]],
    ylabel: str,
    reference: dict[str, dict[int, float]] | None = None,
    reference_name: str = "paper",
) -> Figure:
    """One line per configuration over the epoch milestones (the paper's Figure 9); a configuration's
    ``reference`` points (the paper's) as unjoined markers of its colour, labelled ``reference_name``."""
    fig = Figure(figsize=(6.4, 3.6), dpi=100, layout="tight")
    ax = fig.subplots()
    for i, (label, points) in enumerate(series.items()):
        color = f"C{i % 10}"
        epochs = sorted(points)
        ax.plot(epochs, [points[e] for e in epochs], marker="o", color=color, label=label)
        theirs = (reference or {}).get(label, {})
        if theirs:
            at = sorted(theirs)
            ax.plot(
                at,
                [theirs[e] for e in at],
                linestyle="none",
                marker="D",
                markersize=8,
                markerfacecolor="none",
                markeredgewidth=1.6,
                color=color,
                label=f"{label}, {reference_name}",
            )
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    return fig


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG file bytes (to write beside a report and embed in its HTML)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def subject_accuracy_figure(rows: list[SubjectScore], title: str) -> Figure:
    """One horizontal bar per subject, its cells' accuracy, colored by class; the worst on top,
    each bar labelled with its number of cells."""
    rows = sorted(rows, key=lambda r: -r.accuracy)  # barh draws the first row at the bottom
    fig = Figure(figsize=(5.6, 1.2 + 0.22 * max(len(rows), 4)), dpi=100, layout="tight")
    ax = fig.subplots()
    y = np.arange(len(rows))
    ax.barh(y, [r.accuracy for r in rows], color=[CLASS_COLORS[r.label] for r in rows])
    for i, r in enumerate(rows):
        ax.text(min(r.accuracy, 1.0) + 0.01, i, f"{r.cells}", va="center", fontsize=7)
    ax.set_yticks(y, [r.subject for r in rows], fontsize=7)
    ax.set_xlim(0, 1.1)
    ax.set_xlabel("accuracy of its cells (number of cells at the bar's end)")
    ax.legend(
        handles=[Patch(color=CLASS_COLORS[c], label=CLASS_NAMES[c]) for c in (1, 0)],
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
        fontsize=7,
    )
    ax.set_title(title, fontsize=9)
    return fig
