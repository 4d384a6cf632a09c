"""The figures a training logs, drawn straight into pixels.

A confusion matrix and the accuracy per subject at each milestone, the loss and accuracy curves at
the end, as ``PIL.Image`` images: the same content and size as matplotlib drew them, at 4-28 ms
each instead of 40-180 ms of matplotlib's text layout. A training draws them on the tracking
layer's background thread while it goes on (the curves while its model is written): with
matplotlib they took more of a 2-core machine's CPU than anything else tracking does but writing
the model (bench/RESULTS.md, issue 27). The report's figures, drawn once, stay matplotlib's
(``leukml.analysis.plots``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.ticker import MaxNLocator
from PIL import Image, ImageDraw, ImageFont

from leukml import CLASS_NAMES
from leukml.analysis.calibration import Bin
from leukml.training.evaluation import SubjectScore

CLASS_COLORS = ((31, 119, 180), (214, 39, 40))  # matplotlib's tab:blue (hem), tab:red (all)
SIDE_COLORS = ((31, 119, 180), (255, 127, 14))  # tab:blue (train), tab:orange (val)
INK, AXIS, GRID = (0, 0, 0), (60, 60, 60), (225, 225, 225)
WHITE = (255, 255, 255)


@functools.cache
def _font(size: int) -> ImageFont.FreeTypeFont:
    """DejaVu Sans, matplotlib's default face, from matplotlib's own files."""
    return ImageFont.truetype(str(Path(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans.ttf")), size)


def _text_size(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.FreeTypeFont) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left, bottom - top


def _title(draw: ImageDraw.ImageDraw, width: int, title: str) -> int:
    """The title's lines centred at the top; returns the height they take."""
    font, y = _font(12), 6
    for line in title.splitlines():
        w, _ = _text_size(draw, line, font)
        draw.text(((width - w) / 2, y), line, fill=INK, font=font)
        y += 15
    return y + 4


def _vertical(
    image: Image.Image, text: str, center: tuple[float, float], font: ImageFont.FreeTypeFont
) -> None:
    """``text`` turned a quarter left (an axis label), centred on ``center``."""
    w, h = _text_size(ImageDraw.Draw(image), text, font)
    label = Image.new("RGBA", (w + 2, h + 6), (255, 255, 255, 0))
    ImageDraw.Draw(label).text((1, 0), text, fill=INK, font=font)
    label = label.rotate(90, expand=True)
    image.paste(label, (int(center[0] - label.width / 2), int(center[1] - label.height / 2)), label)


def _blues(fraction: float) -> tuple[int, int, int]:
    """matplotlib's ``Blues`` colour map at ``fraction`` (0: near white, 1: dark blue)."""
    r, g, b, _ = matplotlib.colormaps["Blues"](float(np.clip(fraction, 0.0, 1.0)))
    return round(255 * r), round(255 * g), round(255 * b)


def confusion_image(confusion: np.ndarray, title: str) -> Image.Image:
    """2x2 confusion matrix, 360x320 px: rows the true class, columns the predicted one (hem, all);
    each cell shaded by its count from the smallest (white) to the largest (dark blue), the count
    written in it."""
    width, height, cell = 360, 320, 110
    image = Image.new("RGB", (width, height), WHITE)
    draw = ImageDraw.Draw(image)
    titled = _title(draw, width, title)
    top = titled + (height - titled - 2 * cell - 40) // 2  # the matrix and its labels centred below
    left = (width - 2 * cell) // 2 + 14
    low, high = int(confusion.min()), int(confusion.max())
    label_font, count_font = _font(13), _font(14)
    for (i, j), count in np.ndenumerate(confusion):
        x, y = left + j * cell, top + i * cell
        fraction = (count - low) / (high - low) if high > low else 0.0
        draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=_blues(fraction))
        text = str(int(count))
        w, h = _text_size(draw, text, count_font)
        ink = WHITE if count > high / 2 else INK  # on the darker half of the colour map
        draw.text((x + (cell - w) / 2, y + (cell - h) / 2 - 2), text, fill=ink, font=count_font)
    draw.rectangle((left - 1, top - 1, left + 2 * cell, top + 2 * cell), outline=AXIS)
    for k, name in enumerate(CLASS_NAMES):
        w, h = _text_size(draw, name, label_font)
        draw.text((left + k * cell + (cell - w) / 2, top + 2 * cell + 4), name, fill=INK, font=label_font)
        draw.text((left - w - 6, top + k * cell + (cell - h) / 2 - 2), name, fill=INK, font=label_font)
    w, _ = _text_size(draw, "predicted", label_font)
    draw.text((left + cell - w / 2, top + 2 * cell + 22), "predicted", fill=INK, font=label_font)
    _vertical(image, "true", (left - 50, top + cell), label_font)
    return image


