"""The tracking layer: the only module that talks to MLflow."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import keras
import mlflow
import numpy as np
from mlflow.models import infer_signature

from leukml import CLASS_NAMES, plots
from leukml.config import TrainConfig
from leukml.discovery import Dataset
from leukml.runtime import backend_requirements, device_name, package_version
from leukml.splits import Split, manifest, summarize
from leukml.training import TrainResult, train

DEFAULT_EXPERIMENT = "leukml"


def resolve_tracking_uri(uri: str | None) -> str:
    """The given URI, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` here."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


class MlflowSink:
    """Sends a training run's results to the active MLflow run as they come."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config

    def log_data(self, dataset: Dataset, split: Split) -> None:
        counts = {side: summarize(dataset.records, idx) for side, idx in split.sides().items()}
        mlflow.set_tags({"dataset_fingerprint": dataset.fingerprint,
                         "data_dir": str(dataset.root), "n_images": str(len(dataset)),
                         **{f"n_{side}": str(c["n_images"]) for side, c in counts.items()}})
        mlflow.log_dict({"fingerprint": dataset.fingerprint, "data_dir": str(dataset.root),
                         "counts": counts, **manifest(dataset.records, split)},
                        "split_manifest.json")

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        mlflow.log_metrics(metrics, step=epoch)

    def log_milestone(self, epoch: int, metrics: dict[str, float], confusion: np.ndarray) -> None:
        mlflow.log_metrics(metrics, step=epoch)
        name = f"confusion_matrix/epoch_{epoch:03d}"
        mlflow.log_dict({"epoch": epoch, "labels": list(CLASS_NAMES),
                         "matrix": confusion.tolist(), "metrics": metrics}, f"{name}.json")
        fig = plots.confusion_figure(
            confusion, f"{self.config.arch} + {self.config.optimizer}, epoch {epoch}: "
                       f"acc {metrics['test_accuracy']:.3f}")
        mlflow.log_figure(fig, f"{name}.png")
        plots.close(fig)


def _log_params(run: mlflow.ActiveRun, params: dict) -> None:
    """Log every option; ``mlflow run`` has already logged its -P values (as typed), which MLflow
    forbids changing, so those keep the user's spelling and config.json holds the resolved ones."""
    existing = mlflow.get_run(run.info.run_id).data.params
    text = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in params.items()}
    mlflow.log_params({k: v for k, v in text.items() if k not in existing})


def _run_tags(config: TrainConfig) -> dict[str, str]:
    tags = {"keras_backend": keras.backend.backend(), "keras_version": keras.__version__,
            "tensorflow_version": package_version("tensorflow") or "not installed",
            "device": device_name(), "arch": config.arch, "optimizer": config.optimizer,
            "split_protocol": config.split,
            "selection_on_test": str(config.selection_on_test).lower()}
    commit = _git_commit()
    if commit:
        tags["git_commit"] = commit
    return tags


def _log_outcome(result: TrainResult, config: TrainConfig) -> None:
    fig = plots.curves_figure(result.history,
                              "test (selection on test)" if config.selection_on_test else "val")
    mlflow.log_figure(fig, "curves.png")
    plots.close(fig)
    prepared = result.prepared
    example = np.asarray(prepared.images[prepared.split.test[:2]], dtype=np.float32)
    model = result.network.model
    signature = infer_signature(example, keras.ops.convert_to_numpy(model.predict(example, verbose=0)))
    with _model_dir_created_first():
        mlflow.keras.log_model(model, name="model", signature=signature, input_example=example,
                               pip_requirements=backend_requirements())


@contextlib.contextmanager
def _model_dir_created_first():
    """MLflow 3.17's keras flavor writes input_example.json before it creates the model folder
    (FileNotFoundError); create the folder first. Harmless where MLflow already does."""
    from mlflow.keras import save as keras_save

    original = keras_save._save_example

    def save_example(mlflow_model, example, path, *args, **kwargs):
        os.makedirs(path, exist_ok=True)
        return original(mlflow_model, example, path, *args, **kwargs)

    keras_save._save_example = save_example
    try:
        yield
    finally:
        keras_save._save_example = original


def tracked_train(config: TrainConfig, experiment: str = DEFAULT_EXPERIMENT,
                  tracking_uri: str | None = None) -> tuple[str, TrainResult]:
    """Train with everything logged to MLflow; returns (run id, result).

    Inside ``mlflow run`` (``MLFLOW_RUN_ID`` set) the run it created is used. Any failure,
    interrupts included, leaves the run FAILED with an ``error`` tag, and is re-raised.
    """
    mlflow.set_tracking_uri(resolve_tracking_uri(tracking_uri))
    if not os.environ.get("MLFLOW_RUN_ID"):
        mlflow.set_experiment(experiment)
    with mlflow.start_run() as run:
        try:
            _log_params(run, {**config.as_dict(), "experiment": experiment,
                              "milestones": ",".join(map(str, config.milestones))})
            mlflow.log_dict(config.as_dict(), "config.json")
            mlflow.set_tags(_run_tags(config))
            result = train(config, MlflowSink(config))
            _log_outcome(result, config)
        except BaseException as exc:
            mlflow.set_tag("error", f"{type(exc).__name__}: {exc}"[:4000])
            raise
    return run.info.run_id, result
