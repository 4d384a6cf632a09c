"""Where a training's results go: the one sink interface, its fan-out, and the sinks that are not
MLflow's.

Training hands out what it computes (the split it made, each epoch's curves, each milestone's
metrics, confusion matrix, per-subject table and predictions, its checkpoints, the warnings of a
degenerate model) and knows no writer. A sink is a ``MetricSink``: every hook is a no-op there, so
a sink overrides only what it takes. The tracking layer's sink, a search's pruning reporter and the
console are sinks, combined with ``FanoutSink``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TextIO

import numpy as np

from leukml.common.console import Progress, StepLines, silent
from leukml.data.discovery import Dataset, skip_line
from leukml.data.splits import Split
from leukml.training.evaluation import Predictions, SubjectScore, one_class_text
from leukml.training.snapshot import Snapshot


class EarlyStop(Exception):
    """Raised by a sink to stop a training early (a search pruning a hopeless trial)."""


@dataclass(frozen=True)
class Milestone:
    """What a milestone epoch found on the test split: its metrics, confusion matrix
    (``[[tn, fp], [fn, tp]]``) and per-subject table, the per-image predictions of the test split and
    of the validation split (None without one apart from test), and ``one_class``: the class the
    model predicted for every test image (``evaluation.one_class_predicted``, found once by the
    loop), else None."""

    epoch: int
    metrics: dict[str, float]
    confusion: np.ndarray
    subjects: list[SubjectScore]
    test: Predictions
    val: Predictions | None = None
    one_class: int | None = None

    @property
    def one_class_warning(self) -> str | None:
        """The line a person reads when one class is predicted everywhere, else None."""
        if self.one_class is None:
            return None
        return one_class_text(self.epoch, self.one_class, int(np.sum(self.confusion)))


@dataclass(frozen=True)
class ModelWarning:
    """A sign, found once by the loop, that the model is not learning: ``name`` (``flat_loss``:
    the tracking layer tags it ``warning_<name>``), the epoch it was seen at, and the line a person
    reads."""

    name: str
    epoch: int
    text: str


class MetricSink:
    """Where a training run's results go: every hook does nothing here; a sink overrides the ones
    it takes. ``stores_checkpoints``: the training hands it checkpoints (``log_checkpoint``), so it
    takes them and watches for SIGTERM; ``progress``: how a long step says what it does."""

    stores_checkpoints: bool = False

    @property
    def progress(self) -> Progress:
        return silent

    def log_data(self, dataset: Dataset, split: Split) -> None:
        """The data and the split made, before the first epoch."""

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        """An epoch's training and validation loss and accuracy."""

    def log_milestone(self, milestone: Milestone) -> None:
        """A milestone's test metrics, confusion matrix and per-subject table."""

    def log_predictions(self, milestone: Milestone) -> None:
        """The same milestone's per-image predictions, after every sink's ``log_milestone`` (a
        pruned trial has none): the tracking layer's intervals, calibration and predictions file."""

    def log_checkpoint(self, snapshot: Snapshot) -> None:
        """A checkpoint to store (host copies: it may be written later)."""

    def log_warning(self, warning: ModelWarning) -> None:
        """A sign that the model is not learning."""

    def say(self, text: str) -> None:
        """Any other progress line (a search's trials, a fold, a protocol)."""


NullSink = MetricSink  # a sink that takes everything and keeps nothing


class FanoutSink(MetricSink):
    """Sends everything to several sinks, in order (a None among them is left out)."""

    def __init__(self, *sinks: MetricSink | None) -> None:
        self.sinks = tuple(s for s in sinks if s is not None)

    @property
    def stores_checkpoints(self) -> bool:
        return any(s.stores_checkpoints for s in self.sinks)

    @property
    def progress(self) -> Progress:
        """The first of its sinks' ``Progress`` that says something (the console's), else ``silent``."""
        return next((s.progress for s in self.sinks if s.progress is not silent), silent)

    def log_data(self, dataset: Dataset, split: Split) -> None:
        for sink in self.sinks:
            sink.log_data(dataset, split)

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        for sink in self.sinks:
            sink.log_epoch(epoch, metrics)

    def log_milestone(self, milestone: Milestone) -> None:
        for sink in self.sinks:
            sink.log_milestone(milestone)

    def log_predictions(self, milestone: Milestone) -> None:
        for sink in self.sinks:
            sink.log_predictions(milestone)

    def log_checkpoint(self, snapshot: Snapshot) -> None:
        for sink in self.sinks:
            if sink.stores_checkpoints:
                sink.log_checkpoint(snapshot)

    def log_warning(self, warning: ModelWarning) -> None:
        for sink in self.sinks:
            sink.log_warning(warning)

    def say(self, text: str) -> None:
        for sink in self.sinks:
            sink.say(text)


class ConsoleSink(MetricSink):
    """Prints a training's progress for a person: warnings (the split's, a flat loss, the first
    milestone predicting one class everywhere, the files the data left out) to ``err`` and one
    line per epoch to ``out``."""

    def __init__(
        self, epochs: int | None = None, out: TextIO | None = None, err: TextIO | None = None
    ) -> None:
        self.epochs, self.out, self.err = epochs, out, err
        self._one_class_said = False
        self._skips_said: set[str] = set()  # fingerprints: a search's trials share one dataset
        self._progress: Progress = StepLines(out)  # long steps: a line as each starts and ends

    @property
    def progress(self) -> Progress:
        return self._progress

    def _warn(self, text: str) -> None:
        print(f"warning: {text}", file=self.err or sys.stderr, flush=True)

    def log_data(self, dataset: Dataset, split: Split) -> None:
        # a new training begins (a search or CV shares one console): its warnings are its own
        self._one_class_said = False
        if (skipped := skip_line(dataset)) and dataset.fingerprint not in self._skips_said:
            self._skips_said.add(dataset.fingerprint)
            self._warn(skipped)
        if split.warning:
            self._warn(split.warning)

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        total = f"/{self.epochs}" if self.epochs else ""
        line = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        print(f"epoch {epoch}{total}  {line}", file=self.out or sys.stdout, flush=True)

    def log_milestone(self, milestone: Milestone) -> None:
        text = milestone.one_class_warning
        if text is not None and not self._one_class_said:  # once: later milestones add no news
            self._one_class_said = True
            self._warn(text)

    def log_warning(self, warning: ModelWarning) -> None:
        self._warn(warning.text)

    def say(self, text: str) -> None:
        print(text, file=self.out or sys.stdout, flush=True)
