from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from helpers import tiny_config

from leukml.model.networks import build_network
from leukml.training.bases import BaseCache
from leukml.training.config import TrainConfig
from leukml.training.features import feature_source
from leukml.training.sinks import NullSink
from leukml.training.sources import FeatureSource, ImageSource
from leukml.training.trainer import extract_features, fit, prepare_data, train


def test_milestones_default_to_the_papers_and_the_last_epoch():
    assert TrainConfig.of(epochs=100).milestones == (10, 20, 30, 40, 50, 60, 80, 100)
    assert TrainConfig.of(epochs=25).milestones == (10, 20, 25)
    assert TrainConfig.of(epochs=5, eval_epochs=(2,)).milestones == (2, 5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"optimizer": "adamw"}, "choose one of: adam, rmsprop, sgd"),
        ({"epochs": 5, "eval_epochs": (7,)}, "outside 1..epochs"),
        ({"split": "random"}, "choose one of: image, subject, fold"),
    ],
)
def test_bad_train_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig.of(**kwargs)


def test_feature_cache_path_equals_end_to_end(tiny_data):
    """Head on cached features == whole model end to end, from the same start and batch order."""
    config = tiny_config(tiny_data, epochs=2, lr=1e-3, seed=3)
    prepared = prepare_data(config)
    net = build_network(config.model)
    start = net.head.get_weights()
    test_images = np.asarray(prepared.images[prepared.split.test], dtype=np.float32)
    before = np.asarray(net.model.predict(test_images, verbose=0))

    features = extract_features(net, prepared, config)
    fast = fit(net, prepared, config, NullSink(), FeatureSource([features]))
    fast_probs = np.asarray(net.model.predict(test_images, verbose=0))

    net.head.set_weights(start)
    slow = fit(net, prepared, config, NullSink(), ImageSource(prepared.images))
    slow_probs = np.asarray(net.model.predict(test_images, verbose=0))

    assert np.abs(fast_probs - before).max() > 1e-3  # training moved the model
    np.testing.assert_allclose(fast_probs, slow_probs, atol=1e-4)
    np.testing.assert_allclose(fast.history["train_loss"], slow.history["train_loss"], rtol=1e-4)
    assert fast.milestones.keys() == slow.milestones.keys() == {2}


@pytest.mark.slow
def test_dihedral_augmentation_on_cached_variants_equals_end_to_end(tiny_data):
    """Head on the 8 dihedral variants' cached features == whole model on turned images, from the
    same start, batch order and draws; and so are the test-time-augmented metrics."""
    config = tiny_config(tiny_data, epochs=2, lr=1e-3, seed=3, augment="dihedral", tta="dihedral")
    prepared = prepare_data(config)
    net = build_network(config.model)
    start = net.head.get_weights()
    test_images = np.asarray(prepared.images[prepared.split.test], dtype=np.float32)

    variants = feature_source(net, prepared, config)
    fast = fit(net, prepared, config, NullSink(), variants)
    fast_probs = np.asarray(net.model.predict(test_images, verbose=0))

    net.head.set_weights(start)
    slow = fit(net, prepared, config, NullSink(), ImageSource(prepared.images))
    slow_probs = np.asarray(net.model.predict(test_images, verbose=0))

    net.head.set_weights(start)
    plain = fit(net, prepared, config.replace(augment="none"), NullSink(), variants)

    np.testing.assert_allclose(fast_probs, slow_probs, atol=1e-4)
    np.testing.assert_allclose(fast.history["train_loss"], slow.history["train_loss"], rtol=1e-4)
    assert fast.history["train_loss"] != plain.history["train_loss"]  # the draws were applied
    tested = [k for k in fast.milestones[2] if not k.endswith("_tta")]
    assert sorted(k for k in fast.milestones[2] if k.endswith("_tta")) == sorted(f"{k}_tta" for k in tested)
    assert fast.milestones[2] == pytest.approx(slow.milestones[2], abs=1e-6, nan_ok=True)


def _fit_head(data_dir, **options):
    """A tiny VGG16 head trained on cached features: (prepared, network, features, result)."""
    config = tiny_config(data_dir, **options)
    prepared = prepare_data(config)
    net = build_network(config.model)
    features = extract_features(net, prepared, config)
    return prepared, net, features, fit(net, prepared, config, NullSink(), features)


