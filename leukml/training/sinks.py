"""Where a training's results go: the sink protocol and the sinks that are not MLflow's.

Training hands out what it computes (the split it made, each epoch's curves, each milestone's
metrics, confusion matrix and per-subject table) and knows no writer; the tracking layer, a
search's pruning reporter and the console are sinks, combined with ``FanoutSink``.
"""

from __future__ import annotations

import sys
from typing import Protocol, TextIO

import numpy as np

from leukml.common.console import Progress, StepLines, silent
from leukml.data.discovery import Dataset, skip_line
from leukml.data.splits import Split
from leukml.training.evaluation import (
    FLAT_LOSS_EPOCHS,
    Predictions,
    SubjectScore,
    flat_loss,
    one_class_predicted,
    one_class_text,
)


class EarlyStop(Exception):
    """Raised by a sink to stop a training early (a search pruning a hopeless trial)."""


class MetricSink(Protocol):
    """Where a training run's results go (the tracking layer implements it)."""

    def log_data(self, dataset: Dataset, split: Split) -> None: ...

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None: ...

    def log_milestone(
        self, epoch: int, metrics: dict[str, float], confusion: np.ndarray, subjects: list[SubjectScore]
    ) -> None:
        """The test split's metrics, confusion matrix and per-subject table at a milestone epoch."""

    def log_predictions(self, epoch: int, test: Predictions, val: Predictions | None) -> None:
        """The same milestone's per-image predictions of the test split and of the validation split
        (None without one apart from test), after ``log_milestone``: the tracking layer's intervals,
        calibration and predictions file are made from them."""


class FanoutSink:
    """Sends everything to several sinks, in order."""

    def __init__(self, *sinks: MetricSink) -> None:
        self.sinks = sinks

    @property
    def progress(self) -> Progress:
        """The first of its sinks' ``Progress`` (the console's), else ``silent``."""
        return next((s.progress for s in self.sinks if hasattr(s, "progress")), silent)

    def log_data(self, dataset: Dataset, split: Split) -> None:
        for sink in self.sinks:
            sink.log_data(dataset, split)

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        for sink in self.sinks:
            sink.log_epoch(epoch, metrics)

    def log_milestone(
        self, epoch: int, metrics: dict[str, float], confusion: np.ndarray, subjects: list[SubjectScore]
    ) -> None:
        for sink in self.sinks:
            sink.log_milestone(epoch, metrics, confusion, subjects)

    def log_predictions(self, epoch: int, test: Predictions, val: Predictions | None) -> None:
        for sink in self.sinks:
            sink.log_predictions(epoch, test, val)


class NullSink:
    def log_data(self, dataset: Dataset, split: Split) -> None:
        pass

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        pass

    def log_milestone(
        self, epoch: int, metrics: dict[str, float], confusion: np.ndarray, subjects: list[SubjectScore]
    ) -> None:
        pass

    def log_predictions(self, epoch: int, test: Predictions, val: Predictions | None) -> None:
        pass


class FlatLossWatch:
    """A sink's memory of one training's first epochs, for ``leukml.training.evaluation.flat_loss``."""

    def __init__(self) -> None:
        self.losses: dict[int, float] = {}

    def see(self, epoch: int, metrics: dict[str, float]) -> str | None:
        """The flat-loss warning at epoch ``FLAT_LOSS_EPOCHS``, else None; None also when this
        sink did not see every epoch before it (a resumed run: its first run checked)."""
        if epoch <= FLAT_LOSS_EPOCHS and "train_loss" in metrics:
            self.losses[epoch] = metrics["train_loss"]
        if epoch != FLAT_LOSS_EPOCHS or len(self.losses) < FLAT_LOSS_EPOCHS:
            return None
        return flat_loss([self.losses[e] for e in range(1, FLAT_LOSS_EPOCHS + 1)])


class ConsoleSink:
    """Prints a training's progress for a person: warnings (the split's, a flat loss, the first
    milestone predicting one class everywhere, the files the data left out) to ``err`` and one
    line per epoch to ``out``."""

    def __init__(
        self, epochs: int | None = None, out: TextIO | None = None, err: TextIO | None = None
    ) -> None:
        self.epochs, self.out, self.err = epochs, out, err
        self._loss, self._one_class_said = FlatLossWatch(), False
        self._skips_said: set[str] = set()  # fingerprints: a search's trials share one dataset
        self.progress: Progress = StepLines(out)  # long steps: a line as each starts and ends

    def _warn(self, text: str) -> None:
        print(f"warning: {text}", file=self.err or sys.stderr, flush=True)

    def log_data(self, dataset: Dataset, split: Split) -> None:
        # a new training begins (a search or CV shares one console): its warnings are its own
        self._loss, self._one_class_said = FlatLossWatch(), False
        if (skipped := skip_line(dataset)) and dataset.fingerprint not in self._skips_said:
            self._skips_said.add(dataset.fingerprint)
            self._warn(skipped)
        if split.warning:
            self._warn(split.warning)

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        total = f"/{self.epochs}" if self.epochs else ""
        line = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        print(f"epoch {epoch}{total}  {line}", file=self.out or sys.stdout, flush=True)
        if text := self._loss.see(epoch, metrics):
            self._warn(text)

    def log_milestone(
        self, epoch: int, metrics: dict[str, float], confusion: np.ndarray, subjects: list[SubjectScore]
    ) -> None:
        label = one_class_predicted(confusion)
        if label is not None and not self._one_class_said:  # once: later milestones add no news
            self._one_class_said = True
            self._warn(one_class_text(epoch, label, int(np.sum(confusion))))

    def log_predictions(self, epoch: int, test: Predictions, val: Predictions | None) -> None:
        pass

    def say(self, text: str) -> None:
        """Any other progress line (a search's trials)."""
        print(text, file=self.out or sys.stdout, flush=True)
