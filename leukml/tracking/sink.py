"""The metric sink that writes a training run's results to its MLflow run while it trains: metrics
in batches, figures, confusion matrices, per-subject tables and checkpoints, all on one background
thread."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from mlflow.entities import Dataset as MlflowDataset
from mlflow.entities import DatasetInput, InputTag, Metric, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from leukml import CLASS_NAMES
from leukml.analysis import raster
from leukml.analysis.predictions import milestone_uncertainty, predictions_path
from leukml.analysis.uncertainty import DRAWS
from leukml.common import runschema as schema
from leukml.common.options import env_seconds
from leukml.data.discovery import Dataset, skip_tags
from leukml.data.images import decode_image
from leukml.data.splits import Split, manifest, n_subjects, summarize, test_set_id
from leukml.tracking.mlflow_compat import Example, input_example
from leukml.training.config import TrainConfig
from leukml.training.evaluation import SHOWN_NAMES, per_subject_csv
from leukml.training.sinks import MetricSink, Milestone, ModelWarning
from leukml.training.snapshot import Snapshot

METRIC_FLUSH_S = 5.0  # how stale a live run's curves may be in the MLflow UI; $LEUKML_METRIC_FLUSH_S
MAX_METRICS_PER_BATCH = 1000  # MLflow's limit for one log_batch


def metric_flush_s() -> float:
    """Seconds between metric batches: ``$LEUKML_METRIC_FLUSH_S``, else ``METRIC_FLUSH_S``.

    Raises:
        ValueError: the variable is set but is not a number of seconds >= 0.
    """
    return env_seconds("LEUKML_METRIC_FLUSH_S", METRIC_FLUSH_S, "every epoch's metrics are sent at once")


class MlflowSink(MetricSink):
    """Sends a training run's results to its MLflow run while training goes on.

    Everything is written by one background thread, in order: metrics in a batch every
    ``flush_s`` seconds, figures drawn there too. Use it as a context manager: leaving sends the
    last metrics and waits for every write.
    """

    stores_checkpoints = True

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
        self._one_class: tuple[set[int], set[str]] | None = None  # milestone epochs, class names
        self._example: Future | None = None  # (pixels, MLflow's example of them), made while training
        self.temperatures: dict[int, float] = {}  # milestone epoch -> its fitted temperature

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

    def logged(self, metric: str, step: int) -> bool:
        """Whether a resumed run's first part logged ``metric`` at ``step``."""
        return step in self._logged.get(metric, ())

    def flush(self) -> None:
        """Send the metrics queued so far and wait for every write queued before (raising the
        first one's error): the store then holds all the training logged."""
        self._flush_metrics()
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

    def log_image(self, make_image: Callable[[], object], path: str) -> None:
        """Draw (``make_image()``: a PIL image, ``leukml.analysis.raster``) and upload it as PNG on
        the background thread."""
        self.in_background(lambda: self._client.log_image(self.run_id, make_image(), path))

    def log_opening(self, config: dict, tags: Callable[[], dict[str, str]]) -> None:
        """The run's ``config.json`` and its ``tags()`` (made there: they ask git), written on the
        background thread."""
        self.in_background(self._client.log_dict, self.run_id, config, schema.CONFIG_JSON)
        self.in_background(lambda: self._client.log_batch(self.run_id, tags=_run_tags(tags())))

    def log_data(self, dataset: Dataset, split: Split) -> None:
        """The data's tags, the split's sides as the run's inputs, ``split_manifest.json`` and the
        logged model's input example, all written on the background thread while training starts."""
        counts = {side: summarize(dataset.records, idx) for side, idx in split.sides().items()}
        tags = {
            schema.DATASET_FINGERPRINT: dataset.fingerprint,
            schema.DATA_DIR: str(dataset.root),
            schema.N_IMAGES: str(len(dataset)),
            **{schema.SIDE_CELLS[side]: str(c["n_images"]) for side, c in counts.items()},
            **{schema.SIDE_SUBJECTS[side]: str(n_subjects(c)) for side, c in counts.items()},
            # what promote ranks within: runs with one test_set were tested on the same cells
            schema.TEST_SET: test_set_id(dataset.fingerprint, dataset.records, split),
            # facts of the split actually made (leukml.data.splits.Split), not of the options
            schema.SELECTION_ON_TEST: str(split.selection_on_test).lower(),
            schema.TEST_ONE_CLASS: str(split.test_one_class).lower(),
            **skip_tags(dataset),  # what the data left out: skipped, skipped_<reason>
        }
        self.in_background(lambda: self._client.log_batch(self.run_id, tags=_run_tags(tags)))
        self.in_background(self._client.log_inputs, self.run_id, _inputs(dataset, counts))
        if len(split.test):
            self._example = self._uploads.submit(_example_of, dataset, split, self.config.model.image_size)
        self.in_background(
            self._client.log_dict,
            self.run_id,
            {
                "fingerprint": dataset.fingerprint,
                "data_dir": str(dataset.root),
                "counts": counts,
                **manifest(dataset.records, split),
            },
            schema.SPLIT_MANIFEST,
        )

    def input_example(self, pixels: np.ndarray) -> Example:
        """MLflow's input example of ``pixels`` (a float32 batch of one image): the one made on the
        background thread while the training ran when it holds the same pixels (its JSON takes
        ~0.3 s for a 128 px image), else made now."""
        try:
            made = self._example.result() if self._example is not None else None
        except (OSError, ValueError):  # the image changed since the training read it: make it now
            made = None
        if made is not None and np.array_equal(made[0], pixels):
            return made[1]
        return input_example(pixels)

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        self._queue_metrics(epoch, metrics)

    def log_warning(self, warning: ModelWarning) -> None:
        self.in_background(self._client.set_tag, self.run_id, schema.warning_tag(warning.name), warning.text)

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
            self._slot = self._client.get_run(self.run_id).data.tags.get(schema.CHECKPOINT_SLOT)
        slots = schema.CHECKPOINT_SLOTS
        self._slot = slots[1] if self._slot == slots[0] else slots[0]
        self._flush_metrics()
        self.in_background(self._store_checkpoint, snapshot, self._slot)
        self._checkpoint = self._pending[-1]

    def _store_checkpoint(self, snapshot: Snapshot, slot: str) -> None:
        with tempfile.TemporaryDirectory(prefix="leukml-checkpoint-") as tmp:
            self._client.log_artifacts(self.run_id, str(snapshot.write(Path(tmp))), slot)
        tags = {schema.CHECKPOINT_SLOT: slot, schema.CHECKPOINT_EPOCH: str(snapshot.epoch)}
        self._client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in tags.items()])

    def log_milestone(self, milestone: Milestone) -> None:
        epoch, metrics, confusion = milestone.epoch, milestone.metrics, milestone.confusion
        subjects = milestone.subjects
        self._queue_metrics(epoch, metrics)
        name = schema.epoch_artifact(schema.CONFUSION_MATRIX, epoch)
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
        self.log_image(lambda: raster.confusion_image(confusion, title), f"{name}.png")
        table = schema.epoch_artifact(schema.PER_SUBJECT, epoch)
        self.in_background(self._client.log_text, self.run_id, per_subject_csv(subjects), f"{table}.csv")
        heading = f"{cell}, epoch {epoch}: accuracy per subject"
        self.log_image(lambda: raster.subject_accuracy_image(subjects, heading), f"{table}.png")
        if milestone.one_class is not None:
            self._tag_one_class(epoch, SHOWN_NAMES[milestone.one_class])

    def log_predictions(self, milestone: Milestone) -> None:
        """The milestone's predictions file, the intervals of its headline metrics, its Brier score,
        calibration error and reliability diagram (with ``--calibrate temperature``: the
        temperature fitted on ``val`` and the uncalibrated scores), made and written on the
        background thread while training goes on (``leukml.analysis.predictions``)."""
        self.in_background(self._write_predictions, milestone)

    def _write_predictions(self, milestone: Milestone) -> None:
        epoch, test = milestone.epoch, milestone.test
        found = milestone_uncertainty(test, milestone.val, self.config.recipe.calibrates)
        if found.temperature is not None:
            self.temperatures[epoch] = found.temperature
        now_ms = int(time.time() * 1000)
        metrics = [
            Metric(k, float(v), now_ms, epoch)
            for k, v in found.metrics.items()
            if epoch not in self._logged.get(k, ())
        ]
        tags = {schema.TEST_CI_RESAMPLED: found.resampled, schema.TEST_CI_DRAWS: str(DRAWS)}
        self._client.log_batch(self.run_id, metrics=metrics, tags=_run_tags(tags))
        self._client.log_text(self.run_id, found.csv, predictions_path(epoch))
        ece = found.metrics["test_ece"]
        state = "calibrated" if found.temperature is not None else "uncalibrated"
        title = f"epoch {epoch}: ECE {ece:.3f} ({state})\n{len(test.labels)} test cells"
        image = raster.reliability_image(found.bins, title)
        self._client.log_image(self.run_id, image, schema.epoch_artifact(schema.RELIABILITY, epoch, "png"))

    def _tag_one_class(self, epoch: int, name: str) -> None:
        """Tags naming every milestone so far that predicted one class for every test image (the
        report marks the run); a resumed run keeps the epochs its first part tagged."""
        if self._one_class is None:
            tags = self._client.get_run(self.run_id).data.tags if self._logged else {}
            self._one_class = (
                {int(e) for e in tags.get(schema.TEST_ONE_CLASS_PREDICTED_EPOCHS, "").split(",") if e},
                {c for c in tags.get(schema.TEST_ONE_CLASS_PREDICTED_CLASS, "").split(",") if c},
            )
        epochs, names = self._one_class
        epochs.add(epoch)
        names.add(name)
        tags = {
            schema.TEST_ONE_CLASS_PREDICTED: "true",
            schema.TEST_ONE_CLASS_PREDICTED_EPOCHS: ",".join(map(str, sorted(epochs))),
            schema.TEST_ONE_CLASS_PREDICTED_CLASS: ",".join(sorted(names)),
        }
        self.in_background(
            self._client.log_batch, self.run_id, (), (), [RunTag(k, v) for k, v in tags.items()]
        )


