"""The workflows run with any tracker: cross-validation handed a tracker that keeps its runs in
memory (no MLflow), and the seam through which an observer joins every tracked training."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

import pytest

from leukml.experiments.protocols import CvConfig
from leukml.tracking.tracker import TrainingRun
from leukml.training.config import TrainConfig
from leukml.training.sinks import MetricSink, Milestone
from leukml.workflows.cv import tracked_cv
from leukml.workflows.train import observe_every_training, tracked_train

TINY = {"weights": "none", "image_size": 32, "batch_size": 8, "epochs": 2, "eval_epochs": (1, 2)}


class _Recorded(MetricSink):
    """A training run's sink in memory: its epochs' and milestones' metrics."""

    def __init__(self, run: dict) -> None:
        self.run = run

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        self.run["epochs"][epoch] = metrics

    def log_milestone(self, milestone: Milestone) -> None:
        self.run["milestones"][milestone.epoch] = milestone.metrics


class RecordingTracker:
    """A ``leukml.tracking.tracker.Tracker`` that keeps every run in ``runs`` (id -> what it got)."""

    def __init__(self) -> None:
        self.runs: dict[str, dict] = {}
        self._parents: list[str] = []

    def _new(self, tags: dict | None, **facts) -> dict:
        run_id = f"run{len(self.runs)}"
        parent = self._parents[-1] if self._parents else None
        run = {"id": run_id, "parent": parent, "tags": dict(tags or {}), "status": "RUNNING", **facts}
        self.runs[run_id] = run
        return run

    @contextlib.contextmanager
    def _ended(self, run: dict):
        try:
            yield
        except BaseException:
            run["status"] = "FAILED"
            raise
        run["status"] = "FINISHED"

    @contextlib.contextmanager
    def training(self, config, tags=None, resume=None):
        run = self._new(tags, config=config, epochs={}, milestones={})
        with self._ended(run):
            yield TrainingRun(run["id"], config, _Recorded(run))

    def finish(self, run, result, progress) -> None:
        self.runs[run.run_id]["model_epoch"] = result.model_epoch

    @contextlib.contextmanager
    def plan(self, name, tags, params):
        run = self._new(tags, name=name, params=params, metrics={}, artifacts={})
        self._parents.append(run["id"])
        try:
            with self._ended(run):
                yield run["id"]
        finally:
            self._parents.pop()

    def log_summary(self, series) -> None:
        self.runs[self._parents[-1]]["metrics"].update(series)

    def log_table(self, text, path) -> None:
        self.runs[self._parents[-1]]["artifacts"][path] = text

    def log_study(self, summary) -> None:
        self.runs[self._parents[-1]]["study"] = summary

    def link_study(self, study_name) -> None:
        pass

    def retried_run(self, tags, config):
        return None

    def report(self, parent, out, title):
        raise NotImplementedError


def test_cross_validation_runs_with_a_tracker_that_is_not_mlflow(tiny_data):
    tracker = RecordingTracker()
    cv = CvConfig.of(base={"data_dir": str(tiny_data), **TINY}, folds="2")
    parent, done, summary = tracked_cv(tracker, cv)
    runs = tracker.runs
    assert runs[parent]["tags"] == {"leukml_cv": "true", "cv_folds": "2"}
    assert runs[parent]["params"]["folds"] == "2" and runs[parent]["status"] == "FINISHED"
    folds = [r for r in runs.values() if r["parent"] == parent]
    assert [r["tags"] for r in folds] == [{"cv_fold": "0"}, {"cv_fold": "1"}]
    assert [r["id"] for r in folds] == [t.run_id for t in done]
    assert all(
        r["status"] == "FINISHED" and r["model_epoch"] == 2 and set(r["epochs"]) == {1, 2} for r in folds
    )
    accuracies = [r["milestones"][2]["test_accuracy"] for r in folds]
    assert runs[parent]["metrics"]["cv_mean_test_accuracy"][2] == summary["cv_mean_test_accuracy"][2]
    assert abs(summary["cv_mean_test_accuracy"][2] - sum(accuracies) / 2) < 1e-9
    table = runs[parent]["artifacts"]["cv_folds.csv"].splitlines()
    assert table[0].startswith("fold,run_id,") and [row.split(",")[1] for row in table[1:]] == [
        f["id"] for f in folds
    ]


@pytest.mark.slow
def test_the_workflows_import_no_mlflow():
    """What a workflow needs of its tracker is in ``tracking.tracker``, which imports no MLflow:
    cv, protocols, search and train load without it."""
    code = (
        "import sys; import leukml.workflows.cv, leukml.workflows.protocols, leukml.workflows.search; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'mlflow'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=Path(__file__).parent
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


class _Seen(MetricSink):
    def __init__(self, config, seen: list) -> None:
        self.config, self.seen = config, seen

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        self.seen.append((self.config.seed, epoch))


@pytest.mark.slow
def test_an_observer_joins_every_tracked_training_until_it_stops(tiny_data):
    """The seam the tests' gate uses (tests/gates.py): a sink made per training, after its own."""
    tracker, seen = RecordingTracker(), []
    stop = observe_every_training(lambda config: _Seen(config, seen))
    try:
        for seed in (1, 2):
            tracked_train(tracker, _config(tiny_data, seed))
    finally:
        stop()
    tracked_train(tracker, _config(tiny_data, 3))
    assert seen == [(1, 1), (1, 2), (2, 1), (2, 2)]


def _config(data_dir: Path, seed: int) -> TrainConfig:
    return TrainConfig.of(data_dir=str(data_dir), seed=seed, **TINY)
