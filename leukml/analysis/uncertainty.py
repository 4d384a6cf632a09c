"""95% intervals of test metrics: a percentile bootstrap that resamples subjects (cells of one person
are not independent), a paired one for the difference of two models on the same test set, and
Wilson's interval of a proportion. Plain numpy: no Keras, no MLflow.

A bootstrap draw gives every cell a weight, the number of times its subject (or, without subject
ids, the cell itself) was drawn; every metric of the draw is then a weighted count, so thousands of
draws cost matrix products instead of thousands of calls of scikit-learn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from leukml.common.errors import OptionError

CI_METRICS = (
    "accuracy",
    "balanced_accuracy",
    "f1_weighted",
    "sensitivity",
    "specificity",
    "auc",
    "recall_macro",
    "precision_macro",
    "f1_macro",
)
"""The test metrics that get an interval (``test_<metric>_ci_low`` / ``_ci_high``): the headline
ones, and the macro averages of the paper's Tables 3-6."""
DRAWS = 2000
SEED = 2019  # fixed: a run's intervals are reproducible from its predictions file
LEVEL = 0.95
CHUNK = 250  # draws per matrix product: bounds the memory of a large test set's weights
Z95 = 1.959963984540054


class Interval(NamedTuple):
    """A 95% interval; NaN ends when undefined (an AUC without both classes)."""

    low: float
    high: float

    def holds(self, value: float) -> bool:
        return bool(self.low <= value <= self.high)

    def overlaps(self, other: Interval) -> bool:
        return bool(self.low <= other.high and other.low <= self.high)

    def __str__(self) -> str:
        return f"[{self.low:.2f}, {self.high:.2f}]"


def clusters(subjects: Sequence[str | None]) -> tuple[np.ndarray, str]:
    """The unit each cell is resampled with, as an index per cell, and its name: ``subjects`` when
    every cell has a subject id and there are at least two subjects, else ``cells`` (each its own)."""
    if len(subjects) and all(subjects) and len(set(subjects)) > 1:
        _, index = np.unique(np.asarray(subjects, dtype=object).astype(str), return_inverse=True)
        return index, "subjects"
    return np.arange(len(subjects)), "cells"


def _weights(index: np.ndarray, draws: int, seed: int) -> np.ndarray:
    """(draws, cells): how often each cell's cluster was drawn in each draw (clusters drawn with
    replacement, as many as there are)."""
    k = int(index.max()) + 1 if len(index) else 0
    counts = np.random.default_rng(seed).multinomial(k, np.full(k, 1.0 / k), size=draws)
    return counts[:, index].astype(np.float64)


def _ratio(num: np.ndarray, den: np.ndarray, empty: float) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), empty)


