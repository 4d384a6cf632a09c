"""Does an image look like the cells the model was trained on? A check of plain pixel facts.

C-NMC cells are 450x450 colour (stained) images of one cell, cut out and pasted on a black
background. A model trained on them answers anything it is given, so the page warns where an
image is unlike them, by four measured facts (thresholds from the 310 real cells of the shared
sample, every one of which passes with a wide margin; see docs/app.md):

- ``size``: the shorter side is more than ``SIZE_RATIO`` times smaller or larger than 450 px;
- ``background``: fewer than ``MIN_DARK_BORDER`` of the pixels on the outer ring are dark
  (brightest channel <= ``DARK_LEVEL``) — the real cells: 0.97 and more;
- ``single cell``: the non-dark part covers less than ``MIN_CELL_AREA`` or more than
  ``MAX_CELL_AREA`` of the image, or its largest connected blob holds less than
  ``MIN_MAIN_BLOB`` of it (several cells, debris, a smear);
- ``grayscale``: the 95th percentile of the channel spread (mean |R-G|, |G-B|, |B-R|) over the
  non-dark pixels is under ``MIN_CHROMA`` (the real cells: 30 and more). A percentile, not the
  mean: a stained cell on a bright background is still colour.

Pure numpy: runs where the page runs, and tests need no model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TRAINING_SIDE = 450  # C-NMC's images
SIZE_RATIO = 2.5
DARK_LEVEL = 20
MIN_DARK_BORDER = 0.8
MIN_CELL_AREA, MAX_CELL_AREA = 0.02, 0.6
MIN_MAIN_BLOB = 0.8
MIN_CHROMA = 10.0
BLOB_GRID = 64  # the mask is looked at on this grid: blobs, not pixels


@dataclass(frozen=True)
class Lookalike:
    """The measured facts of one image and the warnings they give (empty: looks like the cells)."""

    side: int
    dark_border: float
    cell_area: float
    main_blob: float
    chroma: float
    warnings: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.warnings


def _ring(mask: np.ndarray) -> np.ndarray:
    h, w = mask.shape
    r = max(1, min(h, w) // 20)
    return np.concatenate([mask[:r].ravel(), mask[-r:].ravel(), mask[:, :r].ravel(), mask[:, -r:].ravel()])


def _grid(mask: np.ndarray) -> np.ndarray:
    """The mask on a ``BLOB_GRID`` square grid (a cell of the grid is set if any pixel in it is)."""
    h, w = mask.shape
    rows = np.minimum(np.arange(h) * BLOB_GRID // h, BLOB_GRID - 1)
    cols = np.minimum(np.arange(w) * BLOB_GRID // w, BLOB_GRID - 1)
    grid = np.zeros((BLOB_GRID, BLOB_GRID), bool)
    ys, xs = np.nonzero(mask)
    grid[rows[ys], cols[xs]] = True
    return grid


def main_blob_share(mask: np.ndarray) -> float:
    """Share of the mask's set cells (on the grid) in its largest 4-connected blob; 0 if empty.

    Labels spread the smallest index to their neighbours until nothing changes (a few dozen
    rounds on a 64x64 grid)."""
    grid = _grid(mask)
    if not grid.any():
        return 0.0
    big = grid.size + 1
    labels = np.where(grid, np.arange(grid.size).reshape(grid.shape), big)
    for _ in range(grid.size):
        padded = np.pad(labels, 1, constant_values=big)
        near = np.minimum.reduce(
            [labels, padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]]
        )
        near = np.where(grid, near, big)
        if np.array_equal(near, labels):
            break
        labels = near
    _, counts = np.unique(labels[grid], return_counts=True)
    return float(counts.max() / grid.sum())


def check(image: np.ndarray) -> Lookalike:
    """The facts and warnings of one decoded image, ``(H, W, 3)`` uint8 RGB at its own size."""
    pixels = np.asarray(image, np.int16)
    h, w = pixels.shape[:2]
    dark = pixels.max(axis=-1) <= DARK_LEVEL
    cell = ~dark
    dark_border = float(_ring(dark).mean())
    cell_area = float(cell.mean())
    blob = main_blob_share(cell)
    spread = np.abs(pixels - np.roll(pixels, 1, axis=-1)).mean(axis=-1)
    chroma = float(np.percentile(spread[cell], 95)) if cell.any() else 0.0
    warnings = []
    side = min(h, w)
    if not TRAINING_SIDE / SIZE_RATIO <= side <= TRAINING_SIDE * SIZE_RATIO:
        warnings.append(f"size {w}x{h} px is far from the training cells' {TRAINING_SIDE}x{TRAINING_SIDE}")
    if dark_border < MIN_DARK_BORDER:
        warnings.append(f"background is not dark ({dark_border:.0%} of the border; the cells: 97% or more)")
    elif not (MIN_CELL_AREA <= cell_area <= MAX_CELL_AREA and blob >= MIN_MAIN_BLOB):
        warnings.append(
            f"not a single cell on a dark background (cell area {cell_area:.0%}, largest blob {blob:.0%})"
        )
    if chroma < MIN_CHROMA:
        warnings.append(f"grayscale or nearly (colour spread {chroma:.1f}; the stained cells: 30 or more)")
    return Lookalike(side, dark_border, cell_area, blob, chroma, tuple(warnings))
