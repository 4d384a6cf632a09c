"""Training: data preparation, the frozen-base fast path, milestone evaluation. No MLflow here.

Results flow out through a ``MetricSink`` (per-epoch curves, milestone metrics), so the same loop
runs with or without tracking, on any Keras 3 backend.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import keras
import numpy as np

from leukml.bases import BaseCache, weights_id
from leukml.cachedir import cache_path, cached_array
from leukml.config import OPTIMIZERS, TrainConfig
from leukml.discovery import Dataset, discover
from leukml.evaluation import classification_metrics, per_subject_scores
from leukml.imagecache import load_images
from leukml.models import Network, build_network
from leukml.sinks import MetricSink, NullSink
from leukml.splits import Split, split_records
from leukml.synth import embedded_dataset


@dataclass
class Prepared:
    dataset: Dataset
    split: Split
    images: np.ndarray  # (N, S, S, 3) uint8, memory-mapped


@dataclass
class TrainResult:
    network: Network
    prepared: Prepared
    history: dict[str, list[float]] = field(default_factory=dict)
    milestones: dict[int, dict[str, float]] = field(default_factory=dict)


class Batches(keras.utils.PyDataset):
    """Batches of ``x[idx]`` as float32 (with one-hot labels when given), in a fixed order."""

    def __init__(self, x: np.ndarray, labels: np.ndarray | None, idx: np.ndarray, batch_size: int) -> None:
        super().__init__()
        self.x, self.labels, self.idx, self.batch_size = x, labels, np.asarray(idx), batch_size

    def __len__(self) -> int:
        return -(-len(self.idx) // self.batch_size)

    def __getitem__(self, i: int):
        chosen = self.idx[i * self.batch_size : (i + 1) * self.batch_size]
        x = np.asarray(self.x[chosen], dtype=np.float32)
        if self.labels is None:
            return x
        return x, keras.utils.to_categorical(self.labels[chosen], 2).astype(np.float32)


def prepare_data(config: TrainConfig) -> Prepared:
    """Discover, split and load (cached) the images of ``config.data_dir``."""
    dataset = discover(config.data_dir or embedded_dataset(), strict=config.strict)
    split = split_records(dataset.records, config.split)
    return Prepared(dataset, split, load_images(dataset, config.model.image_size))


def extract_features(
    network: Network,
    prepared: Prepared,
    config: TrainConfig,
    batch_size: int = 64,
    bases: BaseCache | None = None,
) -> np.ndarray:
    """The frozen base's output for every image, cached per (arch, weights, size, dataset).
    ``bases``: the cache that built ``network.base``, which remembers its weights' hash."""
    wid = bases.weights_id(network.base) if bases is not None else weights_id(network.base)
    key = f"{prepared.dataset.fingerprint}-{config.model.arch}-{wid}-{config.model.image_size}"
    policy = network.base.dtype_policy.name
    if policy != "float32":  # a mixed-precision base computes other features
        key += f"-{policy}"
    n = len(prepared.images)
    batches = Batches(prepared.images, None, np.arange(n), batch_size)

    def extract_all(out: np.ndarray) -> None:
        for i in range(len(batches)):
            out[i * batch_size : (i + 1) * batch_size] = keras.ops.convert_to_numpy(
                network.extractor.predict_on_batch(batches[i])
            )

    return cached_array(
        cache_path("features", f"{key}.npy"),
        (n, *network.extractor.output_shape[1:]),
        np.float32,
        extract_all,
    )


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


def make_optimizer(config: TrainConfig) -> keras.optimizers.Optimizer:
    schedule = keras.optimizers.schedules.ExponentialDecay(
        config.lr, decay_steps=config.decay_steps, decay_rate=config.decay_rate
    )
    return getattr(keras.optimizers, OPTIMIZERS[config.optimizer])(learning_rate=schedule)


def _class_weight(labels: np.ndarray) -> dict[int, float]:
    counts = np.bincount(labels, minlength=2).astype(float)
    return {c: float(counts.sum() / (2 * counts[c])) for c in range(2) if counts[c]}


def _batch_means(step, inputs: np.ndarray, labels: np.ndarray, order: np.ndarray, batch_size: int) -> dict:
    """``step(x, y)`` over the batches of ``order``; the sample-weighted mean of its loss and
    accuracy, as ``fit`` and ``evaluate`` report them (``*_on_batch`` resets the metrics on every
    call, hence the running sums)."""
    batches = Batches(inputs, labels, order, batch_size)
    totals = {"loss": 0.0, "accuracy": 0.0}
    for i in range(len(batches)):
        x, y = batches[i]
        logs = step(x, y)
        for key in totals:
            totals[key] += float(logs[key]) * len(x)
    return {key: value / len(order) for key, value in totals.items()}


