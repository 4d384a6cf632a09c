"""The MLflow writer: a training run's lifecycle, its params and tags, the metric sink, the logged model.

Above it, ``leukml.runs`` runs tracked trainings and searches; beside it, ``leukml.runreader``
reads runs back (report, explain) and ``leukml.registry`` registers and serves models. Those four
and ``leukml.serving`` / ``leukml.predict`` are the modules that use MLflow; training, search and
the data layer never do.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import keras
import mlflow
import numpy as np
import optuna
from mlflow.data.dataset_source_registry import get_dataset_source_from_json
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import Metric, RunTag
from mlflow.models.signature import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types.schema import Schema, TensorSpec

from leukml import CLASS_NAMES, plots, studyfigures
from leukml.checkpoint import Snapshot
from leukml.config import TrainConfig
from leukml.discovery import Dataset
from leukml.evaluation import SHOWN_NAMES, SubjectScore, one_class_predicted, per_subject_csv
from leukml.runtime import backend_requirements, device_name, package_version
from leukml.sinks import EarlyStop, FlatLossWatch
from leukml.splits import Split, manifest, n_subjects, summarize, test_set_id
from leukml.tracking_uri import UiLink, resolve_tracking_uri, ui_link
from leukml.training import TrainResult

CHECKPOINT_PATH = "checkpoint"  # the run's checkpoints: two slots in it; older leukml wrote one here
CHECKPOINT_SLOTS = (f"{CHECKPOINT_PATH}/a", f"{CHECKPOINT_PATH}/b")
METRIC_FLUSH_S = 5.0  # how stale a live run's curves may be in the MLflow UI; $LEUKML_METRIC_FLUSH_S
MAX_METRICS_PER_BATCH = 1000  # MLflow's limit for one log_batch


def metric_flush_s() -> float:
    """Seconds between metric batches: ``$LEUKML_METRIC_FLUSH_S``, else ``METRIC_FLUSH_S``.

    Raises:
        ValueError: the variable is set but is not a number of seconds >= 0.
    """
    text = os.environ.get("LEUKML_METRIC_FLUSH_S", "").strip()
    if not text:
        return METRIC_FLUSH_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not seconds >= 0:
        raise ValueError(
            f"LEUKML_METRIC_FLUSH_S={text!r}; use a number of seconds >= 0 (0 sends every epoch's "
            f"metrics at once), or unset it for the default {METRIC_FLUSH_S:g}"
        )
    return seconds


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


class MlflowSink:
    """Sends a training run's results to its MLflow run while training goes on.

    Everything is written by one background thread, in order: metrics in a batch every
    ``flush_s`` seconds, figures drawn there too. Use it as a context manager: leaving sends the
    last metrics and waits for every write.
    """

    def __init__(
        self,
        config: TrainConfig,
        run_id: str,
        flush_s: float = METRIC_FLUSH_S,
        logged: dict[str, set[int]] | None = None,
    ) -> None:
        """``logged``: the steps each metric already has (a resumed run's): not sent again."""
        self.config, self.run_id, self.flush_s = config, run_id, flush_s
        self._logged = logged or {}
        self._client = MlflowClient()
        self._uploads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="leukml-artifacts")
        self._pending: list[Future] = []
        self._checkpoint: Future | None = None  # the checkpoint being stored
        self._slot: str | None = None  # the slot the last checkpoint went to
        self._metrics: list[Metric] = []
        self._flushed = time.monotonic()
        self._loss = FlatLossWatch()
        self._one_class: tuple[set[int], set[str]] | None = None  # milestone epochs, class names

    def __enter__(self) -> MlflowSink:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """Send the last metrics and wait for every write, also after a failed training (its
        curves up to the failure are kept); then a write's error is raised, unless the training's
        own error is already on its way."""
        self._flush_metrics()
        self._uploads.shutdown(wait=True)
        if exc_type is None:
            for future in self._pending:
                future.result()

    def _queue_metrics(self, step: int, metrics: dict[str, float]) -> None:
        """Metrics go out in one batch every ``flush_s`` seconds (and when the training ends):
        each write is a transaction in the store (20-50 ms of CPU on SQLite), so one per epoch
        would cost a short run several percent of its time."""
        now_ms = int(time.time() * 1000)
        self._metrics += [
            Metric(key, float(value), now_ms, step)
            for key, value in metrics.items()
            if step not in self._logged.get(key, ())
        ]
        if time.monotonic() - self._flushed >= self.flush_s:
            self._flush_metrics()

    def _flush_metrics(self) -> None:
        batch, self._metrics, self._flushed = self._metrics, [], time.monotonic()
        for start in range(0, len(batch), MAX_METRICS_PER_BATCH):
            self.in_background(
                self._client.log_batch, self.run_id, batch[start : start + MAX_METRICS_PER_BATCH]
            )

    def in_background(self, fn: Callable[..., object], *args) -> None:
        self._pending.append(self._uploads.submit(fn, *args))

    def log_figure(self, make_figure: Callable[[], object], path: str) -> None:
        """Draw (``make_figure()``) and upload a figure on the background thread."""
        self.in_background(lambda: self._client.log_figure(self.run_id, make_figure(), path))

    def log_data(self, dataset: Dataset, split: Split) -> None:
        counts = {side: summarize(dataset.records, idx) for side, idx in split.sides().items()}
        mlflow.set_tags(
            {
                "dataset_fingerprint": dataset.fingerprint,
                "data_dir": str(dataset.root),
                "n_images": str(len(dataset)),
                **{f"n_{side}": str(c["n_images"]) for side, c in counts.items()},
                **{f"n_{side}_subjects": str(n_subjects(c)) for side, c in counts.items()},
                # what promote ranks within: runs with one test_set were tested on the same cells
                "test_set": test_set_id(dataset.fingerprint, dataset.records, split),
                # facts of the split actually made (leukml.splits.Split), not of the options
                "selection_on_test": str(split.selection_on_test).lower(),
                "test_one_class": str(split.test_one_class).lower(),
            }
        )
        self._log_inputs(dataset, counts)
        mlflow.log_dict(
            {
                "fingerprint": dataset.fingerprint,
                "data_dir": str(dataset.root),
                "counts": counts,
                **manifest(dataset.records, split),
            },
            "split_manifest.json",
        )

    @staticmethod
    def _log_inputs(dataset: Dataset, counts: dict[str, dict]) -> None:
        """The data as the run's inputs, one per split side (context ``train``, ``val``, ``test``),
        each with the dataset's fingerprint as digest. MLflow keeps one input per (name, digest) in
        a run and drops the others silently, so each side's name is the data folder's name and the
        side (``C-NMC_Leukemia/train``)."""
        source = get_dataset_source_from_json(json.dumps({"uri": str(dataset.root)}), "local")
        folder = dataset.root.resolve().name or str(dataset.root)
        sides = [side for side, c in counts.items() if c["n_images"]]
        mlflow.log_inputs(
            [MetaDataset(source, name=f"{folder}/{side}", digest=dataset.fingerprint) for side in sides],
            contexts=sides,
            tags_list=[{"n_images": str(counts[side]["n_images"])} for side in sides],
        )

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        self._queue_metrics(epoch, metrics)
        if text := self._loss.see(epoch, metrics):
            self.in_background(self._client.set_tag, self.run_id, "warning_flat_loss", text)

    def log_checkpoint(self, snapshot: Snapshot) -> None:
        """Store a checkpoint in the run on the background thread, after every metric and figure
        queued before it (a run continued from it lacks none of its epochs), while training goes on.

        Atomic: it goes to the one of the run's two slots (``checkpoint/a``, ``checkpoint/b``) that
        the ``checkpoint_path`` tag does not name, and the tags (with ``checkpoint_epoch``) move to
        it only once it is complete, so a run killed while it is stored resumes from the one
        before. One is stored at a time: this waits for the one before (and raises its error)."""
        if self._checkpoint is not None:
            self._checkpoint.result()
        if self._slot is None:  # a resumed run's slots: keep the one its checkpoint is in
            self._slot = self._client.get_run(self.run_id).data.tags.get("checkpoint_path")
        self._slot = CHECKPOINT_SLOTS[1] if self._slot == CHECKPOINT_SLOTS[0] else CHECKPOINT_SLOTS[0]
        self._flush_metrics()
        self.in_background(self._store_checkpoint, snapshot, self._slot)
        self._checkpoint = self._pending[-1]

    def _store_checkpoint(self, snapshot: Snapshot, slot: str) -> None:
        with tempfile.TemporaryDirectory(prefix="leukml-checkpoint-") as tmp:
            self._client.log_artifacts(self.run_id, str(snapshot.write(Path(tmp))), slot)
        tags = {"checkpoint_path": slot, "checkpoint_epoch": str(snapshot.epoch)}
        self._client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in tags.items()])

    def log_milestone(
        self, epoch: int, metrics: dict[str, float], confusion: np.ndarray, subjects: list[SubjectScore]
    ) -> None:
        self._queue_metrics(epoch, metrics)
        name = f"confusion_matrix/epoch_{epoch:03d}"
        self.in_background(
            self._client.log_dict,
            self.run_id,
            {
                "epoch": epoch,
                "labels": list(CLASS_NAMES),
                "matrix": confusion.tolist(),
                "metrics": {k: None if np.isnan(v) else v for k, v in metrics.items()},  # strict JSON
            },
            f"{name}.json",
        )
        cell = f"{self.config.model.arch} + {self.config.optimizer}"
        title = f"{cell}, epoch {epoch}: acc {metrics['test_accuracy']:.3f}"
        self.log_figure(lambda: plots.confusion_figure(confusion, title), f"{name}.png")
        table = f"per_subject/epoch_{epoch:03d}"
        self.in_background(self._client.log_text, self.run_id, per_subject_csv(subjects), f"{table}.csv")
        heading = f"{cell}, epoch {epoch}: accuracy per subject"
        self.log_figure(lambda: plots.subject_accuracy_figure(subjects, heading), f"{table}.png")
        label = one_class_predicted(confusion)
        if label is not None:
            self._tag_one_class(epoch, SHOWN_NAMES[label])

    def _tag_one_class(self, epoch: int, name: str) -> None:
        """Tags naming every milestone so far that predicted one class for every test image (the
        report marks the run); a resumed run keeps the epochs its first part tagged."""
        if self._one_class is None:
            tags = self._client.get_run(self.run_id).data.tags if self._logged else {}
            self._one_class = (
                {int(e) for e in tags.get("test_one_class_predicted_epochs", "").split(",") if e},
                {c for c in tags.get("test_one_class_predicted_class", "").split(",") if c},
            )
        epochs, names = self._one_class
        epochs.add(epoch)
        names.add(name)
        tags = {
            "test_one_class_predicted": "true",
            "test_one_class_predicted_epochs": ",".join(map(str, sorted(epochs))),
            "test_one_class_predicted_class": ",".join(sorted(names)),
        }
        self.in_background(
            self._client.log_batch, self.run_id, (), (), [RunTag(k, v) for k, v in tags.items()]
        )