def subject_accuracy_image(rows: list[SubjectScore], title: str) -> Image.Image:
    """One horizontal bar per subject, its cells' accuracy on 0..1, coloured by class, the worst on
    top, each labelled with its number of cells; 560 px wide, 22 px a subject."""
    rows = sorted(rows, key=lambda r: r.accuracy)
    width, bar_h = 560, 22
    small, label_font = _font(9), _font(11)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left = 12 + max((_text_size(probe, r.subject, small)[0] for r in rows), default=0)
    legend_w = 8 + max(_text_size(probe, name, small)[0] for name in CLASS_NAMES) + 22
    right = width - legend_w - 10
    top = len(title.splitlines()) * 15 + 14
    plot_h = bar_h * max(len(rows), 4)
    height = top + plot_h + 48
    image = Image.new("RGB", (width, height), WHITE)
    draw = ImageDraw.Draw(image)
    _title(draw, width, title)
    scale = (right - left) / 1.1  # the x axis runs to 1.1: room for the counts after a full bar
    for tick in np.arange(0.0, 1.01, 0.2):
        x = left + tick * scale
        draw.line((x, top, x, top + plot_h), fill=GRID)
        draw.line((x, top + plot_h, x, top + plot_h + 4), fill=AXIS)
        text = f"{tick:.1f}"
        w, _ = _text_size(draw, text, small)
        draw.text((x - w / 2, top + plot_h + 6), text, fill=INK, font=small)
    for i, r in enumerate(rows):
        y = top + i * bar_h + (plot_h - bar_h * len(rows)) // 2
        end = left + min(max(r.accuracy, 0.0), 1.0) * scale
        if end > left:
            draw.rectangle((left, y + 3, end, y + bar_h - 4), fill=CLASS_COLORS[r.label])
        w, h = _text_size(draw, r.subject, small)
        draw.text((left - w - 6, y + (bar_h - h) / 2 - 2), r.subject, fill=INK, font=small)
        draw.text((end + 4, y + (bar_h - h) / 2 - 2), str(r.cells), fill=INK, font=small)
    draw.rectangle((left, top, right, top + plot_h), outline=AXIS)
    xlabel = "accuracy of its cells (number of cells at the bar's end)"
    w, _ = _text_size(draw, xlabel, label_font)
    draw.text((left + (right - left - w) / 2, top + plot_h + 22), xlabel, fill=INK, font=label_font)
    for k, c in enumerate((1, 0)):  # all first, as the report's legend
        x, y = right + 10, top + 4 + 16 * k
        draw.rectangle((x, y + 2, x + 14, y + 10), fill=CLASS_COLORS[c])
        draw.text((x + 18, y), CLASS_NAMES[c], fill=INK, font=small)
    return image