def _run_tags(tags: dict[str, str]) -> list[RunTag]:
    return [RunTag(k, v) for k, v in tags.items()]


def _inputs(dataset: Dataset, counts: dict[str, dict]) -> list[DatasetInput]:
    """The data as the run's inputs, one per split side (context ``train``, ``val``, ``test``),
    each with the dataset's fingerprint as digest. MLflow keeps one input per (name, digest) in a
    run and drops the others silently, so each side's name is the data folder's name and the side
    (``C-NMC_Leukemia/train``)."""
    source = json.dumps({"uri": str(dataset.root)})
    folder = dataset.root.resolve().name or str(dataset.root)
    return [
        DatasetInput(
            MlflowDataset(f"{folder}/{side}", dataset.fingerprint, "local", source),
            [InputTag(MLFLOW_DATASET_CONTEXT, side), InputTag("n_images", str(c["n_images"]))],
        )
        for side, c in counts.items()
        if c["n_images"]
    ]


def _example_of(dataset: Dataset, split: Split, size: int) -> tuple[np.ndarray, Example]:
    """The logged model's input example: the first test image as the image cache decodes it
    (``leukml.data.imagecache``), float32, and MLflow's example of it."""
    pixels = decode_image(dataset.paths()[split.test[0]], size)[None].astype(np.float32)
    return pixels, input_example(pixels)