def log_params(run: mlflow.ActiveRun, params: dict) -> None:
    """Log every option; ``mlflow run`` has already logged its -P values (as typed), which MLflow
    forbids changing, so those keep the user's spelling and config.json holds the resolved ones."""
    existing = mlflow.get_run(run.info.run_id).data.params
    text = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in params.items()}
    mlflow.log_params({k: v for k, v in text.items() if k not in existing})


def run_tags(config: TrainConfig) -> dict[str, str]:
    tags = {
        "keras_backend": keras.backend.backend(),
        "keras_version": keras.__version__,
        "tensorflow_version": package_version("tensorflow") or "not installed",
        "device": device_name(),
        "arch": config.model.arch,
        "optimizer": config.optimizer,
        "split_protocol": config.split.method,
    }
    commit = _git_commit()
    if commit:
        tags["git_commit"] = commit
    return tags


def log_outcome(result: TrainResult, config: TrainConfig, sink: MlflowSink) -> None:
    """The finished run's curves figure, the epoch its logged model is from, and the model."""
    facts = {"model_epoch": result.model_epoch}
    if result.best_epoch is not None:
        facts["best_epoch"] = result.best_epoch
    if result.stopped_epoch is not None:
        facts["stopped_epoch"] = result.stopped_epoch
        facts["milestones_not_reached"] = ",".join(map(str, result.milestones_not_reached)) or "none"
    mlflow.set_tags({k: str(v) for k, v in facts.items()})
    on_test = result.prepared.split.selection_on_test
    history, val_label = result.history, "test (selection on test)" if on_test else "val"
    sink.log_figure(lambda: plots.curves_figure(history, val_label), "curves.png")
    prepared = result.prepared
    example = np.asarray(prepared.images[prepared.split.test[:1]], dtype=np.float32)
    model = result.network.model
    with _model_dir_created_first():
        mlflow.models.Model.log(
            artifact_path=None,
            name="model",
            flavor=_KerasFlavor,
            model=model,
            signature=_signature(model),
            input_example=example,
            pip_requirements=backend_requirements(),
            validate_serving_input=False,
        )


