"""Tracked trainings and searches: training and search, with the MLflow writer as their sink.

The orchestration above both: ``tracked_train`` runs one training inside an MLflow run,
``tracked_search`` a search inside a parent run with a nested run per trial. What is written lives
in ``leukml.tracking.writer`` and ``leukml.tracking.sink``; what is trained and searched in
``leukml.training.trainer`` and ``leukml.experiments.search``.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import tempfile
import time
from pathlib import Path

import numpy as np

from leukml.analysis.predictions import pooled_series
from leukml.common import runschema as schema
from leukml.common.console import silent
from leukml.data.discovery import discover
from leukml.data.splits import n_subjects, summarize
from leukml.data.synth import embedded_dataset
from leukml.experiments.figures import study_summary
from leukml.experiments.protocols import CvConfig, compared_protocols, cv_summary, fold_table, protocol_lines
from leukml.experiments.search import SearchConfig, Study, run_search, search_objective, searched_options
from leukml.tracking import heartbeat, reader, recovery, reports, writer
from leukml.tracking import sink as mlflow_sink
from leukml.tracking.uri import DEFAULT_EXPERIMENT
from leukml.training import checkpoint
from leukml.training.bases import BaseCache
from leukml.training.checkpoint import Snapshot
from leukml.training.config import TrainConfig
from leukml.training.evaluation import Predictions, SubjectScore
from leukml.training.sinks import ConsoleSink, FanoutSink, MetricSink, NullSink
from leukml.training.trainer import TrainResult, check_split, train


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


class _Timed:
    """The MLflow sink, its calls' time added to ``cost``."""

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

    def log_milestone(
        self, epoch: int, metrics: dict[str, float], confusion: np.ndarray, subjects: list[SubjectScore]
    ) -> None:
        self._timed(self.sink.log_milestone, epoch, metrics, confusion, subjects)

    def log_predictions(self, epoch: int, test: Predictions, val: Predictions | None) -> None:
        self._timed(self.sink.log_predictions, epoch, test, val)

    def log_checkpoint(self, snapshot: Snapshot) -> None:
        self._timed(self.sink.log_checkpoint, snapshot)


class _KeptPredictions(NullSink):
    """A fold's test predictions per milestone epoch, for the cross-validation's pooled interval."""

    def __init__(self) -> None:
        self.test: dict[int, Predictions] = {}

    def log_predictions(self, epoch: int, test: Predictions, val: Predictions | None) -> None:
        self.test[epoch] = test


def tracked_train(
    config: TrainConfig,
    experiment: str = DEFAULT_EXPERIMENT,
    tracking_uri: str | None = None,
    tags: dict[str, str] | None = None,
    observer: MetricSink | None = None,
    bases: BaseCache | None = None,
    cost: Cost | None = None,
) -> tuple[str, TrainResult]:
    """Train with everything logged to MLflow; returns (run id, result).

    Inside ``mlflow run`` the run it created is used; inside an active run (a search), a nested
    run is made. ``observer`` also receives the metrics (a search's pruning reporter, the
    console); ``bases``: frozen bases shared with other trainings (a search worker's); ``cost``
    gets what tracking cost the run (``Cost``).
    """
    cost = Cost() if cost is None else cost
    began = time.perf_counter()
    flush_s = mlflow_sink.metric_flush_s()  # a bad value is refused before any run is made
    heartbeat.interval_s()
    writer.connect(experiment, tracking_uri)
    # runs of one configuration differ in the UI: by split and seed, else by the random suffix
    name = f"{config.model.arch}-{config.optimizer}-{config.split.method}-s{config.seed}"
    name += f"-{secrets.token_hex(2)}"
    with (
        writer.mlflow_run(tags, run_name=name, system_metrics=config.system_metrics) as run,
        heartbeat.beating(run.info.run_id),
        mlflow_sink.MlflowSink(config, run.info.run_id, flush_s) as sink,
    ):
        writer.start_training_run(run, config, experiment, sink)
        timed = _Timed(sink, cost)
        both = FanoutSink(timed, observer) if observer else timed
        cost.tracking_s += time.perf_counter() - began
        result = train(config, both, bases, store_checkpoint=timed.log_checkpoint)
        trained = time.perf_counter()
        writer.log_outcome(result, config, sink, getattr(both, "progress", silent))
    _spent(cost, began, trained)
    return run.info.run_id, result


