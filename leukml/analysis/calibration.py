"""Whether a predicted ALL probability means what it says: the Brier score, the expected calibration
error and its reliability bins (Guo et al. 2017), and temperature scaling fitted on a validation
split. Plain numpy (and SciPy's bounded scalar minimiser): no Keras, no MLflow.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from leukml.common.errors import LeukmlError

ECE_BINS = 10
"""Equal-width bins of the predicted class's confidence on [0, 1], as Guo et al. (2017)."""
TEMPERATURE_BOUNDS = (0.05, 20.0)
"""The temperatures a fit may choose. A validation split that the model separates perfectly has no
finite optimum (the log loss falls as the temperature goes to 0), one where it carries no signal
none either (it falls as the temperature grows): the fit then stops at a bound, which says so."""
EPS = 1e-12  # p_all is clipped to [EPS, 1 - EPS] before its logit: a float32 softmax gives exact 0 and 1


def brier(labels: np.ndarray, p_all: np.ndarray) -> float:
    """The Brier score of the ALL probability: the mean of ``(p_all - label)**2`` (0 is perfect,
    0.25 is a constant 0.5). Half the two-class sum some texts use."""
    y, p = np.asarray(labels, dtype=np.float64), np.asarray(p_all, dtype=np.float64)
    return float(np.mean((p - y) ** 2))


def log_loss(labels: np.ndarray, p_all: np.ndarray) -> float:
    """The mean negative log-likelihood of the true classes (natural log), ``p_all`` clipped to
    [EPS, 1 - EPS]."""
    y = np.asarray(labels).astype(bool)
    p = np.clip(np.asarray(p_all, dtype=np.float64), EPS, 1 - EPS)
    return float(-np.mean(np.where(y, np.log(p), np.log1p(-p))))


class Bin(NamedTuple):
    """One confidence bin ``(low, high]``: its cells, their accuracy and mean confidence (NaN when empty)."""

    low: float
    high: float
    cells: int
    accuracy: float
    confidence: float


def reliability(labels: np.ndarray, p_all: np.ndarray, bins: int = ECE_BINS) -> list[Bin]:
    """The reliability diagram's bins: each cell falls in the bin of its predicted class's
    confidence ``max(p_all, 1 - p_all)`` (bin m holds ``((m - 1) / bins, m / bins]``, the first
    bin 0 too); a cell is right when its predicted class (ALL above 0.5) is its label."""
    y, p = np.asarray(labels).astype(int), np.asarray(p_all, dtype=np.float64)
    confidence = np.maximum(p, 1 - p)
    right = (p > 0.5).astype(int) == y
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    out = []
    for m in range(bins):
        inside = which == m
        n = int(inside.sum())
        accuracy = float(right[inside].mean()) if n else float("nan")
        mean_confidence = float(confidence[inside].mean()) if n else float("nan")
        out.append(Bin(m / bins, (m + 1) / bins, n, accuracy, mean_confidence))
    return out


def ece(labels: np.ndarray, p_all: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error: the cells' share-weighted mean over bins of
    ``|accuracy - mean confidence|`` (``reliability``'s bins); NaN for no cells."""
    table = reliability(labels, p_all, bins)
    total = sum(b.cells for b in table)
    if not total:
        return float("nan")
    return float(sum(b.cells / total * abs(b.accuracy - b.confidence) for b in table if b.cells))


def apply_temperature(p_all: np.ndarray, temperature: float) -> np.ndarray:
    """ALL probabilities after temperature scaling: ``softmax(log p / T)`` of the two classes, i.e.
    the logit ``log(p_all / (1 - p_all))`` divided by ``temperature``. T = 1 returns ``p_all``
    unchanged; any T > 0 keeps which class is above 0.5 (the labels), and the order (the AUC).

    Pure numpy and self-contained (the served model applies it without the rest of leukml).
    """
    p = np.asarray(p_all, dtype=np.float64)
    if temperature == 1.0:
        return p
    p = np.clip(p, 1e-12, 1 - 1e-12)
    logit = np.log(p) - np.log1p(-p)
    return 0.5 * (1.0 + np.tanh(logit / (2.0 * temperature)))  # the sigmoid, without overflow


def fit_temperature(labels: np.ndarray, p_all: np.ndarray) -> float:
    """The temperature that minimises the log loss of ``apply_temperature(p_all, T)`` on these
    (validation) cells, within ``TEMPERATURE_BOUNDS``: the log loss is convex in 1/T, so the
    bounded search in log T finds its one minimum.

    Raises:
        ValueError: no cells to fit on.
    """
    from scipy.optimize import minimize_scalar  # here: the served model imports this module for one function

    y, p = np.asarray(labels), np.asarray(p_all, dtype=np.float64)
    if not len(y):
        raise LeukmlError("temperature scaling needs validation cells; give --val-fraction > 0")
    low, high = np.log(TEMPERATURE_BOUNDS)
    found = minimize_scalar(
        lambda log_t: log_loss(y, apply_temperature(p, float(np.exp(log_t)))),
        bounds=(low, high),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(np.exp(found.x))
