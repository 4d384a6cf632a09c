"""Test-split metrics with ALL (index 1) as the positive class: plain numbers, no logging.

The confusion-matrix metrics of the paper, the C-NMC challenge's weighted F1, and the per-subject
table a hematologist reads first (which people does the model get wrong?).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)

from leukml import CLASS_NAMES

UNKNOWN_SUBJECT = "?"
"""The subject of cells whose file names carry no ``UID_<subject>_`` id."""

SUBJECT_COLUMNS = ("subject", "class", "cells", "accuracy", "mean_p_all")


class Predictions(NamedTuple):
    """One split's per-image predictions at a milestone, as the model output them: ``files`` the
    images' paths relative to the data folder, ``subjects`` their subject ids (None: unknown),
    ``labels`` their true classes (1 = ALL), ``p_all`` the predicted ALL probabilities."""

    files: tuple[str, ...]
    subjects: tuple[str | None, ...]
    labels: np.ndarray
    p_all: np.ndarray


def classification_metrics(
    y_true: np.ndarray, p_all: np.ndarray, prefix: str = "test_"
) -> tuple[dict[str, float], np.ndarray]:
    """Metrics of predicted ALL probabilities against labels (1 = ALL).

    Returns:
        ``({prefix}accuracy, precision, recall, f1, *_macro, f1_weighted, balanced_accuracy,
        sensitivity, specificity, tp, tn, fp, fn, auc}``, and the 2x2 confusion matrix
        ``[[tn, fp], [fn, tp]]`` (rows: true hem, all). ``f1_weighted`` is the C-NMC challenge's
        metric (F1 of both classes weighted by their support). On a one-class split, auc is NaN,
        and so are the recall of the missing class (sensitivity without ALL cells, specificity
        without hem cells) and balanced accuracy, their mean: undefined, not 0 or the accuracy.
    """
    y_true = np.asarray(y_true).astype(int)
    y_pred = (np.asarray(p_all) > 0.5).astype(int)
    cm = confusion_matrix(y_true, y_pred, labels=[0, 1])
    (tn, fp), (fn, tp) = cm
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=[0, 1], pos_label=1, average="binary", zero_division=0
    )
    p_macro, r_macro, f_macro, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=[0, 1], average="macro", zero_division=0
    )
    sensitivity, specificity = _recall(tp, tp + fn), _recall(tn, tn + fp)
    metrics = {
        "accuracy": accuracy_score(y_true, y_pred),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "precision_macro": p_macro,
        "recall_macro": r_macro,
        "f1_macro": f_macro,
        "f1_weighted": f1_score(y_true, y_pred, labels=[0, 1], average="weighted", zero_division=0),
        "balanced_accuracy": (sensitivity + specificity) / 2,
        "sensitivity": sensitivity,
        "specificity": specificity,
        "tp": tp,
        "tn": tn,
        "fp": fp,
        "fn": fn,
    }
    # AUC is undefined on a one-class split: NaN, so every run logs the same metrics
    metrics["auc"] = roc_auc_score(y_true, p_all) if len(np.unique(y_true)) == 2 else float("nan")
    return {f"{prefix}{k}": float(v) for k, v in metrics.items()}, cm


def _recall(hits: int, total: int) -> float:
    """One class's recall; NaN when the split has no cell of that class."""
    return float(hits / total) if total else float("nan")


class SubjectScore(NamedTuple):
    """One subject's cells in a split: ``label`` their class (1 = ALL), ``accuracy`` the share
    classified right, ``mean_p_all`` their mean predicted ALL probability."""

    subject: str
    label: int
    cells: int
    accuracy: float
    mean_p_all: float