def _spent(cost: Cost, began: float, trained: float) -> None:
    """``cost`` after a tracked training that began at ``began`` and whose training returned at
    ``trained``: what came after (the model, the last writes, the run's end) was tracking."""
    ended = time.perf_counter()
    cost.tracking_s += ended - trained
    cost.total_s += ended - began


def tracked_resume(
    run_id: str,
    tracking_uri: str | None = None,
    tags: dict[str, str] | None = None,
    observer: MetricSink | None = None,
    bases: BaseCache | None = None,
    cost: Cost | None = None,
) -> tuple[str, TrainResult]:
    """Continue a FAILED or KILLED training run from its last checkpoint, in the same MLflow run,
    with its own options; returns (run id, result). Every metric ends with each step once: the
    steps the run logged after its checkpoint are computed again (the same values: the loop goes
    on exactly) but not sent again."""
    cost = Cost() if cost is None else cost
    began = time.perf_counter()
    flush_s = mlflow_sink.metric_flush_s()
    heartbeat.interval_s()
    with tempfile.TemporaryDirectory(prefix="leukml-resume-") as tmp:
        config, experiment, folder = recovery.resumable(run_id, tracking_uri, Path(tmp))
        saved = checkpoint.load(folder)
    writer.connect(experiment, tracking_uri)
    with writer.mlflow_run(tags, run_id=run_id, system_metrics=config.system_metrics) as run:
        logged = recovery.start_resumed_run(run_id, saved.epoch)
        with (
            heartbeat.beating(run.info.run_id),
            mlflow_sink.MlflowSink(config, run.info.run_id, flush_s, logged) as sink,
        ):
            timed = _Timed(sink, cost)
            both = FanoutSink(timed, observer) if observer else timed
            cost.tracking_s += time.perf_counter() - began
            result = train(config, both, bases, resume=saved, store_checkpoint=timed.log_checkpoint)
            trained = time.perf_counter()
            writer.log_outcome(result, config, sink, getattr(both, "progress", silent))
    _spent(cost, began, trained)
    return run.info.run_id, result


def tracked_search(
    search: SearchConfig,
    experiment: str = DEFAULT_EXPERIMENT,
    tracking_uri: str | None = None,
    console: ConsoleSink | None = None,
) -> tuple[str, Study]:
    """A search as one parent MLflow run with a nested run per trial; returns (parent id, study).

    The parent logs the options its mode uses and its ``objective``, the study's best params, value
    and run (``best_run_id``), ``trials.csv`` and Optuna's figures; it is tagged with every parent
    run of the same study (one per worker).
    ``console`` also receives every trial's results and the search's progress lines. A split
    the trials cannot make is refused before any run is made.
    """
    check_split(search.base)
    writer.connect(experiment, tracking_uri)
    name = search.name
    search = dataclasses.replace(search, study_name=name)
    tags = {schema.STUDY_NAME: name, schema.SEARCH_MODE: search.mode, schema.SEARCH_PARENT: "true"}
    with writer.mlflow_run(tags, run_name=f"search-{name}") as parent:
        writer.start_search_run(parent, tags, _search_params(search))
        recovery.link_study_parents(name)  # the other workers' parents of this study, and this one

        def run_trial(config, tags, reporter, bases):
            observer = FanoutSink(reporter, console) if console else reporter
            if schema.RETRY_OF in tags:  # a dead worker's cell: continue its run from its checkpoint
                orphans = recovery.fail_orphaned_trial_runs(tags[schema.STUDY_NAME], tags[schema.RETRY_OF])
                if (saved := recovery.checkpointed_run(orphans, config)) is not None:
                    if console:
                        console.say(
                            f"trial {tags[schema.TRIAL_NUMBER]} continues run {saved} from its checkpoint"
                        )
                    return tracked_resume(saved, tags=tags, observer=observer, bases=bases)
            return tracked_train(config, experiment, tags=tags, observer=observer, bases=bases)

        study = run_search(search, run_trial, console.say) if console else run_search(search, run_trial)
        writer.log_study(study_summary(study))
        recovery.link_study_parents(name)
    return parent.info.run_id, study


