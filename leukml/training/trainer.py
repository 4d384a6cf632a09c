"""Training: data preparation and one training run as configured (``train``). No MLflow here.

The prepared data is ``leukml.training.prepared``'s, the epoch loop ``leukml.training.loop``'s, its
stages ``leukml.training.stage``'s, the inputs ``leukml.training.sources``' and
``leukml.training.features``'; their public names are importable from here too. Results flow out
through a ``MetricSink``, so the same training runs with or without tracking, on any Keras 3 backend.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import keras

from leukml.model.networks import build_network, copy_base
from leukml.training import device, termination
from leukml.training.bases import BaseCache
from leukml.training.checkpoint import Checkpoint, Schedule, callback, restore
from leukml.training.config import TrainConfig
from leukml.training.features import extract_features, feature_source
from leukml.training.loop import LoopState, TrainResult, fit
from leukml.training.prepared import Prepared, check_split, prepare_data
from leukml.training.sinks import MetricSink, NullSink
from leukml.training.sources import FeatureSource, ImageSource, Source, predict_probs, predict_tta
from leukml.training.stage import binary_crossentropy, make_optimizer, optimizer_state, train_epoch

__all__ = [
    "LoopState",
    "Prepared",
    "TrainResult",
    "binary_crossentropy",
    "check_split",
    "dtype_policy",
    "extract_features",
    "fit",
    "make_optimizer",
    "optimizer_state",
    "predict_probs",
    "predict_tta",
    "prepare_data",
    "train",
    "train_epoch",
]


@contextlib.contextmanager
def dtype_policy(name: str):
    """Keras' global dtype policy set to ``name`` inside, restored after (layers keep the policy
    they were built with, so a model built inside stays mixed-precision)."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _shared_base(config: TrainConfig, bases: BaseCache | None) -> keras.Model | None:
    """The frozen base ``bases`` keeps for ``config``; a copy of it when fine-tuning will change it."""
    if bases is None:
        return None
    base = bases.base(config)
    return copy_base(base) if config.recipe.fine_tune_layers else base


@contextlib.contextmanager
def _watched(checkpoints: bool, clock: Callable[[], float]):
    """The training's ``termination.Watch`` while it runs, when it stores checkpoints; else None."""
    if not checkpoints:
        yield None
        return
    with termination.watching(termination.Watch(termination.grace_s(), clock)) as watch:
        yield watch


def train(
    config: TrainConfig,
    sink: MetricSink | None = None,
    bases: BaseCache | None = None,
    resume: Checkpoint | None = None,
    prepared: Prepared | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> TrainResult:
    """Run one training as configured; results go to ``sink`` as they come.

    With a frozen base and no input randomness (or only dihedral turns), the base's output per image
    (per variant) never changes, so the head is trained on cached base features: the same model as
    end-to-end training at a fraction of the cost. ``feature_cache=False`` and ``augment=full``
    train end to end; fine-tuning always does. ``bases``: frozen bases shared with other trainings
    (a search worker's), else the base is built for this training alone.

    ``resume``: continue after the checkpoint's epoch exactly as the run would have gone on (the
    same batch order, draws, weights and optimizer state). A sink that ``stores_checkpoints`` gets
    a checkpoint (``log_checkpoint``) as ``config.checkpoint_minutes`` and ``config.checkpoint_every`` say
    (``checkpoint.Schedule``, timed by ``clock``), and one as the epoch under way ends after a
    SIGTERM (``termination``); host copies: it may write them later. ``prepared``: data already
    split and loaded (then ``config``'s data options are not read).
    """
    device.compilation_cache()
    sink = sink or NullSink()
    progress = sink.progress  # the console's: long steps say what they do
    prepared = prepare_data(config, progress) if prepared is None else prepared
    sink.log_data(prepared.dataset, prepared.split)
    keras.utils.set_random_seed(config.seed)
    with dtype_policy(config.resolved_precision):
        network = build_network(config.model, base=_shared_base(config, bases), seed=config.seed)
        if config.uses_feature_cache and config.fine_tune_epoch != 1:  # epoch 1 fine-tuning: no use
            source: Source = feature_source(network, prepared, config, bases=bases, progress=progress)
        else:
            source = ImageSource(prepared.images)
        if resume is not None:
            restore(network, resume)
        schedule = Schedule(config.checkpoint_every, config.checkpoint_minutes, config.epochs, clock)
        with _watched(sink.stores_checkpoints and not schedule.never, clock) as watch:
            on_epoch = None if watch is None else callback(schedule, sink.log_checkpoint, network, watch)
            state = resume.state if resume else None
            result = fit(network, prepared, config, sink, source, state, on_epoch)
        if isinstance(source, FeatureSource):
            source.settle()  # the feature cache an extraction wrote beside the training: complete
        return result