def reliability_image(bins: list[Bin], title: str) -> Image.Image:
    """The reliability diagram, 360x360 px: per confidence bin (x: the predicted class's
    confidence, 0..1) a bar up to its cells' accuracy, the diagonal of perfect calibration, and
    each non-empty bin's number of cells above its bar. A bar below the diagonal: over-confident."""
    size = 360
    image = Image.new("RGB", (size, size), WHITE)
    draw = ImageDraw.Draw(image)
    top = _title(draw, size, title) + 6
    left, right, bottom = 54, size - 14, size - 44
    small, label_font = _font(9), _font(11)

    def at(x: float, y: float) -> tuple[float, float]:
        return left + x * (right - left), bottom - y * (bottom - top)

    for tick in np.arange(0.0, 1.01, 0.2):
        x, y = at(tick, tick)
        draw.line((left, y, right, y), fill=GRID)
        text = f"{tick:.1f}"
        w, h = _text_size(draw, text, small)
        draw.text((left - w - 6, y - h / 2 - 2), text, fill=INK, font=small)
        draw.text((x - w / 2, bottom + 5), text, fill=INK, font=small)
    for b in bins:
        if not b.cells:
            continue
        x0, y = at(b.low, b.accuracy)
        x1, _ = at(b.high, 0)
        draw.rectangle((x0 + 1, y, x1 - 1, bottom), fill=CLASS_COLORS[0], outline=AXIS)
        text = str(b.cells)
        w, h = _text_size(draw, text, small)
        draw.text(((x0 + x1 - w) / 2, y - h - 5), text, fill=INK, font=small)
    draw.line((*at(0, 0), *at(1, 1)), fill=CLASS_COLORS[1], width=2)
    draw.rectangle((left, top, right, bottom), outline=AXIS)
    xlabel = "confidence of the predicted class"
    w, _ = _text_size(draw, xlabel, label_font)
    draw.text((left + (right - left - w) / 2, bottom + 20), xlabel, fill=INK, font=label_font)
    _vertical(image, "accuracy", (16, (top + bottom) / 2), label_font)
    return image


def curves_image(history: dict[str, list[float]], val_label: str = "val") -> Image.Image:
    """Loss and accuracy per epoch, train and ``val_label`` side by side, 900x340 px; a point that
    is not finite (a diverged loss) breaks its line. Drawn at twice the size and halved: smooth
    lines."""
    scale = 2
    image = Image.new("RGB", (900 * scale, 340 * scale), WHITE)
    draw = ImageDraw.Draw(image)
    for panel, metric in enumerate(("loss", "accuracy")):
        sides = (("train", "train"), ("val", val_label))
        series = [(label, history.get(f"{side}_{metric}", [])) for side, label in sides]
        _panel(draw, panel * 450, metric, series, scale)
    return image.resize((900, 340), Image.Resampling.LANCZOS)


def _around(point: tuple[float, float], radius: float) -> tuple[float, float, float, float]:
    return point[0] - radius, point[1] - radius, point[0] + radius, point[1] + radius


@dataclass(frozen=True)
class _Frame:
    """A curves panel's plot area in pixels and the epochs and values it spans (sizes times ``s``)."""

    left: float
    right: float
    top: float
    bottom: float
    first: float  # the epochs at the left and right edges
    last: float
    low: float  # the values at the bottom and top edges
    high: float
    epochs: int  # the longest series' length
    s: int

    @classmethod
    def of(cls, x0: int, series, s: int) -> _Frame:
        """The frame of the 450x340 px panel at ``x0``, spanning the series' finite values (5% margins)."""
        values = np.array([v for _, vs in series for v in vs], dtype=float)
        finite = values[np.isfinite(values)]
        n = max((len(vs) for _, vs in series), default=0)
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        pad = (high - low) * 0.05 or 0.05
        margin = 0.05 * max(n - 1, 1)
        box = (x0 + 58) * s, (x0 + 436) * s, 28 * s, 298 * s
        return cls(*box, 1 - margin, n + margin, low - pad, high + pad, n, s)

    def at(self, epoch: float, value: float) -> tuple[float, float]:
        return (
            self.left + (epoch - self.first) / (self.last - self.first) * (self.right - self.left),
            self.bottom - (value - self.low) / (self.high - self.low) * (self.bottom - self.top),
        )


def _panel(draw: ImageDraw.ImageDraw, x0: int, title: str, series, s: int) -> None:
    """One metric's curves in the 450x340 px panel at ``x0`` (all sizes times ``s``): axes, ticks,
    lines, and the legend in the corner that hides the fewest points."""
    frame = _Frame.of(x0, series, s)
    _axes(draw, frame, title)
    points = _lines(draw, frame, series)
    draw.rectangle((frame.left, frame.top, frame.right, frame.bottom), outline=AXIS, width=s)
    labels = [(color, label) for color, (label, vs) in zip(SIDE_COLORS, series, strict=True) if len(vs)]
    if labels:
        _legend(draw, frame, labels, points)