def _signature(model: keras.Model) -> ModelSignature:
    """float32 images in, float32 (hem, all) probabilities out, from the model's own shapes: no
    prediction needed (the head's output layer is float32 under any precision policy)."""

    def spec(shape: tuple) -> Schema:
        return Schema([TensorSpec(np.dtype(np.float32), (-1, *shape[1:]))])

    return ModelSignature(inputs=spec(model.input_shape), outputs=spec(model.output_shape))


class _KerasFlavor:
    """``mlflow.keras`` as ``Model.log`` calls it, without MLflow's serving-input check: that
    check reloads the whole model from disk to predict the input example (2-4 s a run, the largest
    share of tracking's cost in bench/tracking.py). The logged example is loaded and predicted in
    tests/test_tracking.py instead. ``mlflow.keras.log_model`` cannot turn the check off."""

    __name__ = "mlflow.keras"

    @staticmethod
    def save_model(validate_serving_input: bool = True, **kwargs):
        return mlflow.keras.save_model(**kwargs)


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


def connect(experiment: str, tracking_uri: str | None) -> None:
    """Point MLflow at the store and experiment, unless a run is already active (nested use)
    or ``mlflow run`` created ours (``MLFLOW_RUN_ID``), which fixes the experiment itself."""
    if mlflow.active_run():
        return
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
        mlflow.set_tag("stopped_early", str(stop))
        mlflow.end_run("KILLED")
        raise
    except BaseException as exc:
        mlflow.set_tag("error", f"{type(exc).__name__}: {exc}"[:4000])
        mlflow.end_run("FAILED")
        raise
    mlflow.end_run("FINISHED")


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
            "to grant EDIT on it (README: Running for a team), or use the team's writer account"
        ) from exc


