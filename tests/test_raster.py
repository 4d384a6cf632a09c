"""The milestone figures a training logs (``leukml.analysis.raster``): what they show, read back
from their pixels."""

from __future__ import annotations

import numpy as np
import pytest

from leukml.analysis import raster
from leukml.training.evaluation import SubjectScore


def _cell_colors(image, confusion_shape=(2, 2)) -> np.ndarray:
    """The colour at the top-left inside corner of each confusion cell: the matrix is the
    largest block of non-white pixels, split in a 2x2 grid."""
    pixels = np.asarray(image).astype(int)
    inked = (pixels < 250).any(axis=2)
    rows, cols = np.where(inked.sum(axis=1) > 150)[0], np.where(inked.sum(axis=0) > 150)[0]
    top, bottom, left, right = rows.min(), rows.max(), cols.min(), cols.max()
    step_y, step_x = (bottom - top) / confusion_shape[0], (right - left) / confusion_shape[1]
    return np.array(
        [
            [pixels[int(top + i * step_y) + 4, int(left + j * step_x) + 4] for j in range(confusion_shape[1])]
            for i in range(confusion_shape[0])
        ]
    )


def _longest_run(mask: np.ndarray) -> int:
    best = run = 0
    for on in mask:
        run = run + 1 if on else 0
        best = max(best, run)
    return best


def test_confusion_cells_are_shaded_by_their_count():
    confusion = np.array([[30, 2], [9, 51]])
    image = raster.confusion_image(confusion, "vgg16 + adam, epoch 10: acc 0.880")
    assert image.size == (360, 320)
    colors = _cell_colors(image)
    lightness = colors.sum(axis=2)
    order = np.argsort(lightness, axis=None)  # darkest first
    assert [divmod(int(k), 2) for k in order] == [(1, 1), (0, 0), (1, 0), (0, 1)]  # 51, 30, 9, 2
    assert tuple(colors[1, 1]) == raster._blues(1.0) and tuple(colors[0, 1]) == raster._blues(0.0)


def test_subject_bars_have_their_accuracy_and_class_worst_on_top():
    rows = [
        SubjectScore("UID_1", 1, 20, 0.9, 0.8),
        SubjectScore("UID_H2", 0, 7, 0.25, 0.6),
        SubjectScore("UID_3", 1, 11, 0.5, 0.5),
        SubjectScore("UID_H4", 0, 3, 1.0, 0.1),
    ]
    pixels = np.asarray(raster.subject_accuracy_image(rows, "title")).astype(int)
    bars = []  # (class, length in px, last row), top to bottom
    for y in range(pixels.shape[0]):
        for label, color in enumerate(raster.CLASS_COLORS):
            length = _longest_run((pixels[y] == color).all(axis=1))
            if length > 20 and (not bars or bars[-1][2] < y - 1):  # the legend's swatches: 15 px
                bars.append((label, length, y))
            elif length > 20:
                bars[-1] = (label, max(bars[-1][1], length), y)
    assert [b[0] for b in bars] == [0, 1, 1, 0]  # worst on top: 0.25 hem, 0.5 all, 0.9 all, 1.0 hem
    lengths = np.array([b[1] for b in bars], dtype=float)
    np.testing.assert_allclose(lengths / lengths[-1], [0.25, 0.5, 0.9, 1.0], atol=0.02)


def _near(pixels: np.ndarray, color: tuple[int, int, int]) -> np.ndarray:
    return (np.abs(pixels - np.array(color)) < 40).all(axis=-1)


def test_curves_put_each_side_at_its_value_and_break_at_a_diverged_epoch():
    nan = float("nan")
    history = {
        "train_loss": [1.0] * 3 + [nan] * 4 + [1.0] * 3,  # diverged at epochs 4-7
        "val_loss": [0.0] * 10,
        "train_accuracy": [0.5] * 10,
        "val_accuracy": [0.9] * 10,
    }
    pixels = np.asarray(raster.curves_image(history, "val")).astype(int)
    assert pixels.shape == (340, 900, 3)
    loss, accuracy = pixels[:, :450], pixels[:, 450:]
    train, val = raster.SIDE_COLORS

    def rows(panel, color):  # the rows where a side's line runs (the legend's short lines aside)
        return {y for y in range(panel.shape[0]) if _longest_run(_near(panel[y], color)) > 60}

    assert max(rows(loss, val)) > max(rows(loss, train))  # 0.0 drawn below 1.0
    assert max(rows(accuracy, train)) > max(rows(accuracy, val))  # 0.5 below 0.9
    (row,) = {max(rows(loss, train))}
    line = _near(loss[row], train)
    runs = np.flatnonzero(np.diff(line.astype(int)))  # where the line starts and stops
    assert len(runs) == 4  # two pieces: epochs 1-3 and 8-10


def test_reliability_bars_rise_to_their_bins_accuracy():
    """Two filled bins: (0.6, 0.7] right half the time, (0.9, 1.0] always: the second bar is twice
    as tall as the first, in the hem colour, and starts near confidence 0.6; empty bins draw nothing."""
    from leukml.analysis.calibration import reliability

    labels = np.array([1, 0, 1, 1, 0, 0])
    p_all = np.array([0.65, 0.65, 0.95, 0.95, 0.05, 0.05])  # 0.65: one right, one wrong
    bins = reliability(labels, p_all)
    assert [b.cells for b in bins] == [0] * 6 + [2, 0, 0, 4]
    image = raster.reliability_image(bins, "epoch 3: ECE 0.225")
    assert image.size == (360, 360)
    pixels = np.asarray(image).astype(int)
    bar = np.abs(pixels - np.array(raster.CLASS_COLORS[0])).sum(axis=2) < 10
    columns = [x for x in range(pixels.shape[1]) if bar[:, x].sum() > 5]
    bottom = max(int(np.flatnonzero(bar[:, x]).max()) for x in columns)
    height = {x: bottom - int(np.flatnonzero(bar[:, x]).min()) for x in columns}
    first = [x for x in columns if x < pixels.shape[1] * 0.8]
    second = [x for x in columns if x >= pixels.shape[1] * 0.8]
    ratio = np.median([height[x] for x in second]) / np.median([height[x] for x in first])
    assert first and second and ratio == pytest.approx(2.0, rel=0.05)
    assert 0.55 < min(first) / pixels.shape[1] < 0.7  # near confidence 0.6, not at 0
