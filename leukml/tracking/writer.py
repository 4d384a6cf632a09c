"""The MLflow writer: a run's lifecycle, its params and tags, the logged model, a study's summary.

Its metric sink is ``leukml.tracking.sink``; ``leukml.tracking.mlflow_tracker`` opens the runs the
workflows ask for with both; ``leukml.tracking.reader`` reads runs back and ``leukml.tracking.recovery``
finds runs that outlived their process.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import keras
import mlflow
import numpy as np
from mlflow.entities import Metric
from mlflow.models.signature import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types.schema import Schema, TensorSpec

from leukml.analysis import raster
from leukml.analysis.calibration import fit_temperature
from leukml.analysis.study import StudySummary
from leukml.common import runschema as schema
from leukml.common.console import Progress, silent
from leukml.tracking import heartbeat
from leukml.tracking.mlflow_compat import KerasFlavor
from leukml.tracking.sink import MAX_METRICS_PER_BATCH, MlflowSink
from leukml.tracking.uri import UiLink, resolve_tracking_uri, say_if_unanswered, ui_link
from leukml.training.config import TrainConfig
from leukml.training.loop import TrainResult
from leukml.training.runtime import backend_requirements, device_name, package_version
from leukml.training.sinks import EarlyStop
from leukml.training.sources import predict_probs


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def log_params(run: mlflow.ActiveRun, params: dict) -> None:
    """Log every option; ``mlflow run`` has already logged its -P values (as typed), which MLflow
    forbids changing, so those keep the user's spelling and config.json holds the resolved ones."""
    existing = mlflow.get_run(run.info.run_id).data.params
    text = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in params.items()}
    mlflow.log_params({k: v for k, v in text.items() if k not in existing})


def run_tags(config: TrainConfig) -> dict[str, str]:
    tags = {
        schema.KERAS_BACKEND: keras.backend.backend(),
        schema.KERAS_VERSION: keras.__version__,
        schema.TENSORFLOW_VERSION: package_version("tensorflow") or "not installed",
        schema.DEVICE: device_name(),
        schema.ARCH: config.model.arch,
        schema.OPTIMIZER: config.optimizer,
        schema.SPLIT_PROTOCOL: config.split.method,
    }
    commit = _git_commit()
    if commit:
        tags[schema.GIT_COMMIT] = commit
    return tags


def log_outcome(
    result: TrainResult, config: TrainConfig, sink: MlflowSink, progress: Progress = silent
) -> None:
    """The finished run's curves figure, the epoch its logged model is from, and the model
    (``progress`` hears of logging it), whose file is written from the start beside the rest.
    MLflow links the run's metrics of the model's epoch to the logged model (the experiment's
    models table shows them): the training's last metrics are in the store first."""
    facts = {schema.MODEL_EPOCH: result.model_epoch}
    if result.best_epoch is not None:
        facts[schema.BEST_EPOCH] = result.best_epoch
    if result.stopped_epoch is not None:
        facts[schema.STOPPED_EPOCH] = result.stopped_epoch
        facts[schema.MILESTONES_NOT_REACHED] = ",".join(map(str, result.milestones_not_reached)) or "none"
    on_test = result.prepared.split.selection_on_test
    history, val_label = result.history, "test (selection on test)" if on_test else "val"
    prepared = result.prepared
    example = np.asarray(prepared.images[prepared.split.test[:1]], dtype=np.float32)
    model = result.network.model
    megabytes = round(sum(np.prod(v.shape) * np.dtype(v.dtype).itemsize for v in model.variables) / 1e6)
    with progress("logging the model", megabytes, "MB") as advance, servable(model), _saving(model) as saving:
        mlflow.set_tags({k: str(v) for k, v in facts.items()})
        sink.flush()
        if config.recipe.calibrates:
            _log_model_temperature(result, config, sink)
        sink.log_image(lambda: raster.curves_image(history, val_label), schema.CURVES)
        mlflow.models.Model.log(
            artifact_path=None,
            name=schema.MODEL,
            step=result.model_epoch,
            flavor=KerasFlavor,
            model=saving,
            signature=_signature(model),
            example=sink.input_example(example),
            pip_requirements=backend_requirements(),
            validate_serving_input=False,
        )
        advance(megabytes)


