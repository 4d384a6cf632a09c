"""The model's evaluation as a person should read it: the protocol it was tested under, its numbers
there, what it was selected on, and that it is a research tool. From the version's tags and its
source training run; read only."""

from __future__ import annotations

import math
from dataclasses import dataclass

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from leukml.serving.app.source import VersionInfo

DISCLAIMER = (
    "A research tool, not a diagnostic device: its answers are not a diagnosis and must not guide "
    "the care of a patient."
)
PROTOCOLS = {
    "official": "the official C-NMC protocol: trained on training_data, tested on the labelled "
    "preliminary test set (unseen patients)",
    "subject": "a subject-grouped split: each patient on one side only (unseen patients)",
    "fold": "one of C-NMC's folds held out (unseen patients)",
    "kfold": "a subject-grouped fold held out (unseen patients)",
    "image": "the paper's image split: cells of one patient on both sides, so its numbers are "
    "optimistic for a new patient",
}
# (metric, how a person reads it), in the order shown
SHOWN = (
    ("test_f1_weighted", "weighted F1"),
    ("test_sensitivity", "sensitivity (ALL found)"),
    ("test_specificity", "specificity (normal cells called normal)"),
    ("test_balanced_accuracy", "balanced accuracy"),
    ("test_accuracy", "accuracy"),
    ("test_auc", "AUC"),
)


@dataclass(frozen=True)
class Evaluation:
    protocol: str
    protocol_text: str
    numbers: tuple[tuple[str, float], ...]
    n_test: str
    selected_on: str
    disclaimer: str = DISCLAIMER


def evaluation(client: MlflowClient, info: VersionInfo) -> Evaluation:
    """What the version's source run measured, on which test set, and how it was chosen."""
    tags = info.tags
    protocol = tags.get("split_protocol", "?")
    metrics: dict[str, float] = {}
    if run_id := tags.get("run_id"):
        try:
            metrics = client.get_run(run_id).data.metrics
        except MlflowException:
            metrics = {}
    numbers = tuple(
        (label, float(metrics[key]))
        for key, label in SHOWN
        if key in metrics and not math.isnan(metrics[key])
    )
    metric, value = tags.get("metric", "?"), tags.get("metric_value")
    chosen = f"{metric} {float(value):.4f}" if value not in (None, "?") else metric
    if tags.get("selection_on_test") == "true":
        selected = f"selected on the test split ({chosen}): its test numbers are optimistic"
    elif metric.startswith("test_"):
        selected = f"promoted on a test metric ({chosen}); epochs were chosen on validation"
    else:
        selected = f"selected on the validation split ({chosen}); the test split only reports"
    text = PROTOCOLS.get(protocol, f"split {protocol!r}")
    return Evaluation(protocol, text, numbers, tags.get("n_test", "?"), selected)
