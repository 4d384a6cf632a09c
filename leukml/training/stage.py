"""One stage of a training: the compiled target (the head on cached features, or the whole model on
images), what it trains on, its epochs (one compiled call each where the backend has them,
``leukml.training.compiled``; else one ``train_on_batch`` per batch) and its predictions; the paper's loss and
optimizer. No MLflow here; the epoch loop around it is ``leukml.training.loop``'s.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from leukml.data.augment import draw_variants
from leukml.model.networks import Network, unfreeze_top
from leukml.training.compiled import CompiledEpoch
from leukml.training.config import OPTIMIZERS, TrainConfig
from leukml.training.sources import ImageSource, Source, Take, as_source, epoch_inputs, predict_probs


def binary_crossentropy(y_true, y_pred):
    """The paper's loss: binary cross-entropy of the one-hot labels against the softmax
    probabilities, averaged over both outputs.

    Not ``keras.losses.BinaryCrossentropy``: on the TensorFlow backend it finds the logits that
    Keras attaches to a softmax output and computes a *sigmoid* cross-entropy on them, a different
    loss than the one JAX computes from the same model. This is the same on every backend.
    """
    eps = keras.config.epsilon()
    p = keras.ops.clip(y_pred, eps, 1.0 - eps)
    y = keras.ops.cast(y_true, p.dtype)
    return -keras.ops.mean(y * keras.ops.log(p) + (1.0 - y) * keras.ops.log(1.0 - p), axis=-1)


def make_optimizer(config: TrainConfig, lr: float | None = None) -> keras.optimizers.Optimizer:
    """``config.optimizer`` at ``config.lr`` with exponential decay, or at the constant ``lr``."""
    rate = lr
    if rate is None:
        rate = keras.optimizers.schedules.ExponentialDecay(
            config.lr, decay_steps=config.decay_steps, decay_rate=config.decay_rate
        )
    return getattr(keras.optimizers, OPTIMIZERS[config.optimizer])(learning_rate=rate)


def optimizer_state(target: keras.Model) -> list[np.ndarray]:
    """The compiled ``target``'s optimizer variables (step count, moments), for ``LoopState``."""
    return [np.array(v.numpy()) for v in target.optimizer.variables]


def train_epoch(
    target: keras.Model,
    inputs: np.ndarray | None,
    labels: np.ndarray,
    order: np.ndarray,
    batch_size: int,
    class_weight: dict | None,
    take: Take | None = None,
) -> dict:
    """One pass over ``order``, batches gathered by ``take`` (default: rows of ``inputs``); the
    sample-weighted mean of the loss and accuracy, as ``fit`` reports them (``train_on_batch``
    resets the metrics on every call, hence the running sums).

    Our own loop rather than ``fit``: Keras may prefetch a PyDataset's next batches before its
    ``on_epoch_end`` reshuffles, which makes the batch order race; here it is exact. On cached
    features, ``leukml.training.compiled.CompiledEpoch`` runs the same steps a whole epoch per compiled call.
    """
    take = take or (lambda idx, pos: as_source(inputs).gather(idx))
    totals = {"loss": 0.0, "accuracy": 0.0}
    for start in range(0, len(order), batch_size):
        chosen = order[start : start + batch_size]
        x = take(chosen, slice(start, start + batch_size))
        y = keras.utils.to_categorical(labels[chosen], 2).astype(np.float32)
        logs = target.train_on_batch(x, y, class_weight=class_weight, return_dict=True)
        for key in totals:
            totals[key] += float(logs[key]) * len(chosen)
    return {key: value / len(order) for key, value in totals.items()}


@dataclass
class Stage:
    """A stage's compiled target, what it sees, and (where exact) its compiled epochs."""

    source: Source  # what the target trains and is evaluated on
    target: keras.Model  # the compiled model that trains
    compiled: CompiledEpoch | None = None  # its whole epochs on the device, where that is exact

    def probs(self, idx: np.ndarray, batch_size: int, variant: int | None = None) -> np.ndarray:
        """The target's outputs for records ``idx`` (as dihedral ``variant``), in batches: from the
        features on the device where the compiled epoch holds them, else gathered on the host."""
        if self.compiled is not None:
            probs = self.compiled.predict(idx, variant or 0)
            if probs is not None:
                return probs
        return predict_probs(self.target, self.source, idx, batch_size, variant)

    def evaluate(self, labels: np.ndarray, idx: np.ndarray, batch_size: int) -> tuple[dict, np.ndarray]:
        """Loss and accuracy on ``idx`` as ``evaluate`` reports them (the paper's loss per sample,
        averaged), computed from one prediction pass whose probabilities are returned too: a
        milestone on the same split reuses them, and no separate test step is traced."""
        probs = self.probs(idx, batch_size)
        onehot = keras.utils.to_categorical(labels[idx], 2).astype(np.float32)
        loss = float(np.mean(keras.ops.convert_to_numpy(binary_crossentropy(onehot, probs))))
        accuracy = float(np.mean(np.argmax(probs, axis=1) == labels[idx]))
        return {"loss": loss, "accuracy": accuracy}, probs


def enter(
    network: Network,
    config: TrainConfig,
    number: int,
    optimizer_variables: list[np.ndarray] | None,
    source: Source,
    images: ImageSource,
    labels: np.ndarray,
    class_weight: dict | None,
) -> Stage:
    """The compiled target of stage ``number``: the head on features, or a twin of the whole model
    (sharing its layers, so the logged model carries no training-only loss) on images. Stage 2
    unfreezes the base's top layers and trains on images every trainable weight, the head's too,
    with one new optimizer at the constant ``fine_tune_lr``. ``optimizer_variables``: the
    optimizer's, when continuing a run. The head on features trains whole epochs per compiled call
    (``compiled_epoch``) where the backend has them."""
    lr = None
    if number == 2:
        unfreeze_top(network.base, config.recipe.fine_tune_layers)
        source, lr = images, config.recipe.fine_tune_lr
    on_images = isinstance(source, ImageSource)
    target = keras.Model(network.model.input, network.model.output) if on_images else network.head
    target.compile(
        optimizer=make_optimizer(config, lr),
        loss=binary_crossentropy,
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        jit_compile=config.jit_compile,
    )
    if optimizer_variables is not None:  # continuing a run: its optimizer as it was
        target.optimizer.build(target.trainable_variables)
        for variable, value in zip(target.optimizer.variables, optimizer_variables, strict=True):
            variable.assign(value)
    compiled = None
    if config.compiled_epoch:
        recipe = config.recipe
        compiled = CompiledEpoch.build(
            target,
            source,
            labels,
            class_weight,
            config.batch_size,
            recipe.augmentation,
            recipe.test_time.variants,
        )
    return Stage(source, target, compiled)


def run_epoch(
    stage: Stage,
    augment_rng: np.random.Generator,
    config: TrainConfig,
    labels: np.ndarray,
    order: np.ndarray,
    weights: dict | None,
) -> dict:
    """One epoch of ``stage`` over ``order``, compiled or batch by batch; either way the
    augmentation draws come from ``augment_rng`` as ``epoch_inputs`` draws them."""
    augment = config.recipe.augmentation
    if stage.compiled is not None:
        variants = draw_variants(augment_rng, len(order)) if augment.draws_variants else None
        return stage.compiled.train(order, variants)
    take = epoch_inputs(stage.source, augment, augment_rng, len(order))
    return train_epoch(stage.target, None, labels, order, config.batch_size, weights, take)
