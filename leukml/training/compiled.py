"""The head's whole training epoch in one compiled call, the cached features resident on the device.

A head step on cached features moves a few MB, so calling ``train_on_batch`` once per batch from
Python spends most of an accelerator's time on dispatch. ``CompiledEpoch`` takes the features on
the device (``FeatureSource.on_device``: with dihedral augmentation or TTA all 8 variants'; kept
there from extraction, or by a search worker across trials), converts the one-hot labels and the
class weights to device tensors once per training, and runs every full batch of an epoch in one
compiled program that loops over the batches on the device, gathering each batch there; the last,
partial batch is one more call of the same program. ``predict`` runs the validation and test
passes the same way, in the training's batch size. Each step is the model's own ``train_step``,
with its metrics reset before it as ``train_on_batch`` resets them: the same batch order,
learning-rate schedule (by optimizer iteration), class weights, dropout seeds and per-batch loss
and accuracy as ``stage.train_epoch``, which averages them the same way (tests/test_compiled.py
trains both ways).

JAX: ``jax.jit`` of a ``jax.lax.scan`` over the batches with the stateless ``train_step``;
TensorFlow: a ``tf.function`` around a ``tf.while_loop``. The backend's own module is imported only
on that backend, so the core still runs on any Keras 3 backend; elsewhere (torch; JAX with
``jit_compile=False``) ``CompiledEpoch.build`` returns None and the loop trains batch by batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import keras
import numpy as np

from leukml.data.augment import NO_AUGMENTATION, Augmentation
from leukml.model.keras_compat import symbolic_build
from leukml.training import device
from leukml.training.sources import FeatureSource, Source

log = logging.getLogger(__name__)

LOGGED = ("loss", "accuracy")  # what an epoch reports: the batch-size-weighted means of these
# (record indices, feature rows), each (steps, batch) -> per-step LOGGED values, (steps,) each
Program = Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]
# feature rows, (steps, batch) -> the target's outputs, (steps, batch, 2)
Forward = Callable[[np.ndarray], np.ndarray]


def sample_weights(labels: np.ndarray, class_weight: dict | None) -> np.ndarray | None:
    """Per-sample weights as Keras derives them from ``class_weight`` (classes not named: 1)."""
    if class_weight is None:
        return None
    return np.array([class_weight.get(int(c), 1.0) for c in labels], dtype=keras.config.floatx())


class CompiledEpoch:
    """One compiled target's epochs on cached features held on the device (see the module)."""

    def __init__(self, program: Program, forward: Forward, n: int, variants: int, batch_size: int) -> None:
        self.program, self.forward = program, forward
        self.n, self.variants, self.batch_size = n, variants, batch_size

    @classmethod
    def build(
        cls,
        target: keras.Model,
        source: Source,
        labels: np.ndarray,
        class_weight: dict | None,
        batch_size: int,
        augment: Augmentation = NO_AUGMENTATION,
        variants: int = 1,
    ) -> CompiledEpoch | None:
        """The compiled epoch of ``target`` (compiled) on ``source`` under ``augment``, or None where
        there is none: images, ``full`` augmentation (drawn per batch on the host), torch, JAX without
        XLA. ``labels``: of every record; ``variants``: how many dihedral variants' features to hold
        on the device (8 for test-time augmentation; an augmentation that draws variants holds all
        it draws from)."""
        if not device.resident(target.jit_compile):
            return None
        if not isinstance(source, FeatureSource) or augment.jitters:
            return None
        count = max(augment.variants, variants)
        need = source.device_need(count)
        if not device.holds(need):
            log.warning(
                "the features for compiled epochs (%d variant(s), %.1f GB more) do not fit the "
                "device's free memory: the head trains batch by batch, as with --no-compiled-epoch",
                count,
                need / 1e9,
            )
            return None
        onehot = keras.utils.to_categorical(labels, 2).astype(np.float32)
        weights = sample_weights(labels, class_weight)
        first = np.zeros((min(batch_size, source.shape[0]), *source.shape[1:]), np.float32)  # its shapes
        _build_state(target, first, onehot[:batch_size], weights)
        features = source.on_device(count)
        data = (features, *(None if a is None else keras.ops.convert_to_tensor(a) for a in (onehot, weights)))
        if keras.backend.backend() == "jax":
            train, predict = _jax_programs(target, data)
        else:
            train, predict = _tf_programs(target, data)
        return cls(train, predict, source.shape[0], count, batch_size)

    def train(self, order: np.ndarray, variants: np.ndarray | None = None) -> dict[str, float]:
        """One pass over ``order`` (record ``order[i]`` as dihedral variant ``variants[i]`` when
        given): the batch-size-weighted means of the loss and accuracy, as ``train_epoch``'s."""
        idx = np.asarray(order, np.int32)
        rows = idx if variants is None else idx + np.asarray(variants, np.int32) * np.int32(self.n)
        full = len(idx) // self.batch_size * self.batch_size
        totals = dict.fromkeys(LOGGED, 0.0)
        for start, stop, size in ((0, full, self.batch_size), (full, len(idx), len(idx) - full)):
            if stop <= start:
                continue
            logs = self.program(idx[start:stop].reshape(-1, size), rows[start:stop].reshape(-1, size))
            for step in range(len(logs[LOGGED[0]])):  # the same float sums as train_epoch's
                for key in LOGGED:
                    totals[key] += float(logs[key][step]) * size
        return {key: value / len(idx) for key, value in totals.items()}

    def predict(self, idx: np.ndarray, variant: int = 0) -> np.ndarray | None:
        """The target's outputs for records ``idx`` (as dihedral ``variant``) in batches of the
        training's batch size, as ``inputs.predict_probs`` computes them, in one compiled call for the
        full batches and one for the rest; None for a variant not held on the device."""
        if variant >= self.variants:
            return None
        rows = np.asarray(idx, np.int32) + np.int32(variant * self.n)
        full = len(rows) // self.batch_size * self.batch_size
        parts = [
            self.forward(rows[start:stop].reshape(-1, size)).reshape(-1, 2)
            for start, stop, size in ((0, full, self.batch_size), (full, len(rows), len(rows) - full))
            if stop > start
        ]
        return np.concatenate(parts) if parts else np.zeros((0, 2), np.float32)


