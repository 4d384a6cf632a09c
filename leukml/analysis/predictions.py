"""A milestone's per-image test predictions and what a run logs from them: the predictions file
(``predictions/epoch_NNN.csv``), the intervals of the headline metrics, the Brier score and the
calibration error, with the temperature fitted on the validation split when the run calibrates.
Every number here is recomputable from the file (and the temperature, for the uncalibrated ones).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import numpy as np

from leukml.analysis import calibration, uncertainty
from leukml.common import runschema as schema
from leukml.common.errors import LeukmlError
from leukml.training.evaluation import Predictions

COLUMNS = ("file", "subject", "label", "p_all")
"""The predictions file's columns (label 1 = ALL, 0 = hem, as ``leukml predict --csv``); a calibrated
run's file adds ``p_all_uncalibrated``, the model's own output."""
UNCALIBRATED = "p_all_uncalibrated"


def predictions_path(epoch: int) -> str:
    return schema.epoch_artifact(schema.PREDICTIONS, epoch, "csv")


def predictions_csv(predictions: Predictions, uncalibrated: np.ndarray | None = None) -> str:
    """The predictions as CSV text (``COLUMNS``; ``UNCALIBRATED`` too when given), one row per cell
    in the split's order, probabilities exactly (the shortest text that reads back as the same
    float); an unknown subject is empty."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS + ((UNCALIBRATED,) if uncalibrated is not None else ()))
    for i, (file, subject, label, p) in enumerate(zip(*predictions, strict=True)):
        row = [file, subject or "", int(label), repr(float(p))]
        writer.writerow(row + ([repr(float(uncalibrated[i]))] if uncalibrated is not None else []))
    return out.getvalue()


def read_predictions(text: str) -> Predictions:
    """A predictions file's text back as ``Predictions`` (the calibrated ``p_all`` where both are).

    Raises:
        ValueError: the text lacks one of ``COLUMNS``.
    """
    rows = list(csv.DictReader(io.StringIO(text)))
    missing = [c for c in COLUMNS if rows and c not in rows[0]]
    if missing or not text.strip():
        raise LeukmlError(f"not a predictions file: no column {', '.join(missing or COLUMNS)}")
    return Predictions(
        tuple(r["file"] for r in rows),
        tuple(r["subject"] or None for r in rows),
        np.array([int(r["label"]) for r in rows], dtype=np.int64),
        np.array([float(r["p_all"]) for r in rows], dtype=np.float64),
    )


@dataclass(frozen=True)
class MilestoneUncertainty:
    """What a milestone logs beside its point metrics: ``metrics`` (``test_<m>_ci_low/high``,
    ``test_brier``, ``test_ece``; with a temperature also ``temperature`` and the uncalibrated
    ``test_brier_uncalibrated``, ``test_ece_uncalibrated``), ``resampled`` (``subjects`` or
    ``cells``), the calibration's ``bins``, and ``csv`` (the predictions file)."""

    metrics: dict[str, float]
    resampled: str
    bins: list[calibration.Bin]
    csv: str
    temperature: float | None


def milestone_uncertainty(
    test: Predictions, val: Predictions | None, calibrate: bool
) -> MilestoneUncertainty:
    """The intervals and calibration of a milestone's ``test`` predictions; with ``calibrate``, a
    temperature fitted on ``val`` (the same epoch's model) first, applied to the test cells (their
    labels, hence every count metric and the AUC, stay as they are).

    Raises:
        ValueError: ``calibrate`` without validation cells.
    """
    temperature, raw = None, np.asarray(test.p_all, dtype=np.float64)
    p_all, metrics = raw, {}
    if calibrate:
        if val is None or not len(val.labels):
            raise LeukmlError("--calibrate temperature needs a validation split: give --val-fraction > 0")
        temperature = calibration.fit_temperature(val.labels, val.p_all)
        p_all = calibration.apply_temperature(raw, temperature)
        metrics = {
            "temperature": temperature,
            "test_brier_uncalibrated": calibration.brier(test.labels, raw),
            "test_ece_uncalibrated": calibration.ece(test.labels, raw),
        }
    found, resampled = uncertainty.intervals(test.labels, p_all, test.subjects)
    for name, interval in found.items():
        metrics[f"test_{name}_ci_low"], metrics[f"test_{name}_ci_high"] = interval
    metrics["test_brier"] = calibration.brier(test.labels, p_all)
    metrics["test_ece"] = calibration.ece(test.labels, p_all)
    calibrated = test._replace(p_all=p_all)
    text = predictions_csv(calibrated, raw if calibrate else None)
    return MilestoneUncertainty(
        metrics, resampled, calibration.reliability(test.labels, p_all), text, temperature
    )


def pooled_series(folds: list[dict[int, Predictions]]) -> dict[str, dict[int, float]]:
    """A cross-validation's pooled metrics per milestone epoch that every fold reached: the
    folds' test predictions (each cell tested once) taken together, ``cv_pooled_<metric>`` and its
    95% interval ``cv_pooled_<metric>_ci_low`` / ``_ci_high`` (a bootstrap over the subjects of
    all folds), for ``uncertainty.CI_METRICS``. The models' own probabilities (each fold's model
    ranks its own cells: the pooled AUC also mixes the folds' scales)."""
    out: dict[str, dict[int, float]] = {}
    epochs = sorted(set.intersection(*(set(f) for f in folds))) if folds else []
    for epoch in epochs:
        parts = [f[epoch] for f in folds]
        labels = np.concatenate([p.labels for p in parts])
        p_all = np.concatenate([p.p_all for p in parts])
        subjects = [s for p in parts for s in p.subjects]
        points = uncertainty.weighted_metrics(labels, p_all, np.ones((1, len(labels))))
        found, _ = uncertainty.intervals(labels, p_all, subjects)
        for name, interval in found.items():
            out.setdefault(f"cv_pooled_{name}", {})[epoch] = float(points[name][0])
            out.setdefault(f"cv_pooled_{name}_ci_low", {})[epoch] = interval.low
            out.setdefault(f"cv_pooled_{name}_ci_high", {})[epoch] = interval.high
    return out