def fail_orphaned_trial_runs(study_name: str, trial_number: str) -> list[str]:
    """A killed worker leaves its trial's run RUNNING forever: mark it FAILED when the cell is
    retried; returns the ids of the runs marked."""
    client, marked = MlflowClient(), []
    experiment_id = mlflow.active_run().info.experiment_id
    for run in client.search_runs(
        [experiment_id],
        filter_string=(
            f"tags.study_name = '{study_name}' and tags.trial_number = '{trial_number}' "
            "and attributes.status = 'RUNNING'"
        ),
    ):
        client.set_tag(run.info.run_id, "error", "worker lost: no heartbeat; the trial was retried")
        client.set_terminated(run.info.run_id, "FAILED")
        marked.append(run.info.run_id)
    return marked


def checkpointed_run(run_ids: list[str], config: TrainConfig) -> str | None:
    """The newest of ``run_ids`` that saved a checkpoint of the training ``config`` describes (the
    same options), or None: a retried trial continues there instead of starting again."""
    client = MlflowClient()
    runs = sorted((client.get_run(r) for r in run_ids), key=lambda r: r.info.start_time, reverse=True)
    for run in runs:
        if "checkpoint_epoch" not in run.data.tags:
            continue
        logged = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/config.json")
        if TrainConfig.from_params(logged).as_dict() == config.as_dict():
            return run.info.run_id
    return None


def log_report_artifacts(parent_run: str, folder: Path, tracking_uri: str | None = None) -> None:
    MlflowClient(resolve_tracking_uri(tracking_uri)).log_artifacts(parent_run, str(folder), "report")


def log_study(study: optuna.Study) -> None:
    """The active (search parent) run gets the study's best params and value, the best trial's run
    (tag ``best_run_id``: any worker's), ``trials.csv``, and Optuna's figures of the study under
    ``study/`` with ``study/README.txt`` saying why any is missing."""
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if complete:
        best = study.best_trial
        mlflow.log_params({f"best.{k}": v for k, v in best.params.items()})
        mlflow.log_metric("best_value", best.value)
        if "mlflow_run_id" in best.user_attrs:  # a trial added by hand has none
            mlflow.set_tag("best_run_id", best.user_attrs["mlflow_run_id"])
    mlflow.log_text(study.trials_dataframe().to_csv(index=False), "trials.csv")
    figures, skipped = studyfigures.study_figures(study)
    for name, figure in figures.items():
        mlflow.log_figure(figure, f"study/{name}.png")
    mlflow.log_text(studyfigures.readme(figures, skipped, len(study.trials)), "study/README.txt")


STUDY_PARENT_RUNS = "study_parent_runs"  # tag: every search parent run of the same study, comma-separated


def study_parent_runs(client: MlflowClient, experiment_id: str, study_name: str) -> list:
    """The search parent runs of a study in an experiment (one per worker), oldest first."""
    return client.search_runs(
        [experiment_id],
        f"tags.study_name = {filter_string(study_name)} and tags.leukml_search = 'true'",
        order_by=["attributes.start_time ASC"],
    )


def filter_string(value: str) -> str:
    """A value quoted for an MLflow search filter (which reads no backslash escapes)."""
    return f'"{value}"' if "'" in value else f"'{value}'"