def _build_state(target: keras.Model, x: np.ndarray, y: np.ndarray, weights: np.ndarray | None) -> None:
    """Create what ``train_on_batch`` creates on its first call (the compiled loss and metrics,
    the optimizer's variables), so that the program can be traced before any step ran."""
    sample = None if weights is None else weights[: len(x)]
    symbolic_build(target, (x.astype(np.float32), y, sample))
    if not target.optimizer.built:
        target.optimizer.build(target.trainable_variables)


def _jax_programs(target: keras.Model, data: tuple) -> tuple[Program, Forward]:
    import jax  # this backend's own: only here

    def epoch(state, fresh_metrics, data, idx, rows):
        features, onehot, weights = data

        def step(state, batch):
            i, r = batch
            x, y = keras.ops.take(features, r, axis=0), keras.ops.take(onehot, i, axis=0)
            w = None if weights is None else keras.ops.take(weights, i, axis=0)
            logs, (trainable, non_trainable, optimizer, _) = target.train_step(
                (*state, fresh_metrics), (x, y, w)
            )
            return (trainable, non_trainable, optimizer), {k: logs[k] for k in LOGGED}

        return jax.lax.scan(step, state, (idx, rows))

    def outputs(trainable, non_trainable, features, rows):
        def one(r):
            x = keras.ops.take(features, r, axis=0)
            return target.stateless_call(trainable, non_trainable, x, training=False)[0]

        return jax.lax.map(one, rows)

    compiled, predicting = jax.jit(epoch, donate_argnums=0), jax.jit(outputs)
    holders = (target.trainable_variables, target.non_trainable_variables, target.optimizer.variables)

    def run(idx: np.ndarray, rows: np.ndarray) -> dict[str, np.ndarray]:
        target.reset_metrics()  # every step starts from these, as train_on_batch's does
        fresh = [v.value for v in target.metrics_variables]
        state = tuple([v.value for v in group] for group in holders)
        state, logs = compiled(state, fresh, data, idx, rows)
        for group, values in zip(holders, state, strict=True):
            for variable, value in zip(group, values, strict=True):
                variable.assign(value)
        return {k: np.asarray(v) for k, v in logs.items()}

    def forward(rows: np.ndarray) -> np.ndarray:
        weights = ([v.value for v in holders[0]], [v.value for v in holders[1]])
        return np.asarray(predicting(*weights, data[0], rows))

    return run, forward


def _tf_programs(target: keras.Model, data: tuple) -> tuple[Program, Forward]:
    import tensorflow as tf  # this backend's own: only here

    features, onehot, weights = data

    def epoch(idx, rows):
        steps = tf.shape(idx)[0]

        def step(s, outs):
            for metric in target.metrics:
                metric.reset_state()
            i, r = idx[s], rows[s]
            w = None if weights is None else tf.gather(weights, i)
            logs = target.train_step((tf.gather(features, r), tf.gather(onehot, i), w))
            outs = tuple(o.write(s, tf.cast(logs[k], tf.float32)) for o, k in zip(outs, LOGGED, strict=True))
            return s + 1, outs

        outs = tuple(tf.TensorArray(tf.float32, size=steps) for _ in LOGGED)
        _, outs = tf.while_loop(lambda s, _: s < steps, step, (tf.constant(0), outs))
        return {k: o.stack() for k, o in zip(LOGGED, outs, strict=True)}

    def outputs(rows):
        spec = tf.TensorSpec((None, 2), target.outputs[0].dtype)
        one = lambda r: target(tf.gather(features, r), training=False)  # noqa: E731
        return tf.map_fn(one, rows, fn_output_signature=spec)

    jit = bool(target.jit_compile)
    compiled = tf.function(epoch, jit_compile=jit, autograph=False)
    predicting = tf.function(outputs, jit_compile=jit, autograph=False)

    def run(idx: np.ndarray, rows: np.ndarray) -> dict[str, np.ndarray]:
        return {k: v.numpy() for k, v in compiled(tf.constant(idx), tf.constant(rows)).items()}

    return run, lambda rows: predicting(tf.constant(rows)).numpy()
