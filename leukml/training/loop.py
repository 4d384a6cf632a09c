"""The epoch loop: the head on cached base features (the frozen fast path) or the whole model on
images, then, with fine-tuning, the whole model with the base's top layers unfrozen (each a
``leukml.training.stage.Stage``); early stopping, the kept epoch, milestone evaluation. No MLflow here.

Everything the loop changes lives in one ``LoopState``, so a run can continue after any finished
epoch. Results flow out through a ``MetricSink`` (per-epoch curves, milestone metrics), so the same
loop runs with or without tracking, on any Keras 3 backend.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import keras
import numpy as np

from leukml.common.errors import LeukmlError
from leukml.model.networks import Network
from leukml.training.config import TrainConfig
from leukml.training.evaluation import (
    FLAT_LOSS_EPOCHS,
    Predictions,
    classification_metrics,
    flat_loss,
    one_class_predicted,
    per_subject_scores,
)
from leukml.training.prepared import Prepared
from leukml.training.sinks import MetricSink, Milestone, ModelWarning
from leukml.training.sources import ImageSource, Source, as_source, variant_average
from leukml.training.stage import Stage, enter, run_epoch

AUGMENT_STREAM = 1  # the augmentation generator's seed is (seed, this): a stream of its own


@dataclass
class LoopState:
    """Everything the epoch loop changes, after ``epoch`` finished epochs (0: none yet).

    ``fit(..., state=s)`` continues with epoch ``s.epoch + 1`` exactly as the run would have, given
    the model's weights at that point (the whole model's once fine-tuning has begun, else the
    head's) and ``optimizer_variables``: the current stage's optimizer variables, restored into
    the optimizer the loop compiles (``optimizer_state`` reads them) and then cleared.
    """

    order_rng: np.random.Generator  # the batch order
    augment_rng: np.random.Generator  # augmentation draws: the order does not depend on augmenting
    epoch: int = 0
    stage: int = 1  # 1: the frozen base (head only); 2: fine-tuning the base's top layers
    history: dict[str, list[float]] = field(default_factory=dict)
    milestones: dict[int, dict[str, float]] = field(default_factory=dict)
    best_epoch: int | None = None  # by validation accuracy, then lower loss, then earlier
    best_accuracy: float = -math.inf
    best_loss: float = math.inf
    best_weights: list[np.ndarray] | None = None  # keep=best: the kept model's weights at best_epoch
    stopped_epoch: int | None = None  # early stopping ended the run after this epoch
    optimizer_variables: list[np.ndarray] | None = None

    @classmethod
    def start(cls, seed: int) -> LoopState:
        """The state before epoch 1 of a run seeded with ``seed``."""
        return cls(np.random.default_rng(seed), np.random.default_rng([seed, AUGMENT_STREAM]))


@dataclass
class TrainResult:
    """A finished training. ``network`` holds the weights of ``model_epoch``: the best epoch with
    ``keep=best``, else the last epoch run. ``best_epoch``: the best validation epoch (None without
    a validation split); ``stopped_epoch``: the epoch early stopping ended the run after (None when
    it ran every epoch); ``milestones_not_reached``: milestones after it, never evaluated."""

    network: Network
    prepared: Prepared
    history: dict[str, list[float]] = field(default_factory=dict)
    milestones: dict[int, dict[str, float]] = field(default_factory=dict)
    best_epoch: int | None = None
    stopped_epoch: int | None = None
    milestones_not_reached: tuple[int, ...] = ()
    model_epoch: int = 0


def _class_weight(labels: np.ndarray) -> dict[int, float]:
    counts = np.bincount(labels, minlength=2).astype(float)
    return {c: float(counts.sum() / (2 * counts[c])) for c in range(2) if counts[c]}


def _kept_model(network: Network, config: TrainConfig) -> keras.Model:
    """What changes in training, hence what ``keep=best`` saves: the head, or with fine-tuning
    the whole model."""
    return network.model if config.fine_tune_epoch is not None else network.head


def _track_best(state: LoopState, network: Network, config: TrainConfig, val: dict) -> None:
    """Note the epoch just run if it is the best so far (validation accuracy, then lower loss; on
    a tie of both the earlier stays), with its weights under ``keep=best``."""
    accuracy, loss = val["accuracy"], val["loss"]
    if accuracy > state.best_accuracy or (accuracy == state.best_accuracy and loss < state.best_loss):
        state.best_epoch, state.best_accuracy, state.best_loss = state.epoch, accuracy, loss
        if config.recipe.keep == "best":
            state.best_weights = _kept_model(network, config).get_weights()


def _patience_spent(state: LoopState, config: TrainConfig) -> bool:
    patience = config.recipe.early_stopping
    if patience is None or state.best_epoch is None or state.epoch >= config.epochs:
        return False
    return state.epoch - state.best_epoch >= patience


def _milestone(
    state: LoopState,
    stage: Stage,
    prepared: Prepared,
    config: TrainConfig,
    sink: MetricSink,
    val_probs: np.ndarray,
) -> None:
    """The test split's metrics at the epoch just run, with ``_tta`` twins under test-time
    augmentation; to the state and the sink; then both splits' per-image predictions to the sink
    (``val_probs``: the epoch's validation pass, the test split's when validation ran on it)."""
    split, records = prepared.split, prepared.dataset.records
    labels, test = prepared.dataset.labels[split.test], split.test
    probs = val_probs if split.selection_on_test else stage.probs(test, config.batch_size)
    scores, confusion = classification_metrics(labels, probs[:, 1])
    if config.recipe.test_time.averages:
        averaged = variant_average(lambda v: stage.probs(test, config.batch_size, v), len(test))
        twins, _ = classification_metrics(labels, averaged[:, 1])
        scores.update({f"{name}_tta": value for name, value in twins.items()})
    state.milestones[state.epoch] = scores
    val = None
    if not split.selection_on_test and len(split.val):
        val = _predictions(prepared, split.val, val_probs)
    milestone = Milestone(
        state.epoch,
        scores,
        confusion,
        per_subject_scores(labels, probs[:, 1], [records[i].subject for i in test]),
        _predictions(prepared, test, probs),
        val,
        one_class_predicted(confusion),
    )
    sink.log_milestone(milestone)
    sink.log_predictions(milestone)


def _warn_flat_loss(state: LoopState, sink: MetricSink) -> None:
    """The flat-loss warning (``evaluation.flat_loss``) once epoch ``FLAT_LOSS_EPOCHS`` ended, to
    every sink at once. A resumed run's first part checked it."""
    if state.epoch == FLAT_LOSS_EPOCHS and (text := flat_loss(state.history["train_loss"])):
        sink.log_warning(ModelWarning("flat_loss", state.epoch, text))


