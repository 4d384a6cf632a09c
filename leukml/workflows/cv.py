"""A tracked cross-validation: a parent run with a tracked training run per fold, the folds' mean,
standard deviation and pooled intervals in the parent."""

from __future__ import annotations

from leukml.analysis.predictions import pooled_series
from leukml.common import runschema as schema
from leukml.data.discovery import discover
from leukml.data.synth import embedded_dataset
from leukml.experiments.protocols import CvConfig, cv_summary, fold_table
from leukml.tracking.tracker import Tracker
from leukml.training.bases import BaseCache
from leukml.training.evaluation import Predictions
from leukml.training.sinks import ConsoleSink, FanoutSink, MetricSink, Milestone
from leukml.workflows.train import Trained, tracked_train


class _KeptPredictions(MetricSink):
    """A fold's test predictions per milestone epoch, for the cross-validation's pooled interval."""

    def __init__(self) -> None:
        self.test: dict[int, Predictions] = {}

    def log_predictions(self, milestone: Milestone) -> None:
        self.test[milestone.epoch] = milestone.test


def tracked_cv(
    tracker: Tracker, cv: CvConfig, console: ConsoleSink | None = None
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
    tags = {schema.CV_PARENT: "true", schema.CV_FOLDS: cv.folds}
    params = {"folds": cv.folds, **{f"{schema.BASE_PREFIX}{k}": v for k, v in base.as_dict().items()}}
    bases, done, kept = BaseCache(), [], []
    with tracker.plan(f"cv-{base.model.arch}-{base.optimizer}", tags, params) as parent:
        for number, (fold, config) in enumerate(plan, start=1):
            if console:
                console.say(f"fold {fold} ({number} of {len(plan)})")
            keeper = _KeptPredictions()
            run_id, result = tracked_train(
                tracker,
                config,
                tags={schema.CV_FOLD: str(fold)},
                observer=FanoutSink(console, keeper),
                bases=bases,
            )
            done.append(Trained(str(fold), run_id, result))
            kept.append(keeper.test)
        summary = cv_summary([t.result.milestones for t in done]) | pooled_series(kept)
        tracker.log_summary(summary)
        tracker.log_table(fold_table([_fold_row(t) for t in done]), schema.CV_FOLDS_CSV)
    return parent, done, summary


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