def _axes(draw: ImageDraw.ImageDraw, f: _Frame, title: str) -> None:
    """The panel's title, the value ticks with their grid lines, the epoch ticks and the axis label."""
    s, small, font = f.s, _font(10 * f.s), _font(12 * f.s)
    w, _ = _text_size(draw, title, font)
    draw.text(((f.left + f.right - w) / 2, 6 * s), title, fill=INK, font=font)
    for tick in MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]).tick_values(f.low, f.high):
        if f.low <= tick <= f.high:
            _, y = f.at(f.first, tick)
            draw.line((f.left, y, f.right, y), fill=GRID, width=s)
            draw.line((f.left - 4 * s, y, f.left, y), fill=AXIS, width=s)
            text = f"{tick:g}"
            tw, th = _text_size(draw, text, small)
            draw.text((f.left - tw - 7 * s, y - th / 2 - 2 * s), text, fill=INK, font=small)
    for tick in MaxNLocator(nbins=6, integer=True).tick_values(max(f.first, 1), f.last):
        if 1 <= tick <= f.epochs:
            x, _ = f.at(tick, f.low)
            draw.line((x, f.bottom, x, f.bottom + 4 * s), fill=AXIS, width=s)
            text = f"{tick:g}"
            tw, _ = _text_size(draw, text, small)
            draw.text((x - tw / 2, f.bottom + 6 * s), text, fill=INK, font=small)
    w, _ = _text_size(draw, "epoch", font)
    draw.text(((f.left + f.right - w) / 2, f.bottom + 22 * s), "epoch", fill=INK, font=font)


def _lines(draw: ImageDraw.ImageDraw, f: _Frame, series) -> list[tuple[float, float]]:
    """Each side's line, broken where a value is not finite (a lone point between breaks: a dot);
    returns every point drawn."""
    points = []
    for color, (_, vs) in zip(SIDE_COLORS, series, strict=True):
        line: list[tuple[float, float]] = []
        for epoch, value in enumerate([*vs, float("nan")], start=1):  # the NaN ends the last line
            if np.isfinite(value):
                line.append(f.at(epoch, value))
                continue
            if len(line) > 1:
                draw.line(line, fill=color, width=2 * f.s, joint="curve")
            elif line:  # one finite point between breaks
                draw.ellipse(_around(line[0], 2 * f.s), fill=color)
            points += line
            line = []
    return points


def _legend(draw: ImageDraw.ImageDraw, f: _Frame, labels, points: list[tuple[float, float]]) -> None:
    """The legend, in the corner of the plot area that hides the fewest ``points``."""
    s, small = f.s, _font(10 * f.s)
    box_w = (40 + max(_text_size(draw, label, small)[0] // s for _, label in labels)) * s
    box_h = (10 + 16 * len(labels)) * s
    corners = [
        (x, y)
        for y in (f.top + 6 * s, f.bottom - box_h - 6 * s)
        for x in (f.right - box_w - 6 * s, f.left + 6 * s)
    ]
    xy = np.array(points).reshape(-1, 2)

    def hidden(corner: tuple[float, float]) -> int:
        x, y = corner
        return int(
            ((xy[:, 0] >= x) & (xy[:, 0] <= x + box_w) & (xy[:, 1] >= y) & (xy[:, 1] <= y + box_h)).sum()
        )

    x, y = min(corners, key=hidden)  # the first of the best: upper right, as matplotlib's "best"
    draw.rectangle((x, y, x + box_w, y + box_h), fill=WHITE, outline=GRID, width=s)
    for k, (color, label) in enumerate(labels):
        row = y + (6 + 16 * k) * s
        draw.line((x + 6 * s, row + 8 * s, x + 28 * s, row + 8 * s), fill=color, width=2 * s)
        draw.text((x + 34 * s, row), label, fill=INK, font=small)
