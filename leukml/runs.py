"""Tracked trainings and searches: training and search, with the MLflow writer as their sink.

The orchestration above both: ``tracked_train`` runs one training inside an MLflow run,
``tracked_search`` a search inside a parent run with a nested run per trial. What is written lives
in ``leukml.tracking``; what is trained and searched in ``leukml.training`` and ``leukml.search``.
"""

from __future__ import annotations

import dataclasses
import re

import optuna

from leukml import tracking
from leukml.bases import BaseCache
from leukml.config import TrainConfig
from leukml.search import SearchConfig, run_search, selection_metric
from leukml.sinks import ConsoleSink, FanoutSink, MetricSink
from leukml.tracking_uri import DEFAULT_EXPERIMENT
from leukml.training import TrainResult, train


def tracked_train(
    config: TrainConfig,
    experiment: str = DEFAULT_EXPERIMENT,
    tracking_uri: str | None = None,
    tags: dict[str, str] | None = None,
    observer: MetricSink | None = None,
    bases: BaseCache | None = None,
) -> tuple[str, TrainResult]:
    """Train with everything logged to MLflow; returns (run id, result).

    Inside ``mlflow run`` the run it created is used; inside an active run (a search), a nested
    run is made. ``observer`` also receives the metrics (a search's pruning reporter, the
    console); ``bases``: frozen bases shared with other trainings (a search worker's).
    """
    flush_s = tracking.metric_flush_s()  # a bad value is refused before any run is made
    tracking.connect(experiment, tracking_uri)
    with tracking.mlflow_run(tags, run_name=f"{config.model.arch}-{config.optimizer}") as run:
        tracking.start_training_run(run, config, experiment)
        with tracking.MlflowSink(config, run.info.run_id, flush_s) as sink:
            result = train(config, FanoutSink(sink, observer) if observer else sink, bases)
            tracking.log_outcome(result, config, sink)
    return run.info.run_id, result


def tracked_search(
    search: SearchConfig,
    experiment: str = DEFAULT_EXPERIMENT,
    tracking_uri: str | None = None,
    console: ConsoleSink | None = None,
) -> tuple[str, optuna.Study]:
    """A search as one parent MLflow run with a nested run per trial; returns (parent id, study).

    The parent logs the search options, the study's best params and value, and ``trials.csv``.
    ``console`` also receives every trial's results and the search's progress lines.
    """
    tracking.connect(experiment, tracking_uri)
    name = search.name
    search = dataclasses.replace(search, study_name=name)
    tags = {"study_name": name, "search_mode": search.mode, "leukml_search": "true"}
    with tracking.mlflow_run(tags, run_name=f"search-{name}") as parent:
        tracking.start_search_run(
            parent,
            tags,
            {
                "mode": search.mode,
                "archs": ",".join(search.archs),
                "optimizers": ",".join(search.optimizers),
                "trials": search.trials,
                "study_name": name,
                "storage": _redact(search.storage_url),
                "pruner": search.pruner,
                # the plan: a requested validation split that comes out empty is refused, so every
                # trial that trains selects on this (each trial's user attr says what it used)
                "selection_metric": selection_metric(not search.base.requests_validation),
                **{f"base.{k}": v for k, v in search.base.as_dict().items()},
            },
        )

        def run_trial(config, tags, reporter, bases):
            if "retry_of" in tags:
                tracking.fail_orphaned_trial_runs(tags["study_name"], tags["retry_of"])
            observer = FanoutSink(reporter, console) if console else reporter
            return tracked_train(config, experiment, tags=tags, observer=observer, bases=bases)

        study = run_search(search, run_trial, console.say) if console else run_search(search, run_trial)
        tracking.log_study(study)
    return parent.info.run_id, study


def _redact(url: str) -> str:
    """A storage URL without its password, fit for a param."""
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)
