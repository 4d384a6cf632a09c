"""The model's evaluation as a person should read it: the protocol it was tested under, its numbers
there, what it was selected on, and that it is a research tool. From the version's tags and its
source training run; read only."""

from __future__ import annotations

import math
from dataclasses import dataclass

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from leukml.analysis.records import RunRecord
from leukml.analysis.versus import interval_of
from leukml.common import runschema as schema
from leukml.serving.app.source import VersionInfo
from leukml.tracking.reader import model_temperature

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


GOOD_AUC = 0.7  # an AUC from here up ranks the cells well enough to say so beside a one-class model


@dataclass(frozen=True)
class Evaluation:
    """``numbers``: (how a person reads the metric, its value, its 95% interval as text or "");
    ``flags``: what makes those numbers mislead, said first; ``calibration``: whether ``p_all``
    is a calibrated probability."""

    protocol: str
    protocol_text: str
    numbers: tuple[tuple[str, float, str], ...]
    n_test: str
    selected_on: str
    disclaimer: str = DISCLAIMER
    flags: tuple[str, ...] = ()
    calibration: str = ""


def _flags(run, metrics: dict[str, float]) -> tuple[str, ...]:
    """The source run's warnings about the served model: one class predicted for every test cell
    at the model's epoch (and a good AUC: the ranking is good, the 0.5 threshold is not), a flat
    training loss."""
    record, flags = RunRecord.of(run), []
    one = record.one_class_predicted
    if one is not None and record.model_epoch in one.epochs:
        name = record.tag(schema.TEST_ONE_CLASS_PREDICTED_CLASS, "one class")
        flags.append(
            f"Degenerate on its own test set: at its epoch ({record.model_epoch}) it called every test "
            f"cell {name}, so its accuracy is the share of {name} cells, not skill, and it will likely "
            f"call your cells {name} too."
        )
        auc = metrics.get("test_auc", math.nan)
        if auc >= GOOD_AUC:
            flags.append(
                f"Its AUC is {auc:.3f}: it ranks ALL cells above normal ones well, but its 0.5 threshold "
                "is not right: every cell falls on one side of it. Read p_all as a ranking, not a label."
            )
    if text := record.tag(schema.WARNING_FLAT_LOSS, ""):
        flags.append(f"Its training loss did not move: {text}.")
    return tuple(flags)


def _calibration(client: MlflowClient, run, metrics: dict[str, float]) -> str:
    """Whether the served p_all is calibrated, with the test ECE (and the uncalibrated one)."""
    ece = metrics.get("test_ece")
    shown = f"; its test calibration error (ECE) is {ece:.3f}" if ece is not None else ""
    if run.data.params.get("calibrate") == "temperature":
        before = metrics.get("test_ece_uncalibrated")
        shown += f" ({before:.3f} before calibration)" if before is not None else ""
        temperature = model_temperature(client, run)
        return (
            f"Its p_all is calibrated: the model's logit divided by a temperature of {temperature:.3g}, "
            f"fitted on the validation split{shown}."
        )
    return (
        "Its p_all is not calibrated (trained without --calibrate temperature): it ranks cells, but a "
        f"p_all of 0.93 need not mean 93% of such cells are ALL{shown}."
    )


def evaluation(client: MlflowClient, info: VersionInfo) -> Evaluation:
    """What the version's source run measured, on which test set, and how it was chosen."""
    tags = info.tags
    protocol = tags.get(schema.SPLIT_PROTOCOL, "?")
    metrics: dict[str, float] = {}
    run, flags, calibration = None, (), ""
    if run_id := tags.get(schema.VERSION_RUN_ID):
        try:
            run = client.get_run(run_id)
            metrics = run.data.metrics
            flags, calibration = _flags(run, metrics), _calibration(client, run, metrics)
        except (MlflowException, ValueError):
            metrics = {}
    numbers = tuple(
        (label, float(metrics[key]), str(interval_of(metrics, key) or ""))
        for key, label in SHOWN
        if key in metrics and not math.isnan(metrics[key])
    )
    metric, value = tags.get(schema.METRIC, "?"), tags.get(schema.METRIC_VALUE)
    chosen = f"{metric} {float(value):.4f}" if value not in (None, "?") else metric
    if tags.get(schema.SELECTION_ON_TEST) == "true":
        selected = f"selected on the test split ({chosen}): its test numbers are optimistic"
    elif metric.startswith("test_"):
        selected = f"promoted on a test metric ({chosen}); epochs were chosen on validation"
    else:
        selected = f"selected on the validation split ({chosen}); the test split only reports"
    text = PROTOCOLS.get(protocol, f"split {protocol!r}")
    return Evaluation(
        protocol, text, numbers, tags.get(schema.N_TEST, "?"), selected, flags=flags, calibration=calibration
    )
