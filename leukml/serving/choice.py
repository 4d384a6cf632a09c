"""Which run a promotion registers, and the aliases that point at versions: the runs ranked, the
refusals (no run, a run that chose on the test split, one without a logged model) and the aliases
moved, all without the backend, so that `leukml promote` refuses and rolls back in a second."""

from __future__ import annotations

from dataclasses import dataclass

import mlflow
import numpy as np
from mlflow.entities import Experiment, Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from leukml.analysis.comparison import Candidate, Ranking, rank_like_with_like
from leukml.analysis.records import RunRecord
from leukml.analysis.versus import Versus
from leukml.common import runschema as schema
from leukml.common.errors import LeukmlError
from leukml.common.runfilter import field_is, param_is, status_is, where
from leukml.data.augment import TestTime
from leukml.tracking.reader import find_experiment, search_filter, versus_runner_up
from leukml.tracking.uri import resolve_tracking_uri

DEFAULT_NAME, DEFAULT_ALIAS, PREVIOUS_ALIAS = "leukml-all-classifier", "champion", "previous"
SELECTION_ON_TEST_HELP = (
    "its runs chose epochs and settings by looking at test-split accuracy (the paper's protocol, "
    "no validation split), so that test accuracy is an optimistic estimate; train with "
    "--val-fraction > 0 and promote on a validation metric, or pass --allow-test-selection"
)


@dataclass(frozen=True)
class Choice:
    """The run a promotion registers as ``name`` (with ``tta``), and what it was chosen against."""

    tracking_uri: str
    name: str
    tta: str
    run: Run
    experiment: Experiment
    ranking: Ranking
    metric: str
    value: float
    keras_uri: str  # the run's logged Keras model
    existing: object | None  # the version that already registers this run with this tta
    versus: Versus  # against the runner-up (if any), with intervals


def choose(
    experiment: str | None = None,
    metric: str = "test_accuracy",
    arch: str | None = "vgg16",
    name: str = DEFAULT_NAME,
    parent_run: str | None = None,
    allow_test_selection: bool = False,
    tracking_uri: str | None = None,
    study_name: str | None = None,
    tta: str = "none",
    protocol: str = "auto",
) -> Choice:
    """The run to register (``best_run``), checked: it chose on a validation split (else
    ``allow_test_selection``) and logged its model. ``registry.register`` registers it.

    Raises:
        ValueError: as ``best_run``; test-set selection without consent; no logged model.
    """
    TestTime(tta)  # an unknown one is refused here, naming the choices
    uri = resolve_tracking_uri(tracking_uri)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    run, exp, ranking = best_run(client, experiment, metric, arch, parent_run, study_name, protocol)
    value = float(run.data.metrics[metric])
    if RunRecord.of(run).tag(schema.SELECTION_ON_TEST) == "true" and not allow_test_selection:
        raise LeukmlError(f"refusing to promote run {run.info.run_id} on {metric}: {SELECTION_ON_TEST_HELP}")
    keras_uri = _keras_model_uri(client, run, exp.experiment_id)
    versus = versus_runner_up(client, run, ranking.runs[1] if len(ranking.runs) > 1 else None, metric)
    existing = _existing_version(client, name, run.info.run_id, tta)
    return Choice(uri, name, tta, run, exp, ranking, metric, value, keras_uri, existing, versus)


def best_run(
    client: MlflowClient,
    experiment: str | None,
    metric: str,
    arch: str | None,
    parent_run: str | None,
    study_name: str | None = None,
    protocol: str = "auto",
):
    """The FINISHED training run with the highest ``metric`` (its last value) of an experiment, of
    one search (``parent_run``) or of every worker's search of a study (``study_name``), ranked
    only among runs of one protocol and one test set (``comparison.rank_like_with_like``); and the
    experiment, and the ranking.

    Raises:
        ValueError: unknown experiment or study, no matching run, every value NaN, a protocol
            without runs or whose runs were tested on different test sets.
    """
    exp = find_experiment(client, experiment)
    query = where(
        status_is("FINISHED"),
        param_is(schema.ARCH, arch) if arch else "",
        search_filter(client, exp.name, exp.experiment_id, parent_run, study_name),
    )
    runs = {
        r.info.run_id: r
        for r in client.search_runs([exp.experiment_id], query, order_by=[f"metrics.`{metric}` DESC"])
        if metric in r.data.metrics and RunRecord.of(r).is_training
    }
    if not runs:
        raise LeukmlError(
            f"no finished run with metric {metric!r}"
            + (f" and arch={arch}" if arch else "")
            + (f" in study {study_name!r}" if study_name else "")
            + f" in experiment {exp.name!r}; train one first"
        )
    values = {i: r.data.metrics[metric] for i, r in runs.items()}
    if all(np.isnan(v) for v in values.values()):
        raise LeukmlError(
            f"every matching run's {metric!r} is NaN (undefined: test_auc on a test split with one "
            f"class, tagged test_one_class=true); promote on another --metric"
        )
    records = {i: RunRecord.of(r) for i, r in runs.items()}
    candidates = [
        Candidate(i, records[i].split_protocol, records[i].test_set, values[i])
        for i in runs
        if not np.isnan(values[i])
    ]
    ranking = rank_like_with_like(candidates, protocol)
    return runs[ranking.runs[0].run_id], exp, ranking


def _keras_model_uri(client: MlflowClient, run, experiment_id: str) -> str:
    models = client.search_logged_models(
        [experiment_id], filter_string=field_is("source_run_id", run.info.run_id)
    )
    keras_models = [m for m in models if m.name == schema.MODEL]
    if not keras_models:
        raise LeukmlError(
            f"best run {run.info.run_id} has no logged model 'model'; it cannot be "
            f"promoted (was it trained with leukml train?)"
        )
    return f"models:/{keras_models[0].model_id}"


def _existing_version(client: MlflowClient, name: str, run_id: str, tta: str):
    try:
        versions = client.search_model_versions(field_is("name", name))
    except Exception:
        return None
    return next(
        (
            v
            for v in versions
            if v.tags.get(schema.VERSION_RUN_ID) == run_id and v.tags.get(schema.TTA, "none") == tta
        ),
        None,
    )


def move_alias(client: MlflowClient, name: str, alias: str, version: str | int) -> None:
    """Point ``alias`` at ``version``; its former holder keeps ``previous``."""
    version = str(version)  # the registry answers ints or strings depending on the store
    try:
        current = str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        current = None
    if current is not None and current != version:
        client.set_registered_model_alias(name, PREVIOUS_ALIAS, current)
    client.set_registered_model_alias(name, alias, version)


def rollback(
    name: str = DEFAULT_NAME, alias: str = DEFAULT_ALIAS, tracking_uri: str | None = None
) -> tuple[str, str]:
    """Swap ``alias`` and ``previous``; returns (new holder of alias, new previous).

    Raises:
        ValueError: there is no ``previous`` version to roll back to.
    """
    client = MlflowClient(resolve_tracking_uri(tracking_uri))
    try:
        previous = str(client.get_model_version_by_alias(name, PREVIOUS_ALIAS).version)
        current = str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        raise LeukmlError(
            f"model {name!r} has no '{PREVIOUS_ALIAS}' and '{alias}' versions to "
            f"swap; promote twice before rolling back"
        ) from None
    client.set_registered_model_alias(name, alias, previous)
    client.set_registered_model_alias(name, PREVIOUS_ALIAS, current)
    return previous, current