def _log_model_temperature(result: TrainResult, config: TrainConfig, sink: MlflowSink) -> None:
    """The logged model's ``temperature`` (step: its epoch): its milestone's, else (a kept best
    epoch or an early stop between milestones, a resumed run's earlier milestone) fitted now on the
    kept model's validation predictions."""
    epoch = result.model_epoch
    if epoch in sink.temperatures or sink.logged("temperature", epoch):
        return
    prepared = result.prepared
    probs = predict_probs(result.network.model, prepared.images, prepared.split.val, config.batch_size)
    temperature = fit_temperature(prepared.dataset.labels[prepared.split.val], probs[:, 1])
    sink.temperatures[epoch] = temperature
    MlflowClient().log_batch(
        sink.run_id, [Metric("temperature", temperature, int(time.time() * 1000), epoch)]
    )


@contextlib.contextmanager
def servable(model: keras.Model):
    """``model`` as it is served, meanwhile: its parts compiled for training (the head, or the
    whole model once fine-tuned) without their optimizer and compile settings, which Keras would
    save with it (Adam's two moments: a VGG16 head's at 128 px are 34 MB of a 109 MB model) and
    compile again on loading. Serving needs neither; a checkpoint holds the optimizer's state."""
    parts = [
        m for m in (model, *model.layers) if isinstance(m, keras.Model) and getattr(m, "compiled", False)
    ]
    kept = [(m, m.optimizer) for m in parts]
    for m in parts:
        m.optimizer, m.compiled = None, False
    try:
        yield model
    finally:
        for m, optimizer in kept:
            m.optimizer, m.compiled = optimizer, True


class _Saved:
    """A Keras model that a thread of its own is writing to ``file``: what MLflow's keras flavor
    gets for ``model``. ``save(path)``, its only use there, waits for the file and moves it to
    ``path``."""

    def __init__(self, future: Future, file: Path) -> None:
        self.future, self.file = future, file

    def save(self, path: str, **_) -> None:
        self.future.result()
        shutil.move(self.file, path)


@contextlib.contextmanager
def _saving(model: keras.Model):
    """``model`` being written to a ``.keras`` file from now on, beside ``Model.log``'s records of
    the logged model (its entry, outputs, the run's metrics linked to it: a dozen store
    transactions, whose waits the write fills); leaving waits for the write. The file lies in the
    temporary folder where MLflow makes its own (one file system), so the move is a rename."""
    with (
        tempfile.TemporaryDirectory(prefix="leukml-model-") as folder,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="leukml-model") as thread,
    ):
        file = Path(folder) / "model.keras"
        yield _Saved(thread.submit(model.save, file), file)


def _signature(model: keras.Model) -> ModelSignature:
    """float32 images in, float32 (hem, all) probabilities out, from the model's own shapes: no
    prediction needed (the head's output layer is float32 under any precision policy)."""

    def spec(shape: tuple) -> Schema:
        return Schema([TensorSpec(np.dtype(np.float32), (-1, *shape[1:]))])

    return ModelSignature(inputs=spec(model.input_shape), outputs=spec(model.output_shape))


def connect(experiment: str, tracking_uri: str | None) -> None:
    """Point MLflow at the store and experiment, unless a run is already active (nested use)
    or ``mlflow run`` created ours (``MLFLOW_RUN_ID``), which fixes the experiment itself."""
    if mlflow.active_run():
        return
    say_if_unanswered(resolve_tracking_uri(tracking_uri))
    mlflow.set_tracking_uri(resolve_tracking_uri(tracking_uri))
    if not os.environ.get("MLFLOW_RUN_ID"):
        # Set it again by id: when two workers create the experiment at once, MLflow 3.17's
        # set_experiment leaves the loser on the Default experiment (403 on a server with auth).
        mlflow.set_experiment(experiment_id=mlflow.set_experiment(experiment).experiment_id)


@contextlib.contextmanager
def mlflow_run(
    tags: dict[str, str] | None = None,
    run_name: str | None = None,
    run_id: str | None = None,
    system_metrics: bool = False,
):
    """An MLflow run (nested when one is active; ``run_id``: that existing run, continued) that
    always ends: FINISHED, KILLED (stopped early by a search), or FAILED with an ``error`` tag for
    any exception, interrupts included. ``system_metrics``: MLflow samples the machine's CPU,
    memory, disk, network and GPUs into the run's ``system/*`` metrics while it runs."""
    run = _start_run(tags, run_name, run_id, system_metrics)
    try:
        yield run
    except EarlyStop as stop:
        mlflow.set_tag(schema.STOPPED_EARLY, str(stop))
        mlflow.end_run("KILLED")
        raise
    except BaseException as exc:
        _end_failed(run.info.run_id, exc)
        raise
    mlflow.end_run("FINISHED")