def _search_params(search: SearchConfig) -> dict:
    """A search parent's params: what it maximises, the options its mode uses, and the trials'
    shared options (``base.*``) but those each trial sets itself, which would read as if they acted."""
    params = {
        "mode": search.mode,
        "objective": search_objective(search),
        "archs": ",".join(search.archs),
        "optimizers": ",".join(search.optimizers),
        "study_name": search.study_name,
        "storage": _redact(search.storage_url),
    }
    if search.mode != "grid":  # a grid trains each cell once, unpruned, whatever these say
        params |= {"trials": search.trials, "pruner": search.pruner}
    searched = set(searched_options(search))
    shared = {k: v for k, v in search.base.as_dict().items() if k not in searched}
    return params | {f"{schema.BASE_PREFIX}{k}": v for k, v in shared.items()}


def _redact(url: str) -> str:
    """A storage URL without its password, fit for a param."""
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


@dataclasses.dataclass
class Trained:
    """One training of a plan (a CV fold, a protocol): its run, its result, what it stands for."""

    key: str  # the fold number or the protocol
    run_id: str
    result: TrainResult

    @property
    def sizes(self) -> str:
        """The training and test sides in cells and subjects: ``train 200 cells / 8 subjects, test
        40 / 4``, so that rows on different test sets say so."""
        split, records = self.result.prepared.split, self.result.prepared.dataset.records
        train, test = summarize(records, split.train), summarize(records, split.test)
        return (
            f"train {train['n_images']} cells / {n_subjects(train)} subjects, "
            f"test {test['n_images']} / {n_subjects(test)}"
        )


def tracked_cv(
    cv: CvConfig,
    experiment: str = DEFAULT_EXPERIMENT,
    tracking_uri: str | None = None,
    console: ConsoleSink | None = None,
) -> tuple[str, list[Trained], dict[str, dict[int, float]]]:
    """Cross-validation as a parent run with a nested training run per fold (tag ``cv_fold``);
    returns (parent id, the folds, ``cv_mean_*`` / ``cv_std_*`` per milestone epoch, and the
    pooled ``cv_pooled_*`` with their intervals: ``leukml.analysis.predictions.pooled_series``).

    The parent logs the options, the mean and standard deviation of every milestone metric over
    the folds (step = epoch) and ``cv_folds.csv`` (one row per fold). The folds share the frozen
    bases, so the features are extracted once.
    """
    base = cv.base
    dataset = discover(base.data_dir or embedded_dataset(), strict=base.strict)
    plan = cv.fold_configs(sorted({r.fold for r in dataset.records if r.fold is not None}))
    writer.connect(experiment, tracking_uri)
    tags = {schema.CV_PARENT: "true", schema.CV_FOLDS: cv.folds}
    bases, done, kept = BaseCache(), [], []
    with writer.mlflow_run(tags, run_name=f"cv-{base.model.arch}-{base.optimizer}") as parent:
        params = {"folds": cv.folds, **{f"{schema.BASE_PREFIX}{k}": v for k, v in base.as_dict().items()}}
        writer.start_search_run(parent, tags, params)
        for number, (fold, config) in enumerate(plan, start=1):
            if console:
                console.say(f"fold {fold} ({number} of {len(plan)})")
            keeper = _KeptPredictions()
            run_id, result = tracked_train(
                config,
                experiment,
                tags={schema.CV_FOLD: str(fold)},
                observer=FanoutSink(console, keeper) if console else keeper,
                bases=bases,
            )
            done.append(Trained(str(fold), run_id, result))
            kept.append(keeper.test)
        summary = cv_summary([t.result.milestones for t in done]) | pooled_series(kept)
        writer.log_summary_metrics(summary)
        writer.log_table(fold_table([_fold_row(t) for t in done]), schema.CV_FOLDS_CSV)
    return parent.info.run_id, done, summary