def _predictions(prepared: Prepared, idx: np.ndarray, probs: np.ndarray) -> Predictions:
    records = [prepared.dataset.records[i] for i in idx]
    return Predictions(
        tuple(r.relpath for r in records),
        tuple(r.subject for r in records),
        prepared.dataset.labels[idx],
        np.asarray(probs[:, 1], dtype=np.float64),
    )


def _finish(network: Network, prepared: Prepared, config: TrainConfig, state: LoopState) -> TrainResult:
    model_epoch = state.epoch
    if config.recipe.keep == "best" and state.best_weights is not None:
        _kept_model(network, config).set_weights(state.best_weights)
        model_epoch = state.best_epoch
    return TrainResult(
        network,
        prepared,
        state.history,
        state.milestones,
        best_epoch=state.best_epoch,
        stopped_epoch=state.stopped_epoch,
        milestones_not_reached=tuple(m for m in config.milestones if m > state.epoch),
        model_epoch=model_epoch,
    )


class Diverged(LeukmlError):
    """The training loss is no longer a finite number: every later epoch would train on NaN."""


def _check_finite(loss: float, epoch: int, stage: int, config: TrainConfig) -> None:
    """Stop at the first epoch whose loss is NaN or infinite, naming what set its learning rate."""
    if math.isfinite(float(loss)):
        return
    rate = f"--lr {config.lr:g}, --decay-rate {config.decay_rate:g}, --decay-steps {config.decay_steps}"
    if stage == 2:  # fine-tuning has one constant rate of its own
        rate = f"--fine-tune-lr {config.recipe.fine_tune_lr:g}"
    raise Diverged(
        f"the training diverged: train_loss is {float(loss)} at epoch {epoch}; lower the learning "
        f"rate ({rate})"
    )


def fit(
    network: Network,
    prepared: Prepared,
    config: TrainConfig,
    sink: MetricSink,
    source: Source | np.ndarray,
    state: LoopState | None = None,
    on_epoch: Callable[[LoopState, keras.Model], None] | None = None,
) -> TrainResult:
    """Train ``network`` from ``source`` (cached features: the head; images: the whole model), from
    ``state`` (default: before epoch 1) to ``config.epochs`` or early stopping.

    Each epoch logs train/val loss and accuracy; each milestone, the test-split metrics, confusion
    matrix and per-subject table. ``on_epoch(state, target)`` runs after each epoch (a checkpoint
    can save the state, the weights and ``optimizer_state(target)`` there).
    """
    state = state or LoopState.start(config.seed)
    fresh = state.epoch == 0  # a resumed run's first part saw its first epochs' warnings
    source, images = as_source(source), ImageSource(prepared.images)
    labels, split = prepared.dataset.labels, prepared.split
    val_idx = split.test if split.selection_on_test else split.val  # the paper validates on test
    weights = _class_weight(labels[split.train]) if config.class_weight else None
    start, stage = config.fine_tune_epoch, None
    while state.epoch < config.epochs and state.stopped_epoch is None:
        due = 2 if start is not None and state.epoch + 1 >= start else 1
        if stage is None or due != state.stage:
            if due != state.stage:  # a new stage has a new optimizer
                state.stage, state.optimizer_variables = due, None
            stage = enter(
                network, config, state.stage, state.optimizer_variables, source, images, labels, weights
            )
            state.optimizer_variables = None  # restored into the stage's optimizer
        order = split.train[state.order_rng.permutation(len(split.train))]
        logs = run_epoch(stage, state.augment_rng, config, labels, order, weights)
        _check_finite(logs["loss"], state.epoch + 1, state.stage, config)
        val_logs, val_probs = stage.evaluate(labels, val_idx, config.batch_size)
        metrics = {
            "train_loss": logs["loss"],
            "train_accuracy": logs["accuracy"],
            "val_loss": val_logs["loss"],
            "val_accuracy": val_logs["accuracy"],
        }
        state.epoch += 1
        for k, v in metrics.items():
            state.history.setdefault(k, []).append(float(v))
        if not split.selection_on_test:
            _track_best(state, network, config, val_logs)
        sink.log_epoch(state.epoch, metrics)
        if fresh:
            _warn_flat_loss(state, sink)
        if state.epoch in config.milestones:
            _milestone(state, stage, prepared, config, sink, val_probs)
        if _patience_spent(state, config):
            state.stopped_epoch = state.epoch
        if on_epoch is not None:
            on_epoch(state, stage.target)
    return _finish(network, prepared, config, state)
