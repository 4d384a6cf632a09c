"""The head's whole training epoch in one compiled call, the cached features resident on the device.

A head step on cached features moves a few MB, so calling ``train_on_batch`` once per batch from
Python spends most of an accelerator's time on dispatch. ``CompiledEpoch`` converts the features
(with dihedral augmentation: all 8 variants'), the one-hot labels and the class weights to device
tensors once per training, and runs every full batch of an epoch in one compiled program that loops
over the batches on the device, gathering each batch there; the last, partial batch is one more
call of the same program. Each step is the model's own ``train_step``, with its metrics reset
before it as ``train_on_batch`` resets them: the same batch order, learning-rate schedule (by
optimizer iteration), class weights, dropout seeds and per-batch loss and accuracy as
``loop.train_epoch``, which averages them the same way (tests/test_compiled.py trains both ways).

JAX: ``jax.jit`` of a ``jax.lax.scan`` over the batches with the stateless ``train_step``;
TensorFlow: a ``tf.function`` around a ``tf.while_loop``. The backend's own module is imported only
on that backend, so the core still runs on any Keras 3 backend; elsewhere (torch; JAX with
``jit_compile=False``) ``CompiledEpoch.build`` returns None and the loop trains batch by batch.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np

from leukml.inputs import FeatureSource, Source

LOGGED = ("loss", "accuracy")  # what an epoch reports: the batch-size-weighted means of these
# (record indices, feature rows), each (steps, batch) -> per-step LOGGED values, (steps,) each
Program = Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]


def sample_weights(labels: np.ndarray, class_weight: dict | None) -> np.ndarray | None:
    """Per-sample weights as Keras derives them from ``class_weight`` (classes not named: 1)."""
    if class_weight is None:
        return None
    return np.array([class_weight.get(int(c), 1.0) for c in labels], dtype=keras.config.floatx())


class CompiledEpoch:
    """One compiled target's epochs on cached features held on the device (see the module)."""

    def __init__(self, program: Program, n: int, batch_size: int) -> None:
        self.program, self.n, self.batch_size = program, n, batch_size

    @classmethod
    def build(
        cls,
        target: keras.Model,
        source: Source,
        labels: np.ndarray,
        class_weight: dict | None,
        batch_size: int,
        augment: str = "none",
    ) -> CompiledEpoch | None:
        """The compiled epoch of ``target`` (compiled) on ``source`` under ``augment``, or None where
        there is none: images, ``full`` augmentation (drawn per batch on the host), torch, JAX without
        XLA. ``labels``: of every record; ``dihedral`` puts all 8 variants' features on the device."""
        backend = keras.backend.backend()
        if backend not in ("jax", "tensorflow") or (backend == "jax" and not target.jit_compile):
            return None
        if not isinstance(source, FeatureSource) or augment not in ("none", "dihedral"):
            return None
        arrays = source.arrays if augment == "dihedral" else source.arrays[:1]
        host = np.concatenate(arrays) if len(arrays) > 1 else np.asarray(arrays[0])
        onehot = keras.utils.to_categorical(labels, 2).astype(np.float32)
        weights = sample_weights(labels, class_weight)
        _build_state(target, host[:batch_size], onehot[:batch_size], weights)
        data = tuple(
            None if a is None else keras.ops.convert_to_tensor(a)
            for a in (host.astype(np.float32, copy=False), onehot, weights)
        )
        make = _jax_program if backend == "jax" else _tf_program
        return cls(make(target, data), len(arrays[0]), batch_size)

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


def _build_state(target: keras.Model, x: np.ndarray, y: np.ndarray, weights: np.ndarray | None) -> None:
    """Create what ``train_on_batch`` creates on its first call (the compiled loss and metrics,
    the optimizer's variables), so that the program can be traced before any step ran."""
    sample = None if weights is None else weights[: len(x)]
    target._symbolic_build(data_batch=(x.astype(np.float32), y, sample))
    if not target.optimizer.built:
        target.optimizer.build(target.trainable_variables)


def _jax_program(target: keras.Model, data: tuple) -> Program:
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

    compiled = jax.jit(epoch, donate_argnums=0)
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

    return run


def _tf_program(target: keras.Model, data: tuple) -> Program:
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

    compiled = tf.function(epoch, jit_compile=bool(target.jit_compile), autograph=False)

    def run(idx: np.ndarray, rows: np.ndarray) -> dict[str, np.ndarray]:
        return {k: v.numpy() for k, v in compiled(tf.constant(idx), tf.constant(rows)).items()}

    return run
