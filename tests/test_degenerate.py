"""A degenerate model is flagged: one class predicted for every test image at a milestone (tagged,
warned about once, marked in the report), and a training loss that does not move early on."""

from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
import pytest
from helpers import mlflow_store, tiny_config
from mlflow.tracking import MlflowClient

from leukml.analysis.comparison import protocol_entries
from leukml.analysis.leakage import protocols_section
from leukml.analysis.report import RunRecord, pick_runs, provenance
from leukml.tracking.mlflow_tracker import MlflowTracker
from leukml.training.evaluation import FLAT_LOSS_EPOCHS, flat_loss, one_class_predicted
from leukml.training.sinks import ConsoleSink, FanoutSink, MetricSink, Milestone, ModelWarning
from leukml.workflows.train import tracked_train

ALL_EVERYWHERE = np.array([[0, 3], [0, 6]])  # [[tn, fp], [fn, tp]]: 9 test images, all called ALL


@pytest.mark.parametrize(
    ("confusion", "expected"),
    [
        (ALL_EVERYWHERE, 1),
        ([[3, 0], [6, 0]], 0),  # every image called hem
        ([[2, 1], [1, 5]], None),  # both classes predicted
        ([[0, 0], [1, 8]], None),  # a test split of ALL cells only: calling them ALL is right
    ],
)
def test_one_class_predicted_reads_the_confusion_matrix(confusion, expected):
    assert one_class_predicted(np.array(confusion)) == expected


def test_a_loss_that_does_not_move_after_epoch_1_is_flat_and_the_warning_names_the_fixes():
    collapsed = [4.66614, 5.343409, 5.343410, 5.343409, 5.343409]  # as the tiny run below
    text = flat_loss(collapsed)
    assert text is not None and "5.3434" in text
    assert "--weights none" in text and "--lr" in text
    assert flat_loss([0.686, 0.665, 0.647, 0.641, 0.634]) is None  # learning, slowly
    assert flat_loss(collapsed[:-1]) is None  # too few epochs to tell
    assert flat_loss([0.7, 0.6, float("nan"), 0.6, 0.6]) is None  # NaN is another failure
    assert len(collapsed) == FLAT_LOSS_EPOCHS


def _milestone(epoch: int, confusion: np.ndarray) -> Milestone:
    """A milestone as the loop hands it out: the one class it predicted found once, there."""
    return Milestone(epoch, {}, confusion, [], None, None, one_class_predicted(confusion))


def test_the_console_warns_at_the_first_one_class_milestone_only_and_again_for_the_next_training():
    err = io.StringIO()
    console = ConsoleSink(out=io.StringIO(), err=err)
    for epoch in (10, 20):
        console.log_milestone(_milestone(epoch, ALL_EVERYWHERE))
    assert err.getvalue().splitlines() == [
        "warning: at epoch 10 the model predicts ALL for every one of the 9 test images: its accuracy "
        "is the share of ALL cells, not skill; likely causes: random base weights (--weights none) "
        "or a learning rate too large or too small (--lr)"
    ]
    console.log_milestone(_milestone(30, np.array([[2, 1], [1, 5]])))
    assert len(err.getvalue().splitlines()) == 1
    nothing_skipped = SimpleNamespace(skipped=(), fingerprint="f")
    console.log_data(nothing_skipped, SimpleNamespace(warning=None))  # a search's next trial
    console.log_milestone(_milestone(10, ALL_EVERYWHERE))
    assert len(err.getvalue().splitlines()) == 2


def test_a_collapsed_training_is_tagged_and_warned_about_once(tmp_path, tiny_data, capsys):
    """A learning rate of 1 kills the head's units in the first steps (as ResNet50 with random
    weights did at 64 px): from epoch 2 the loss is 5.3434 every epoch and every test cell is ALL."""
    uri = mlflow_store(tmp_path)
    config = tiny_config(
        tiny_data,
        epochs=FLAT_LOSS_EPOCHS,
        eval_epochs=(1, FLAT_LOSS_EPOCHS),
        batch_size=8,
        lr=1.0,
    )
    heard = _Heard()
    observer = FanoutSink(ConsoleSink(), heard)
    run_id, result = tracked_train(MlflowTracker(tracking_uri=uri), config, observer=observer)
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: ")]
    n_test = len(result.prepared.split.test)
    assert warnings == [
        f"warning: at epoch 1 the model predicts ALL for every one of the {n_test} test images: its "
        "accuracy is the share of ALL cells, not skill; likely causes: random base weights "
        "(--weights none) or a learning rate too large or too small (--lr)",
        warnings[1],
    ]
    assert warnings[1].startswith(
        f"warning: the training loss stayed at 5.3434 from epoch 2 to {FLAT_LOSS_EPOCHS}"
    )
    tags = MlflowClient(uri).get_run(run_id).data.tags
    assert tags["test_one_class_predicted"] == "true"
    assert tags["test_one_class_predicted_epochs"] == f"1,{FLAT_LOSS_EPOCHS}"
    assert tags["test_one_class_predicted_class"] == "ALL"
    assert tags["warning_flat_loss"] == warnings[1].removeprefix("warning: ")
    # found once by the loop and handed to every sink: each hears the same finding
    assert heard.warnings == [ModelWarning("flat_loss", FLAT_LOSS_EPOCHS, tags["warning_flat_loss"])]
    assert heard.one_class == {1: 1, FLAT_LOSS_EPOCHS: 1}  # ALL, at both milestones


class _Heard(MetricSink):
    """What a sink is told of a degenerate model."""

    def __init__(self) -> None:
        self.warnings, self.one_class = [], {}

    def log_warning(self, warning: ModelWarning) -> None:
        self.warnings.append(warning)

    def log_milestone(self, milestone: Milestone) -> None:
        self.one_class[milestone.epoch] = milestone.one_class


def _run(run_id: str, arch: str, tags: dict[str, str] | None = None) -> RunRecord:
    base = {"dataset_fingerprint": "fp", "n_images": "10661", "split_protocol": "image"}
    params = {"arch": arch, "optimizer": "adam", "split": "image", "weights": "none"}
    return RunRecord(run_id, params, {**base, **(tags or {})}, {"test_accuracy": {10: 0.67, 20: 0.67}})


def test_the_report_marks_the_configuration_that_predicts_one_class():
    collapsed = {
        "test_one_class_predicted": "true",
        "test_one_class_predicted_epochs": "10,20",
        "test_one_class_predicted_class": "ALL",
    }
    runs = [_run("collapsed1", "resnet50", collapsed), _run("healthy1", "vgg16")]
    lines = provenance(pick_runs(runs))
    assert lines[0].startswith("resnet50 + adam") and lines[0].endswith(
        " — predicts one class (ALL) for every test image at epoch(s) 10, 20"
    )
    assert lines[1].startswith("vgg16 + adam") and "predicts one class" not in lines[1]
    notes = [b for b in protocols_section(protocol_entries(runs)).blocks if isinstance(b, str)]
    marked = [n for n in notes if "predicts one class for every test image" in n]
    assert len(marked) == 1 and marked[0].startswith("resnet50")
    assert "run collapse predicts ALL at epoch(s) 10, 20" in marked[0]