def _end_failed(run_id: str, exc: BaseException) -> None:
    """Mark the run FAILED with an ``error`` tag. A store that cannot take even that (a full disk)
    leaves the run RUNNING: the failure's line then says so, and how to mark it once it can."""
    with contextlib.suppress(Exception):  # the status below matters more than the tag
        mlflow.set_tag(schema.ERROR, f"{type(exc).__name__}: {exc}"[:4000])
    try:
        mlflow.end_run("FAILED")
    except Exception:
        exc.add_note(
            f"run {run_id} is left RUNNING (the store could not mark it FAILED); once the store takes "
            f"writes again, `leukml train --resume {run_id}` marks it (and continues it from its "
            f"checkpoint) {heartbeat.stale_after_s():g} s after its last heartbeat"
        )


def _start_run(
    tags: dict[str, str] | None, run_name: str | None, run_id: str | None = None, system_metrics: bool = False
) -> mlflow.ActiveRun:
    """Start a run; a server's refusal (authentication, 403) says what to do."""
    watch = {"log_system_metrics": True} if system_metrics else {}  # else MLflow's env var decides
    try:
        nested = mlflow.active_run() is not None
        if run_id is not None:
            return mlflow.start_run(run_id=run_id, nested=nested, tags=tags, **watch)
        return mlflow.start_run(nested=nested, tags=tags, run_name=run_name, **watch)
    except mlflow.exceptions.MlflowException as exc:
        if exc.get_http_status_code() != 403:
            raise
        user = os.environ.get("MLFLOW_TRACKING_USERNAME", "(no MLFLOW_TRACKING_USERNAME)")
        raise PermissionError(
            f"the tracking server refuses new runs for user {user} in this experiment: ask its admin "
            "to grant EDIT on it (docs/team.md), or use the team's writer account"
        ) from exc


def log_study(summary: StudySummary) -> None:
    """The active (search parent) run gets a study's summary (``leukml.experiments.figures``): the
    best params, value and run, ``trials.csv``, and Optuna's figures under ``study/`` with
    ``study/README.txt`` saying why any is missing."""
    if summary.best_params:
        mlflow.log_params(summary.best_params)
    if summary.best_value is not None:
        mlflow.log_metric("best_value", summary.best_value)
    if summary.best_run_id is not None:
        mlflow.set_tag(schema.BEST_RUN_ID, summary.best_run_id)
    mlflow.log_text(summary.trials_csv, schema.TRIALS_CSV)
    for name, figure in summary.figures.items():
        mlflow.log_figure(figure, f"{schema.STUDY_FOLDER}/{name}.png")
    mlflow.log_text(summary.readme, f"{schema.STUDY_FOLDER}/README.txt")


def ui_link_of(run_id: str, table: bool = False) -> UiLink:
    """The MLflow UI's page of a run of the current tracking store, or (``table``) its experiment's
    runs table in the model-training view (``leukml.tracking.uri.ui_link``)."""
    experiment_id = mlflow.get_run(run_id).info.experiment_id
    return ui_link(mlflow.get_tracking_uri(), experiment_id, None if table else run_id)


def start_training_run(run: mlflow.ActiveRun, config: TrainConfig, experiment: str, sink: MlflowSink) -> None:
    """A training run's params (every option, resolved) now, before it trains (``mlflow run``'s
    must agree); its ``config.json`` and tags on ``sink``'s background thread, while it trains."""
    log_params(
        run,
        {
            **config.as_dict(),
            schema.EXPERIMENT: experiment,
            schema.MILESTONES: ",".join(map(str, config.milestones)),
        },
    )
    sink.log_opening(config.as_dict(), lambda: run_tags(config))


def start_search_run(run: mlflow.ActiveRun, tags: dict[str, str], params: dict) -> None:
    """A search parent's tags (also on a parent that ``mlflow run`` created) and params."""
    mlflow.set_tags(tags)
    log_params(run, params)


def log_summary_metrics(series: dict[str, dict[int, float]]) -> None:
    """The active run gets metrics with step = epoch (a CV parent's ``cv_mean_*`` / ``cv_std_*``)."""
    now = int(time.time() * 1000)
    metrics = [
        Metric(name, value, now, epoch) for name, steps in series.items() for epoch, value in steps.items()
    ]
    client, run_id = MlflowClient(), mlflow.active_run().info.run_id
    for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
        client.log_batch(run_id, metrics[start : start + MAX_METRICS_PER_BATCH])


def log_table(text: str, path: str) -> None:
    """A text artifact of the active run (a CSV table, a summary)."""
    mlflow.log_text(text, path)
