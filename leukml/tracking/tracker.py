"""What a workflow asks of the tracker it is handed (``Tracker``), and what one training run opened
by it is (``TrainingRun``). No MLflow here: ``leukml.tracking.mlflow_tracker.MlflowTracker`` is the
one the CLI makes; a test may hand a workflow one that keeps everything in memory.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Protocol

from leukml.analysis.study import StudySummary
from leukml.common.console import Progress
from leukml.training.checkpoint import Checkpoint
from leukml.training.config import TrainConfig
from leukml.training.loop import TrainResult
from leukml.training.sinks import MetricSink


@dataclasses.dataclass
class TrainingRun:
    """A training's run, open: its id, the training it runs (a continued run's own options),
    the sink its results go to, and the checkpoint it continues from (None: it starts afresh)."""

    run_id: str
    config: TrainConfig
    sink: MetricSink
    checkpoint: Checkpoint | None = None


class Tracker(Protocol):
    """Where the workflows' runs go: a training's run, a plan's parent run (a search, a
    cross-validation, the compared protocols) with its trainings nested under it, and what a parent
    sums up."""

    def training(
        self, config: TrainConfig | None, tags: dict[str, str] | None = None, resume: str | None = None
    ) -> contextlib.AbstractContextManager[TrainingRun]:
        """A run for a training of ``config`` (nested in an open plan's run), or with ``resume``
        that FAILED or KILLED run, continued from its last checkpoint with its own options. Leaving
        ends the run: finished, or failed with the error that left it."""
        ...

    def finish(self, run: TrainingRun, result: TrainResult, progress: Progress) -> None:
        """The outcome of a finished training in its run (the model; ``progress`` hears of it)."""
        ...

    def plan(self, name: str, tags: dict[str, str], params: dict) -> contextlib.AbstractContextManager[str]:
        """A plan's parent run, named ``name``, with its tags and params; yields its id."""
        ...

    def log_summary(self, series: dict[str, dict[int, float]]) -> None:
        """Metrics of the open parent run, per epoch (a CV's ``cv_mean_*``)."""
        ...

    def log_table(self, text: str, path: str) -> None:
        """A text artifact of the open parent run."""
        ...

    def log_study(self, summary: StudySummary) -> None:
        """A search's study summed up in its open parent run."""
        ...

    def link_study(self, study_name: str) -> None:
        """The parent runs of one study (one per worker) told about each other."""
        ...

    def retried_run(self, tags: dict[str, str], config: TrainConfig) -> str | None:
        """A search cell retried after its worker died (``tags["retry_of"]``): the lost trial's run
        to continue from its checkpoint, else None (trained afresh)."""
        ...

    def report(self, parent: str, out: Path, title: str) -> Path:
        """The report of a parent run's trainings, written to ``out`` and kept with the parent."""
        ...


@dataclasses.dataclass
class Cost:
    """What tracking cost a tracked training in its own thread: starting the run, its params and
    tags, the sink's calls as the training hands results out, the logged model, waiting for the
    background writes and ending the run (``tracking_s``), of the call's whole time (``total_s``).
    The background thread's writes count only where the training waits for them."""

    tracking_s: float = 0.0
    total_s: float = 0.0

    def line(self) -> str:
        """``tracking: 0.41 s of this run's 13.02 s, 3.2% of the 12.61 s it trained``."""
        trained = self.total_s - self.tracking_s
        share = self.tracking_s / trained if trained > 0 else float("nan")
        return (
            f"tracking: {self.tracking_s:.2f} s of this run's {self.total_s:.2f} s, {100 * share:.1f}% of "
            f"the {trained:.2f} s it trained"
        )