def train_epoch(
    target: keras.Model,
    inputs: np.ndarray,
    labels: np.ndarray,
    order: np.ndarray,
    batch_size: int,
    class_weight: dict | None,
) -> dict:
    """One pass over ``order``; returns the epoch's mean loss and accuracy.

    Our own loop rather than ``fit``: Keras may prefetch a PyDataset's next batches before its
    ``on_epoch_end`` reshuffles, which makes the batch order race; here it is exact.
    """
    return _batch_means(
        lambda x, y: target.train_on_batch(x, y, class_weight=class_weight, return_dict=True),
        inputs,
        labels,
        order,
        batch_size,
    )


def predict_probs(target: keras.Model, inputs: np.ndarray, idx: np.ndarray, batch_size: int) -> np.ndarray:
    batches = Batches(inputs, None, idx, batch_size)
    return np.concatenate(
        [keras.ops.convert_to_numpy(target.predict_on_batch(batches[i])) for i in range(len(batches))]
    )


def _evaluate(
    target: keras.Model, inputs: np.ndarray, labels: np.ndarray, idx: np.ndarray, batch_size: int
) -> tuple[dict, np.ndarray]:
    """Loss and accuracy on ``idx`` as ``evaluate`` reports them (the paper's loss per sample,
    averaged), computed from one prediction pass whose probabilities are returned too: a
    milestone on the same split reuses them, and no separate test step is traced."""
    probs = predict_probs(target, inputs, idx, batch_size)
    onehot = keras.utils.to_categorical(labels[idx], 2).astype(np.float32)
    loss = float(np.mean(keras.ops.convert_to_numpy(binary_crossentropy(onehot, probs))))
    accuracy = float(np.mean(np.argmax(probs, axis=1) == labels[idx]))
    return {"loss": loss, "accuracy": accuracy}, probs


def fit(
    network: Network,
    prepared: Prepared,
    config: TrainConfig,
    sink: MetricSink,
    inputs: np.ndarray,
    target: keras.Model,
) -> TrainResult:
    """Train ``target`` (the head on features, or the whole model on images) on ``inputs``.

    Each epoch logs train/val loss and accuracy; each milestone, the test-split metrics,
    confusion matrix and per-subject table.
    """
    labels, split = prepared.dataset.labels, prepared.split
    val_is_test = split.selection_on_test  # the paper validates on test
    val_idx = split.test if val_is_test else split.val
    weights = _class_weight(labels[split.train]) if config.class_weight else None
    target.compile(
        optimizer=make_optimizer(config),
        loss=binary_crossentropy,
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        jit_compile=config.jit_compile,
    )
    rng = np.random.default_rng(config.seed)
    result = TrainResult(network, prepared)
    test_subjects = [prepared.dataset.records[i].subject for i in split.test]
    for epoch in range(1, config.epochs + 1):
        order = split.train[rng.permutation(len(split.train))]
        logs = train_epoch(target, inputs, labels, order, config.batch_size, weights)
        val_logs, val_probs = _evaluate(target, inputs, labels, val_idx, config.batch_size)
        metrics = {
            "train_loss": logs["loss"],
            "train_accuracy": logs["accuracy"],
            "val_loss": val_logs["loss"],
            "val_accuracy": val_logs["accuracy"],
        }
        metrics = {k: float(v) for k, v in metrics.items()}
        for k, v in metrics.items():
            result.history.setdefault(k, []).append(v)
        sink.log_epoch(epoch, metrics)
        if epoch in config.milestones:
            probs = val_probs if val_is_test else predict_probs(target, inputs, split.test, config.batch_size)
            p_all = probs[:, 1]
            scores, confusion = classification_metrics(labels[split.test], p_all)
            result.milestones[epoch] = scores
            subjects = per_subject_scores(labels[split.test], p_all, test_subjects)
            sink.log_milestone(epoch, scores, confusion, subjects)
    return result


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


def train(config: TrainConfig, sink: MetricSink | None = None, bases: BaseCache | None = None) -> TrainResult:
    """Run one training as configured; results go to ``sink`` as they come.

    With a frozen base and no input randomness, the base's output per image never changes, so the
    head is trained on cached base features: the same model as end-to-end training at a fraction
    of the cost. ``feature_cache=False`` trains end to end. ``bases``: frozen bases shared with
    other trainings (a search worker's), else the base is built for this training alone.
    """
    sink = sink or NullSink()
    prepared = prepare_data(config)
    sink.log_data(prepared.dataset, prepared.split)
    keras.utils.set_random_seed(config.seed)
    with dtype_policy(config.resolved_precision):
        base = bases.base(config) if bases is not None else None
        network = build_network(config.model, base=base, seed=config.seed)
        if config.feature_cache:
            features = extract_features(network, prepared, config, bases=bases)
            return fit(network, prepared, config, sink, features, network.head)
        # a twin sharing the layers is compiled, so the logged model carries no training-only loss
        trainer = keras.Model(network.model.input, network.model.output)
        return fit(network, prepared, config, sink, prepared.images, trainer)
