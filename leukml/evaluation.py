"""Confusion-matrix metrics with ALL (index 1) as the positive class: plain numbers, no logging."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)


def classification_metrics(
    y_true: np.ndarray, p_all: np.ndarray, prefix: str = "test_"
) -> tuple[dict[str, float], np.ndarray]:
    """Metrics of predicted ALL probabilities against labels (1 = ALL).

    Returns:
        ``({prefix}accuracy, precision, recall, f1, *_macro, tp, tn, fp, fn, auc}`` (auc NaN when
        ``y_true`` holds one class), and the 2x2 confusion matrix ``[[tn, fp], [fn, tp]]`` (rows:
        true hem, all).
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
    metrics = {
        "accuracy": accuracy_score(y_true, y_pred),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "precision_macro": p_macro,
        "recall_macro": r_macro,
        "f1_macro": f_macro,
        "tp": tp,
        "tn": tn,
        "fp": fp,
        "fn": fn,
    }
    # AUC is undefined on a one-class split: NaN, so every run logs the same metrics
    metrics["auc"] = roc_auc_score(y_true, p_all) if len(np.unique(y_true)) == 2 else float("nan")
    return {f"{prefix}{k}": float(v) for k, v in metrics.items()}, cm
