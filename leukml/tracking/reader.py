"""Reading tracked runs back: the finished trainings a report is built from, and logged models."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
from mlflow.tracking import MlflowClient

from leukml.analysis.comparison import Candidate
from leukml.analysis.predictions import read_predictions
from leukml.analysis.records import RunRecord
from leukml.analysis.uncertainty import CI_METRICS
from leukml.analysis.versus import Versus, interval_of, paired
from leukml.common import runschema as schema
from leukml.common.errors import LeukmlError
from leukml.common.runfilter import child_of, param_present, status_is, tag_is, tag_present, where
from leukml.tracking.uri import resolve_tracking_uri, shown_uri
from leukml.training.evaluation import Predictions

if TYPE_CHECKING:  # loading a model imports the backend; reading runs (a report) does not
    import keras

REPORT_METRICS = (
    "train_accuracy",
    "test_accuracy",
    "test_recall_macro",
    "test_precision_macro",
    "test_f1_macro",
    "test_recall",
    "test_precision",
    "test_f1",
    "test_f1_weighted",
    "test_balanced_accuracy",
    "test_sensitivity",
    "test_specificity",
    "test_auc",
    "test_tp",
    "test_tn",
    "test_fp",
    "test_fn",
    "test_brier",
    "test_ece",
    *(f"test_{m}_ci_{end}" for m in CI_METRICS for end in ("low", "high")),
)


def find_experiment(client: MlflowClient, experiment: str | None):
    """The experiment to read: ``experiment``, else ``$MLFLOW_EXPERIMENT_NAME`` or
    ``$MLFLOW_EXPERIMENT_ID`` (as MLflow follows them), else the one experiment that holds leukml
    training runs (``mlflow run .`` without ``--experiment-name`` puts them in Default): runs with a
    ``split_protocol`` tag, which every leukml training run has carried.

    Raises:
        ValueError: an experiment that does not exist; none or several holding leukml's runs.
    """
    where = shown_uri(client.tracking_uri)
    name = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME")
    if name:
        found = client.get_experiment_by_name(name)
        if found is None:
            raise LeukmlError(
                f"experiment {name!r} not found in {where}; pass --experiment with an existing name "
                "(or --tracking-uri)"
            )
        return found
    if os.environ.get("MLFLOW_EXPERIMENT_ID"):
        return client.get_experiment(os.environ["MLFLOW_EXPERIMENT_ID"])
    holding = [
        e
        for e in client.search_experiments()
        if client.search_runs([e.experiment_id], tag_present(schema.SPLIT_PROTOCOL), max_results=1)
    ]
    if len(holding) == 1:
        return holding[0]
    if not holding:
        raise LeukmlError(f"no leukml training run in {where}; train first (leukml train, or mlflow run .)")
    names = ", ".join(sorted(repr(e.name) for e in holding))
    raise LeukmlError(
        f"leukml training runs are in {len(holding)} experiments of {where} ({names}); choose one with "
        "--experiment NAME (or set MLFLOW_EXPERIMENT_NAME)"
    )


def search_filter(
    client: MlflowClient, experiment: str, experiment_id: str, parent_run: str | None, study_name: str | None
) -> str:
    """The filter clauses (``runfilter.where`` joins them; "" for every run) that keep the trial
    runs of one search's parent run, or of a whole study: every worker's parent runs.

    Raises:
        ValueError: both given, or a study without a search run in the experiment.
    """
    if parent_run and study_name:
        raise LeukmlError(
            f"--parent-run {parent_run} and --study-name {study_name} both choose the runs; give one "
            "(--study-name takes every worker's search of the study)"
        )
    if parent_run:
        return child_of(parent_run)
    if not study_name:
        return ""
    if not study_parent_runs(client, experiment_id, study_name):
        raise LeukmlError(
            f"study {study_name!r} has no search run in experiment {experiment!r}; check the name "
            "(`leukml search` prints it; `optuna studies --storage URL` lists a storage's studies) "
            "or pass the --experiment (and --tracking-uri) it was searched in"
        )
    return where(tag_is(schema.STUDY_NAME, study_name), tag_present(schema.TRIAL_NUMBER))


def fetch_runs(
    experiment: str | None,
    parent_run: str | None = None,
    tracking_uri: str | None = None,
    study_name: str | None = None,
) -> list[RunRecord]:
    """The FINISHED training runs of an experiment, of one search (``parent_run``) or of every
    worker's search of a study (``study_name``), newest first; parent runs and promotions are
    left out (``RunRecord.is_training``).

    Raises:
        ValueError: unknown experiment or study; both ``parent_run`` and ``study_name``.
    """
    client = MlflowClient(resolve_tracking_uri(tracking_uri))
    exp = find_experiment(client, experiment)
    query = where(
        status_is("FINISHED"),
        param_present(schema.ARCH),
        search_filter(client, exp.name, exp.experiment_id, parent_run, study_name),
    )
    runs = client.search_runs([exp.experiment_id], query, order_by=["attributes.start_time DESC"])
    records = [record for record in map(RunRecord.of, runs) if record.is_training]
    for record in records:
        record.curves = {
            m: {h.step: h.value for h in client.get_metric_history(record.run_id, m)} for m in REPORT_METRICS
        }
    return records


def experiment_name(experiment: str | None, tracking_uri: str | None = None) -> str:
    """The name of the experiment a reader reads (``find_experiment``)."""
    return find_experiment(MlflowClient(resolve_tracking_uri(tracking_uri)), experiment).name


def study_parent_ids(experiment: str, study_name: str, tracking_uri: str | None = None) -> list[str]:
    """The ids of a study's search parent runs in an experiment (one per worker), oldest first."""
    client = MlflowClient(resolve_tracking_uri(tracking_uri))
    exp = client.get_experiment_by_name(experiment)
    return [r.info.run_id for r in study_parent_runs(client, exp.experiment_id, study_name)] if exp else []


