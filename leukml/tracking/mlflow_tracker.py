"""The tracker the CLI hands every workflow: trainings as MLflow runs (params, tags, the metric
sink, heartbeat, the logged model), a plan as a parent run with its trainings nested, a failed run
continued from its checkpoint, and what a parent sums up (``leukml.tracking.tracker.Tracker``)."""

from __future__ import annotations

import contextlib
import secrets
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from leukml.analysis.study import StudySummary
from leukml.common import runschema as schema
from leukml.common.console import Progress
from leukml.tracking import heartbeat, reader, recovery, reports, writer
from leukml.tracking import sink as mlflow_sink
from leukml.tracking.tracker import Cost, TrainingRun
from leukml.tracking.uri import DEFAULT_EXPERIMENT
from leukml.training import checkpoint
from leukml.training.config import TrainConfig
from leukml.training.loop import TrainResult
from leukml.training.sinks import MetricSink, Milestone, ModelWarning
from leukml.training.snapshot import Snapshot


class _Timed(MetricSink):
    """The MLflow sink, its calls' time added to ``cost``."""

    stores_checkpoints = True

    def __init__(self, sink: mlflow_sink.MlflowSink, cost: Cost) -> None:
        self.sink, self.cost = sink, cost

    def _timed(self, fn, *args) -> None:
        start = time.perf_counter()
        try:
            fn(*args)
        finally:
            self.cost.tracking_s += time.perf_counter() - start

    def log_data(self, dataset, split) -> None:
        self._timed(self.sink.log_data, dataset, split)

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        self._timed(self.sink.log_epoch, epoch, metrics)

    def log_milestone(self, milestone: Milestone) -> None:
        self._timed(self.sink.log_milestone, milestone)

    def log_predictions(self, milestone: Milestone) -> None:
        self._timed(self.sink.log_predictions, milestone)

    def log_checkpoint(self, snapshot: Snapshot) -> None:
        self._timed(self.sink.log_checkpoint, snapshot)

    def log_warning(self, warning: ModelWarning) -> None:
        self._timed(self.sink.log_warning, warning)


class MlflowTracker:
    """Runs in MLflow's ``experiment`` on ``tracking_uri`` (None: ``$MLFLOW_TRACKING_URI``, else the
    local store). Inside ``mlflow run`` the run it created is used; inside an open run, a nested run
    is made. ``cost`` adds up what tracking cost its trainings (``Cost``)."""

    def __init__(
        self, experiment: str = DEFAULT_EXPERIMENT, tracking_uri: str | None = None, cost: Cost | None = None
    ) -> None:
        self.experiment, self.tracking_uri = experiment, tracking_uri
        self.cost = Cost() if cost is None else cost
        self._trained: dict[str, float] = {}  # run id -> when its training returned

    @contextlib.contextmanager
    def training(
        self, config: TrainConfig | None, tags: dict[str, str] | None = None, resume: str | None = None
    ) -> Iterator[TrainingRun]:
        began = time.perf_counter()
        flush_s = mlflow_sink.metric_flush_s()  # a bad value is refused before any run is made
        heartbeat.interval_s()
        opened = self._continued(resume, tags, flush_s) if resume else self._started(config, tags, flush_s)
        with opened as run:
            self.cost.tracking_s += time.perf_counter() - began
            yield run
        # what came after the training (the model, the last writes, the run's end) was tracking
        ended = time.perf_counter()
        self.cost.tracking_s += ended - self._trained.pop(run.run_id, ended)
        self.cost.total_s += ended - began

    @contextlib.contextmanager
    def _started(self, config: TrainConfig, tags: dict[str, str] | None, flush_s: float):
        writer.connect(self.experiment, self.tracking_uri)
        # runs of one configuration differ in the UI: by split and seed, else by the random suffix
        name = f"{config.model.arch}-{config.optimizer}-{config.split.method}-s{config.seed}"
        name += f"-{secrets.token_hex(2)}"
        with (
            writer.mlflow_run(tags, run_name=name, system_metrics=config.system_metrics) as run,
            heartbeat.beating(run.info.run_id),
            mlflow_sink.MlflowSink(config, run.info.run_id, flush_s) as sink,
        ):
            writer.start_training_run(run, config, self.experiment, sink)
            yield TrainingRun(run.info.run_id, config, _Timed(sink, self.cost))

    @contextlib.contextmanager
    def _continued(self, run_id: str, tags: dict[str, str] | None, flush_s: float):
        """A FAILED or KILLED training run, continued in the same MLflow run with its own options.
        Every metric ends with each step once: the steps the run logged after its checkpoint are
        computed again (the same values: the loop goes on exactly) but not sent again."""
        with tempfile.TemporaryDirectory(prefix="leukml-resume-") as tmp:
            config, experiment, folder = recovery.resumable(run_id, self.tracking_uri, Path(tmp))
            saved = checkpoint.load(folder)
        writer.connect(experiment, self.tracking_uri)
        with writer.mlflow_run(tags, run_id=run_id, system_metrics=config.system_metrics) as run:
            logged = recovery.start_resumed_run(run_id, saved.epoch)
            with (
                heartbeat.beating(run.info.run_id),
                mlflow_sink.MlflowSink(config, run.info.run_id, flush_s, logged) as sink,
            ):
                yield TrainingRun(run.info.run_id, config, _Timed(sink, self.cost), saved)

    def finish(self, run: TrainingRun, result: TrainResult, progress: Progress) -> None:
        self._trained[run.run_id] = time.perf_counter()
        writer.log_outcome(result, run.config, run.sink.sink, progress)

    @contextlib.contextmanager
    def plan(self, name: str, tags: dict[str, str], params: dict) -> Iterator[str]:
        writer.connect(self.experiment, self.tracking_uri)
        with writer.mlflow_run(tags, run_name=name) as parent:
            writer.start_search_run(parent, tags, params)
            yield parent.info.run_id

    def log_summary(self, series: dict[str, dict[int, float]]) -> None:
        writer.log_summary_metrics(series)

    def log_table(self, text: str, path: str) -> None:
        writer.log_table(text, path)

    def log_study(self, summary: StudySummary) -> None:
        writer.log_study(summary)

    def link_study(self, study_name: str) -> None:
        recovery.link_study_parents(study_name)

    def retried_run(self, tags: dict[str, str], config: TrainConfig) -> str | None:
        orphans = recovery.fail_orphaned_trial_runs(tags[schema.STUDY_NAME], tags[schema.RETRY_OF])
        return recovery.checkpointed_run(orphans, config)

    def report(self, parent: str, out: Path, title: str) -> Path:
        from leukml.analysis.report import write_report  # matplotlib's figures: not for a training

        path = write_report(reader.fetch_runs(self.experiment, parent, self.tracking_uri), out, title)
        reports.log_report_artifacts(parent, out, self.tracking_uri)
        return path