def per_subject_scores(
    y_true: np.ndarray, p_all: np.ndarray, subjects: Sequence[str | None]
) -> list[SubjectScore]:
    """Accuracy and mean ALL probability per subject: ALL subjects first, by id, ``"?"`` last.

    Cells without a subject id are grouped as subject ``"?"`` (one row per class) rather than
    dropped, so the table's cells always add up to the split. A subject with cells of both
    classes (none in C-NMC, where a person is a patient or a control) gets a row per class.
    """
    y_true = np.asarray(y_true).astype(int)
    p_all = np.asarray(p_all, dtype=np.float64)
    correct = (p_all > 0.5).astype(int) == y_true
    groups: dict[tuple[str, int], list[int]] = {}
    for i, (subject, label) in enumerate(zip(subjects, y_true, strict=True)):
        groups.setdefault((subject or UNKNOWN_SUBJECT, int(label)), []).append(i)
    rows = [
        SubjectScore(subject, label, len(idx), float(correct[idx].mean()), float(p_all[idx].mean()))
        for (subject, label), idx in groups.items()
    ]
    return sorted(rows, key=lambda r: (-r.label, r.subject == UNKNOWN_SUBJECT, _natural(r.subject)))


def _natural(text: str) -> tuple:
    """Sort key that puts subject 2 before 10 and H2 before H10."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text))


def per_subject_csv(rows: Sequence[SubjectScore]) -> str:
    """The per-subject table as CSV text, columns ``SUBJECT_COLUMNS`` (class: all / hem)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(SUBJECT_COLUMNS)
    for r in rows:
        writer.writerow(
            [r.subject, CLASS_NAMES[r.label], r.cells, f"{r.accuracy:.6g}", f"{r.mean_p_all:.6g}"]
        )
    return out.getvalue()


SHOWN_NAMES = ("hem", "ALL")
"""Class index -> the name a person reads in a warning (``CLASS_NAMES`` are folder names)."""


def one_class_predicted(confusion: np.ndarray) -> int | None:
    """The class a model predicted for every test image, from its confusion matrix
    ``[[tn, fp], [fn, tp]]`` (1 = ALL), or None.

    None also when the test split itself has one class: predicting that class everywhere is then
    right, no sign of a collapsed model (the ``test_one_class`` tag already says so).
    """
    cm = np.asarray(confusion)
    if cm.sum(axis=1).min() == 0:
        return None
    predicted = cm.sum(axis=0)  # column 0: predicted hem, column 1: predicted ALL
    return int(np.argmax(predicted)) if predicted.min() == 0 else None


def one_class_text(epoch: int, label: int, n_images: int) -> str:
    """The warning a person reads at the first milestone where one class is predicted everywhere."""
    name = SHOWN_NAMES[label]
    return (
        f"at epoch {epoch} the model predicts {name} for every one of the {n_images} test images: its "
        f"accuracy is the share of {name} cells, not skill; likely causes: random base weights "
        "(--weights none) or a learning rate too large or too small (--lr)"
    )


FLAT_LOSS_EPOCHS = 5
"""The flat-loss check reads the training loss of epochs 1 to this: a model that learns anything
has moved its loss by then, and the warning comes early enough to stop a long run."""
FLAT_LOSS_TOLERANCE = 1e-4
"""Relative spread under which the loss counts as not moving: agreement to 4 significant digits
(the console's precision). A learning model moves by percents per early epoch; a collapsed one
(dead units, saturated softmax) repeats the same value to float32 precision, far below this."""


def flat_loss(train_losses: Sequence[float]) -> str | None:
    """A warning when the training loss did not move over the first ``FLAT_LOSS_EPOCHS`` epochs
    (``train_losses``: epoch 1 first), else None; None too with fewer epochs or a NaN loss.

    Epoch 1 is left out: its loss averages the batches before and after a collapse in its first
    steps (4.67, then 5.3434 every epoch), so a collapse in epoch 1 would never look flat.
    """
    losses = np.asarray(train_losses[1:FLAT_LOSS_EPOCHS], dtype=np.float64)
    if len(train_losses) < FLAT_LOSS_EPOCHS or not np.isfinite(losses).all():
        return None
    if np.ptp(losses) > FLAT_LOSS_TOLERANCE * np.abs(losses).mean():
        return None
    return (
        f"the training loss stayed at {losses[-1]:.4f} from epoch 2 to {FLAT_LOSS_EPOCHS}: the model "
        "is not learning; likely causes: random base weights (--weights none: the frozen base's "
        "features carry no signal), or a learning rate too large (units saturated or dead: a smaller "
        "--lr) or too small (a larger --lr)"
    )