def fetch_model(model_uri: str, tracking_uri: str | None = None) -> str:
    """The model behind a URI downloaded from the registry or run of ``tracking_uri``
    (``resolve_tracking_uri``) into a temporary folder: its local path. Loading reads that folder;
    a model that is not there is refused here, before the backend's seconds of import."""
    mlflow.set_tracking_uri(resolve_tracking_uri(tracking_uri))
    return mlflow.artifacts.download_artifacts(artifact_uri=model_uri)


def load_keras_model(local: str) -> keras.Model:
    """The Keras model in a folder of ``fetch_model``: a leukml image classifier's (pyfunc) or a
    logged Keras model."""
    model = mlflow.pyfunc.load_model(local)
    try:
        inner = model.unwrap_python_model()
    except Exception:  # not a python model: the keras flavor itself
        return mlflow.keras.load_model(local)
    return inner.model


def study_parent_runs(client: MlflowClient, experiment_id: str, study_name: str) -> list:
    """The search parent runs of a study in an experiment (one per worker), oldest first."""
    return client.search_runs(
        [experiment_id],
        where(tag_is(schema.STUDY_NAME, study_name), tag_is(schema.SEARCH_PARENT, "true")),
        order_by=["attributes.start_time ASC"],
    )


def model_temperature(client: MlflowClient, run) -> float:
    """The temperature that a training run's logged model applies to its probabilities: its
    ``temperature`` metric at the model's epoch (tag ``model_epoch``) with ``--calibrate
    temperature``, else 1.0 (uncalibrated: the model's own probabilities).

    Raises:
        ValueError: a calibrated run without a temperature at its model's epoch.
    """
    if run.data.params.get("calibrate", "none") != "temperature":
        return 1.0
    epoch = RunRecord.of(run).model_epoch
    found = [
        m.value
        for m in client.get_metric_history(run.info.run_id, "temperature")
        if epoch is not None and m.step == int(epoch)
    ]
    if not found:
        raise LeukmlError(
            f"run {run.info.run_id} was trained with --calibrate temperature but logged no temperature "
            f"at its model's epoch ({epoch}); it did not finish logging: train it again"
        )
    return float(found[-1])


def last_predictions(client: MlflowClient, run_id: str) -> Predictions | None:
    """A run's per-image test predictions at its last milestone (``predictions/epoch_NNN.csv``),
    or None for a run that logged none."""
    files = sorted(
        a.path for a in client.list_artifacts(run_id, schema.PREDICTIONS) if a.path.endswith(".csv")
    )
    if not files:
        return None
    with tempfile.TemporaryDirectory(prefix="leukml-predictions-") as tmp:
        return read_predictions(Path(client.download_artifacts(run_id, files[-1], tmp)).read_text())


def versus_runner_up(client: MlflowClient, run, runner_up: Candidate | None, metric: str) -> Versus:
    """The chosen ``run`` against the ranking's runner-up on ``metric``: both values with their
    logged intervals, and the paired interval of their difference from both predictions files."""
    mine = run.data.metrics
    chosen = Versus(metric, float(mine[metric]), interval_of(mine, metric))
    if runner_up is None:
        return chosen
    theirs = client.get_run(runner_up.run_id).data.metrics
    found = paired(
        metric, last_predictions(client, run.info.run_id), last_predictions(client, runner_up.run_id)
    )
    fields = {
        "runner_up": runner_up.run_id,
        "runner_value": float(theirs[metric]),
        "runner_interval": interval_of(theirs, metric),
    }
    if isinstance(found, str):
        return dataclasses.replace(chosen, **fields, why_unpaired=found)
    difference, interval, resampled = found
    return dataclasses.replace(
        chosen, **fields, difference=difference, difference_interval=interval, resampled=resampled
    )