def link_study_parents(study_name: str) -> list[str]:
    """Tag every search parent run of the study in the active run's experiment with all their ids
    (``study_parent_runs``), so each worker's parent leads to the others; returns the ids.

    Called when a search parent starts and when it ends: workers starting at the same moment may
    not see each other at the start, the last one to end sees everybody.
    """
    client = MlflowClient()
    experiment_id = mlflow.active_run().info.experiment_id
    ids = [r.info.run_id for r in study_parent_runs(client, experiment_id, study_name)]
    text = ",".join(ids)
    for run_id in ids:
        _set_tag_racing(client, run_id, STUDY_PARENT_RUNS, text)
    return ids


def _set_tag_racing(client: MlflowClient, run_id: str, key: str, value: str, tries: int = 5) -> None:
    """``set_tag`` where other workers may set the same tag of the same run at the same moment: on
    PostgreSQL two first writes of a tag collide (unique violation, HTTP 400), and the loser only has
    to write again. A link that still cannot be written is skipped: it must not fail a search."""
    for attempt in range(tries):
        try:
            client.set_tag(run_id, key, value)
            return
        except mlflow.exceptions.MlflowException:
            time.sleep(0.1 * (attempt + 1))


def ui_link_of(run_id: str, table: bool = False) -> UiLink:
    """The MLflow UI's page of a run of the current tracking store, or (``table``) its experiment's
    runs table in the model-training view (``leukml.tracking_uri.ui_link``)."""
    experiment_id = mlflow.get_run(run_id).info.experiment_id
    return ui_link(mlflow.get_tracking_uri(), experiment_id, None if table else run_id)


def start_training_run(run: mlflow.ActiveRun, config: TrainConfig, experiment: str) -> None:
    """A training run's params (every option, resolved), ``config.json`` and tags."""
    log_params(
        run,
        {**config.as_dict(), "experiment": experiment, "milestones": ",".join(map(str, config.milestones))},
    )
    mlflow.log_dict(config.as_dict(), "config.json")
    mlflow.set_tags(run_tags(config))


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


RESUMABLE = ("FAILED", "KILLED")


def resumable(run_id: str, tracking_uri: str | None, folder: Path) -> tuple[TrainConfig, str, Path]:
    """(config, experiment name, checkpoint folder) of a FAILED or KILLED training run, its last
    checkpoint downloaded into ``folder``.

    Raises:
        ValueError: no such run, a run that is not a failed training, or one without a checkpoint.
    """
    if tracking_uri is not None or mlflow.active_run() is None:  # a search's trial: its store
        mlflow.set_tracking_uri(resolve_tracking_uri(tracking_uri))
    client = MlflowClient()
    try:
        run = client.get_run(run_id)
    except mlflow.exceptions.MlflowException:
        raise ValueError(
            f"--resume {run_id}: no such run on {mlflow.get_tracking_uri()}; check the run id"
        ) from None
    status = run.info.status
    if status not in RESUMABLE:
        hint = "it is still running (or its worker died: wait until it is marked FAILED)"
        if status == "FINISHED":
            hint = "it finished: nothing to resume"
        raise ValueError(
            f"--resume {run_id}: the run is {status}; only FAILED or KILLED runs continue ({hint})"
        )
    if "checkpoint_epoch" not in run.data.tags:
        raise ValueError(
            f"--resume {run_id}: the run saved no checkpoint (it failed before its first, every "
            f"{run.data.params.get('checkpoint_every', '?')} epochs): train it again"
        )
    config = TrainConfig.from_params(mlflow.artifacts.load_dict(f"runs:/{run_id}/config.json"))
    slot = run.data.tags.get("checkpoint_path", CHECKPOINT_PATH)
    local = client.download_artifacts(run_id, slot, str(folder))
    experiment = client.get_experiment(run.info.experiment_id).name
    return config, experiment, Path(local)


def start_resumed_run(run_id: str, epoch: int) -> dict[str, set[int]]:
    """The continued run's tags (``resumed_from_epoch``; the failure's ``error`` tag moved to
    ``error_before_resume``), and the steps each of its metrics already has."""
    client = MlflowClient()
    run = client.get_run(run_id)
    if "error" in run.data.tags:  # kept as history: why the run had to be continued
        client.set_tag(run_id, "error_before_resume", run.data.tags["error"])
        client.delete_tag(run_id, "error")
    resumes = run.data.tags.get("resumed_from_epoch")
    mlflow.set_tag("resumed_from_epoch", f"{resumes},{epoch}" if resumes else str(epoch))
    return {key: {m.step for m in client.get_metric_history(run_id, key)} for key in run.data.metrics}
