"""Reading tracked runs back: the finished trainings a report is built from, and logged models."""

from __future__ import annotations

import keras
import mlflow
from mlflow.tracking import MlflowClient

from leukml.report import RunRecord
from leukml.tracking_uri import resolve_tracking_uri

REPORT_METRICS = (
    "train_accuracy",
    "test_accuracy",
    "test_recall_macro",
    "test_precision_macro",
    "test_f1_macro",
    "test_recall",
    "test_precision",
    "test_f1",
)


def fetch_runs(
    experiment: str, parent_run: str | None = None, tracking_uri: str | None = None
) -> list[RunRecord]:
    """The FINISHED training runs of an experiment (or of one search), newest first.

    Raises:
        ValueError: unknown experiment.
    """
    client = MlflowClient(resolve_tracking_uri(tracking_uri))
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise ValueError(
            f"experiment {experiment!r} not found on the tracking server; "
            f"pass --experiment with an existing name (or --tracking-uri)"
        )
    query = "attributes.status = 'FINISHED' and params.arch != ''"
    if parent_run:
        query += f" and tags.mlflow.parentRunId = '{parent_run}'"
    runs = client.search_runs([exp.experiment_id], query, order_by=["attributes.start_time DESC"])
    return [
        RunRecord(
            r.info.run_id,
            dict(r.data.params),
            dict(r.data.tags),
            {
                m: {h.step: h.value for h in client.get_metric_history(r.info.run_id, m)}
                for m in REPORT_METRICS
            },
        )
        for r in runs
    ]


def load_keras_model(model_uri: str) -> keras.Model:
    """The Keras model behind a URI: a leukml image classifier (pyfunc) or a logged Keras model."""
    model = mlflow.pyfunc.load_model(model_uri)
    try:
        inner = model.unwrap_python_model()
    except Exception:  # not a python model: the keras flavor itself
        return mlflow.keras.load_model(model_uri)
    return inner.model