def weighted_metrics(labels: np.ndarray, p_all: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """``CI_METRICS`` of the cells weighted by each row of ``weights`` (draws, cells), as
    ``leukml.training.evaluation.classification_metrics`` defines them (ALL above 0.5; NaN for
    the recall of a class without cells, for their mean and for the AUC of one class)."""
    y = np.asarray(labels).astype(int)
    p = np.asarray(p_all, dtype=np.float64)
    pred = (p > 0.5).astype(int)
    tp, fn = weights @ ((y == 1) & (pred == 1)), weights @ ((y == 1) & (pred == 0))
    tn, fp = weights @ ((y == 0) & (pred == 0)), weights @ ((y == 0) & (pred == 1))
    n = tp + fn + tn + fp
    sensitivity, specificity = _ratio(tp, tp + fn, np.nan), _ratio(tn, tn + fp, np.nan)
    f1_all, f1_hem = _ratio(2 * tp, 2 * tp + fp + fn, 0.0), _ratio(2 * tn, 2 * tn + fn + fp, 0.0)
    precision = (_ratio(tp, tp + fp, 0.0) + _ratio(tn, tn + fn, 0.0)) / 2  # scikit-learn's zero_division=0
    recall = (_ratio(tp, tp + fn, 0.0) + _ratio(tn, tn + fp, 0.0)) / 2
    return {
        "accuracy": _ratio(tp + tn, n, np.nan),
        "balanced_accuracy": (sensitivity + specificity) / 2,
        "f1_weighted": _ratio(f1_all * (tp + fn) + f1_hem * (tn + fp), n, np.nan),
        "sensitivity": sensitivity,
        "specificity": specificity,
        "auc": _weighted_auc(y, p, weights),
        "recall_macro": recall,
        "precision_macro": precision,
        "f1_macro": (f1_all + f1_hem) / 2,
    }


def _weighted_auc(y: np.ndarray, p: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The AUC (Mann-Whitney, ties counted half) of each row's weighted cells: for every ALL cell,
    the weight of hem cells scored below it plus half of those tied, over both classes' weights."""
    order = np.argsort(p, kind="stable")
    ps, ys, w = p[order], y[order], weights[:, order]
    neg = w * (ys == 0)
    cum = np.concatenate([np.zeros((len(w), 1)), np.cumsum(neg, axis=1)], axis=1)
    values, first = np.unique(ps, return_index=True)
    last = np.append(first[1:], len(ps))  # one past each tie group's last cell
    group = np.searchsorted(values, ps)
    below = cum[:, first[group]]
    tied = cum[:, last[group]] - below
    pos = w * (ys == 1)
    return _ratio((pos * (below + 0.5 * tied)).sum(axis=1), pos.sum(axis=1) * neg.sum(axis=1), np.nan)


def _percentile(values: np.ndarray) -> Interval:
    finite = values[np.isfinite(values)]
    if not len(finite):
        return Interval(float("nan"), float("nan"))
    tail = 100 * (1 - LEVEL) / 2
    low, high = np.percentile(finite, [tail, 100 - tail])
    return Interval(float(low), float(high))


def _draws(
    labels: np.ndarray, p_all: Sequence[np.ndarray], index: np.ndarray, draws: int, seed: int
) -> list[dict[str, np.ndarray]]:
    """Each model's ``CI_METRICS`` per draw (the same draws for every ``p_all``), in chunks."""
    w = _weights(index, draws, seed)
    out: list[dict[str, list[np.ndarray]]] = [{m: [] for m in CI_METRICS} for _ in p_all]
    for start in range(0, draws, CHUNK):
        for model, p in enumerate(p_all):
            for name, values in weighted_metrics(labels, p, w[start : start + CHUNK]).items():
                out[model][name].append(values)
    return [{m: np.concatenate(v) for m, v in model.items()} for model in out]


def intervals(
    labels: np.ndarray,
    p_all: np.ndarray,
    subjects: Sequence[str | None],
    draws: int = DRAWS,
    seed: int = SEED,
) -> tuple[dict[str, Interval], str]:
    """95% percentile-bootstrap intervals of ``CI_METRICS``, resampling subjects (``clusters``);
    and what was resampled (``subjects`` or ``cells``). Draws where a metric is undefined (no cell
    of a class drawn) are left out of its interval."""
    index, unit = clusters(subjects)
    if not len(index):
        return {m: Interval(float("nan"), float("nan")) for m in CI_METRICS}, unit
    (values,) = _draws(labels, [p_all], index, draws, seed)
    return {m: _percentile(values[m]) for m in CI_METRICS}, unit


def paired_difference(
    labels: np.ndarray,
    p_first: np.ndarray,
    p_second: np.ndarray,
    subjects: Sequence[str | None],
    metric: str,
    draws: int = DRAWS,
    seed: int = SEED,
) -> tuple[float, Interval, str]:
    """The difference ``metric(first) - metric(second)`` of two models' predictions of the same
    cells, and its 95% interval from a paired bootstrap (each draw resamples the same subjects
    for both); and what was resampled.

    Raises:
        ValueError: ``metric`` has no interval here (not one of ``CI_METRICS``).
    """
    if metric not in CI_METRICS:
        raise OptionError(
            f"metric={metric!r} has no bootstrap interval; choose one of: {', '.join(CI_METRICS)}"
        )
    index, unit = clusters(subjects)
    ones = np.ones((1, len(labels)))
    point = (
        weighted_metrics(labels, p_first, ones)[metric][0]
        - weighted_metrics(labels, p_second, ones)[metric][0]
    )
    first, second = _draws(labels, [p_first, p_second], index, draws, seed)
    return float(point), _percentile(first[metric] - second[metric]), unit


def independent_difference(a: float, a_interval: Interval, b: float, b_interval: Interval) -> Interval:
    """The 95% interval of ``a - b`` for two estimates from independent samples (two protocols'
    test sets), from each one's own interval: Zou and Donner's MOVER (2008), which keeps each
    interval's asymmetry. Not paired: use ``paired_difference`` for two models on one test set."""
    low = (a - b) - math.sqrt((a - a_interval.low) ** 2 + (b_interval.high - b) ** 2)
    high = (a - b) + math.sqrt((a_interval.high - a) ** 2 + (b - b_interval.low) ** 2)
    return Interval(low, high)


def wilson(successes: int, n: int) -> Interval:
    """Wilson's 95% score interval of a proportion ``successes / n`` (good at 0, 1 and small n);
    NaN ends for n = 0."""
    if n <= 0:
        return Interval(float("nan"), float("nan"))
    share, z2 = successes / n, Z95**2
    center = (share + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * np.sqrt(share * (1 - share) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return Interval(float(max(0.0, center - half)), float(min(1.0, center + half)))
