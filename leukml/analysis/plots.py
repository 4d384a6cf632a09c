"""The report's figures, drawn with matplotlib: confusion matrices and the accuracy over the epoch
milestones. The figures a training logs are drawn with Pillow (``leukml.analysis.raster``).

Plain ``matplotlib.figure.Figure`` objects with the Agg canvas, never pyplot: no global figure
registry, nothing to close, and safe to draw on a background thread (the tracking layer renders
while training goes on).
"""

from __future__ import annotations

import io

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