def _fold_row(trained: Trained) -> dict:
    split, records = trained.result.prepared.split, trained.result.prepared.dataset.records
    last = max(trained.result.milestones, default=None)  # None: early stopping came first
    subjects = sorted({records[i].subject or "?" for i in split.test})
    return {
        "fold": trained.key,
        "run_id": trained.run_id,
        schema.N_TRAIN: len(split.train),  # the columns are named as the fold runs' tags
        schema.N_VAL: len(split.val),
        schema.N_TEST: len(split.test),
        "test_subjects": " ".join(subjects),
        "epoch": last or "",
        **trained.result.milestones.get(last, {}),
    }


def tracked_protocols(
    config: TrainConfig,
    experiment: str = DEFAULT_EXPERIMENT,
    tracking_uri: str | None = None,
    console: ConsoleSink | None = None,
) -> tuple[str, list[Trained]]:
    """The same training under the image, subject and (when the data has the labelled preliminary
    test set) official splits, as nested runs (tag ``protocol``) of one parent; returns (parent id,
    the trainings in that order). Every protocol draws from one pool: with the official split
    there, the image and subject splits leave its preliminary test set out (``pool=training``), as
    the official split trains on ``training_data`` only."""
    dataset = discover(config.data_dir or embedded_dataset(), strict=config.strict)
    writer.connect(experiment, tracking_uri)
    tags = {schema.PROTOCOLS_PARENT: "true"}
    chosen = compared_protocols(any(r.listed for r in dataset.records))
    pool = "training" if "official" in chosen else "all"
    bases, done = BaseCache(), []
    with writer.mlflow_run(tags, run_name=f"protocols-{config.model.arch}-{config.optimizer}") as parent:
        params = {
            "protocols": ",".join(chosen),
            "pool": pool,
            **{f"{schema.BASE_PREFIX}{k}": v for k, v in config.as_dict().items()},
        }
        writer.start_search_run(parent, tags, params)
        for protocol in chosen:
            if console:
                console.say(f"protocol {protocol}")
            run_id, result = tracked_train(
                config.replace(method=protocol, pool=pool),
                experiment,
                tags={schema.PROTOCOL: protocol},
                observer=console,
                bases=bases,
            )
            done.append(Trained(protocol, run_id, result))
    return parent.info.run_id, done


def tracked_protocols_report(
    config: TrainConfig,
    out: Path,
    experiment: str = DEFAULT_EXPERIMENT,
    tracking_uri: str | None = None,
    console: ConsoleSink | None = None,
) -> tuple[str, list[str], Path]:
    """`leukml protocols`: ``tracked_protocols``, then the report of its runs written to ``out`` and
    logged under the parent's ``report/``; returns (parent id, the table as printed, the report)."""
    from leukml.analysis.report import write_report  # matplotlib's figures: not for a training

    parent, done = tracked_protocols(config, experiment, tracking_uri, console)
    last = config.milestones[-1]
    rows = [(t.key, t.run_id, t.result.milestones.get(last, {}), t.sizes) for t in done]  # stopped early: {}
    title = f"protocols of {config.model.arch} + {config.optimizer}"
    path = write_report(reader.fetch_runs(experiment, parent, tracking_uri), out, title)
    reports.log_report_artifacts(parent, out, tracking_uri)
    return (
        parent,
        [f"protocols parent run {parent}: test metrics at epoch {last}", *protocol_lines(rows)],
        path,
    )