def test_train_metrics_are_epoch_means(tiny_data):
    """With a learning rate too small to move the weights, the epoch's train loss and accuracy
    must equal an evaluation of the whole training split (not the last batch's values)."""
    prepared, net, features, result = _fit_head(tiny_data, epochs=1, lr=1e-12, seed=5)
    train = np.asarray(features[prepared.split.train])
    probs = np.asarray(net.head.predict(train, verbose=0))
    labels = prepared.dataset.labels[prepared.split.train]
    accuracy = float((probs.argmax(1) == labels).mean())
    assert result.history["train_accuracy"][0] == pytest.approx(accuracy, abs=1e-6)
    eps = 1e-7
    p = np.clip(probs, eps, 1 - eps)
    onehot = np.eye(2)[labels]
    bce = float(-(onehot * np.log(p) + (1 - onehot) * np.log(1 - p)).mean())
    assert result.history["train_loss"][0] == pytest.approx(bce, rel=1e-3)


def test_validation_metrics_equal_keras_evaluate(tiny_data):
    """Validation loss and accuracy come from one prediction pass (reused at milestones): they
    must be what Keras' own evaluate reports for the same model and split."""
    prepared, net, features, result = _fit_head(tiny_data, epochs=2, lr=1e-3, seed=4)
    test = prepared.split.test
    onehot = np.eye(2, dtype=np.float32)[prepared.dataset.labels[test]]
    keras_logs = net.head.evaluate(
        np.asarray(features[test]), onehot, batch_size=8, verbose=0, return_dict=True
    )
    assert result.history["val_loss"][-1] == pytest.approx(keras_logs["loss"], rel=1e-5)
    assert result.history["val_accuracy"][-1] == pytest.approx(keras_logs["accuracy"], abs=1e-6)
    assert result.milestones[2]["test_accuracy"] == pytest.approx(keras_logs["accuracy"], abs=1e-6)


def test_a_shared_base_cache_changes_no_result(tiny_data):
    """A search worker's trials share a frozen base: same weights, same results as a fresh build,
    whatever ran before (the head's initial weights depend on the seed alone)."""
    config = tiny_config(tiny_data, epochs=2, lr=1e-3, seed=6)
    fresh = train(config)
    bases = BaseCache()
    first = train(config, bases=bases)
    other = train(dataclasses.replace(config, optimizer="rmsprop"), bases=bases)
    again = train(config, bases=bases)
    assert len(bases) == 1
    assert first.network.base is other.network.base is again.network.base
    assert fresh.network.base is not first.network.base
    for result in (first, again):
        assert result.milestones == fresh.milestones
        for mine, theirs in zip(
            result.network.model.get_weights(), fresh.network.model.get_weights(), strict=True
        ):
            np.testing.assert_array_equal(mine, theirs)
    assert other.milestones != fresh.milestones or other.history != fresh.history


def test_a_long_runs_epoch_n_model_is_the_n_epoch_runs(tiny_data):
    """The learning rate follows the optimizer step, not the run's length: the milestone at epoch 2
    of a 4-epoch run is what a 2-epoch run of the same seed gives (so one long run stands for the
    paper's shorter ones). A steep decay makes any dependence on the length show."""
    common = {"lr": 1e-3, "seed": 8, "decay_steps": 2, "decay_rate": 0.5, "dropout": 0.3}
    long = train(tiny_config(tiny_data, epochs=4, eval_epochs=(2, 4), **common))
    short = train(tiny_config(tiny_data, epochs=2, **common))
    assert sorted(long.milestones) == [2, 4] and sorted(short.milestones) == [2]
    # the tiny model's predicted classes barely move in 2 epochs: its AUC and the curves (val_* is
    # the test side here: no validation split) show the model itself
    assert "test_auc" in short.milestones[2] and len(short.history["val_loss"]) == 2
    assert long.milestones[2] == pytest.approx(short.milestones[2], rel=1e-6, abs=1e-7, nan_ok=True)
    assert set(long.history) == set(short.history)
    for key, values in short.history.items():
        assert long.history[key][:2] == pytest.approx(values, rel=1e-6, nan_ok=True), key
    assert long.history["train_loss"][3] != long.history["train_loss"][1]  # and the long run went on
