"""Feature extraction: uint8 batches read ahead on a thread, the same features as float32 batches,
kept on the device for the head's training and, in a worker, for its next trials."""

from __future__ import annotations

import subprocess
import sys
import threading

import keras
import numpy as np
import pytest
from helpers import tiny_config, tiny_model

from leukml.data.augment import dihedral
from leukml.model.networks import build_network
from leukml.training import device, features
from leukml.training.bases import BaseCache
from leukml.training.config import TrainConfig
from leukml.training.features import feature_source, read_ahead
from leukml.training.sinks import NullSink
from leukml.training.sources import FeatureSource, device_need
from leukml.training.trainer import fit, prepare_data, train

GATE_BOUND_S = 600  # how long a gated write waits at most: reached only by a deadlock (pytest-timeout 900 s)


def test_read_ahead_gives_every_batch_in_order_as_uint8():
    images = np.random.default_rng(0).integers(0, 255, (10, 8, 8, 3), dtype=np.uint8)
    for variant in (0, 5):
        got = list(read_ahead(images, 4, variant))
        assert [start for start, _ in got] == [0, 4, 8]
        assert all(batch.dtype == np.uint8 for _, batch in got)
        assert np.array_equal(np.concatenate([b for _, b in got]), dihedral(images, variant))
    assert list(read_ahead(images[:0], 4)) == []


def test_features_of_uint8_batches_equal_those_of_float32_images(tiny_data):
    config = tiny_config(tiny_data, tta="dihedral")
    prepared = prepare_data(config)
    network = build_network(tiny_model(arch="vgg16"), seed=3)
    source = feature_source(network, prepared, config, batch_size=20)  # 48 images: a partial batch
    images = np.asarray(prepared.images)
    for variant in (0, 3, 6):
        expected = np.asarray(
            network.extractor.predict_on_batch(dihedral(images, variant).astype(np.float32))
        )
        assert np.allclose(source.arrays[variant], expected, atol=1e-5), variant
        assert np.array_equal(np.asarray(source.extracted[variant]), source.arrays[variant])  # device twin


def test_bases_with_other_weights_get_their_own_cached_features(tiny_data, tmp_path, monkeypatch):
    """The cache key holds the base's weights: two bases of one arch, size and dataset (seeds 1
    and 2 of weights=none) extract into two files, each holding its own base's features."""
    monkeypatch.setenv("LEUKML_CACHE", str(tmp_path))
    config = TrainConfig.of(data_dir=str(tiny_data), weights="none", image_size=32)
    prepared = prepare_data(config)
    images = np.asarray(prepared.images).astype(np.float32)
    got = {}
    for seed in (1, 2):
        network = build_network(config.model, seed=seed)
        got[seed] = features.extract_features(network, prepared, config, batch_size=16)
        expected = np.asarray(network.extractor.predict_on_batch(images))
        np.testing.assert_allclose(got[seed], expected, atol=1e-5, err_msg=f"seed {seed}")
    assert len(list((tmp_path / "features").glob("*.npy"))) == 2
    assert not np.allclose(got[1], got[2])


def test_features_extracted_for_training_stay_on_the_device_and_a_worker_reuses_them(
    tiny_data, tmp_path, monkeypatch
):
    """Extraction keeps its outputs on the device for the compiled epoch (no float32 copy from the
    host), and a worker's next training on the same features copies nothing to the device."""
    monkeypatch.setenv("LEUKML_CACHE", str(tmp_path))  # nothing extracted yet
    copied, held = [], []
    to_device, on_device = device.to_device, FeatureSource.on_device
    monkeypatch.setattr(device, "to_device", lambda x: copied.append(np.asarray(x).dtype) or to_device(x))

    def spy(self, count=1):
        out = on_device(self, count)
        held.append((id(self), id(out)))
        return out

    monkeypatch.setattr(FeatureSource, "on_device", spy)
    config = tiny_config(tiny_data, epochs=2)
    bases = BaseCache()
    first = train(config, bases=bases)
    assert copied and set(copied) == {np.dtype(np.uint8)}  # image batches only: features stayed there
    assert len(set(held)) == 1
    copied.clear()
    second = train(config.replace(optimizer="rmsprop"), bases=bases)
    assert copied == []  # the worker's features were on the device already
    assert len(set(held)) == 1 and len(held) == 2  # the same source, the same device tensor
    assert second.history["train_loss"] != first.history["train_loss"]  # it trained (another optimizer)
    monkeypatch.setenv("LEUKML_CACHE", str(tmp_path / "again"))
    alone = train(config.replace(compiled_epoch=False))  # host features, batch by batch, extracted anew
    np.testing.assert_allclose(alone.history["val_loss"], first.history["val_loss"], rtol=1e-5)


def test_training_starts_while_the_feature_cache_file_is_still_written(tiny_data, tmp_path, monkeypatch):
    """Features kept on the device are handed over at once: the head trains on them while no row
    has reached the cache file yet (the writes wait on a gate); once written, the file is in place
    and holds the device's features."""
    monkeypatch.setenv("LEUKML_CACHE", str(tmp_path))
    gate, writes = threading.Event(), []
    write = features._write_rows

    def gated(out, start, rows):
        # held until the test opens the gate, however long the training takes; the bound only
        # ends a training that waits for these writes (a deadlock), and names it
        opened = gate.wait(timeout=GATE_BOUND_S)
        writes.append("after the gate" if opened else "gate never opened: the training waited for the writes")
        write(out, start, rows)

    monkeypatch.setattr(features, "_write_rows", gated)
    config = tiny_config(tiny_data, epochs=2)
    prepared = prepare_data(config)
    net = build_network(config.model, seed=0)
    try:
        source = feature_source(net, prepared, config)
        assert len(source.pending) == 1 and not source.pending[0].done()
        assert not list((tmp_path / "features").glob("*.npy"))
        result = fit(net, prepared, config, NullSink(), source)  # on the device's features only
        assert len(result.history["train_loss"]) == 2 and writes == []
    finally:
        gate.set()  # also when an assertion failed: the shared writer thread must not stay held
    source.settle()
    assert writes == ["after the gate"]
    [cached] = (tmp_path / "features").glob("*.npy")
    np.testing.assert_array_equal(np.load(cached), keras.ops.convert_to_numpy(source.device[1]))


def test_a_failed_feature_cache_write_fails_the_training_and_leaves_no_file(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("LEUKML_CACHE", str(tmp_path))

    def full(out, start, rows):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(features, "_write_rows", full)
    config = tiny_config(tiny_data, epochs=1)
    with pytest.raises(OSError, match="No space left on device"):
        train(config)
    assert list((tmp_path / "features").iterdir()) == []  # neither the file nor its temp


def test_features_that_do_not_fit_the_device_train_batch_by_batch(tiny_data, tmp_path, monkeypatch, caplog):
    """With the device's free memory too small for the features (here 48 images x 512 floats, 98 KB,
    against 80% of 100 KB free: 80 KB), extraction keeps nothing there and the head trains batch by
    batch, as with --no-compiled-epoch, saying so; where they fit, nothing changes."""
    monkeypatch.setenv("LEUKML_CACHE", str(tmp_path))
    config = tiny_config(tiny_data, epochs=2)
    prepared = prepare_data(config)
    net = build_network(config.model, seed=0)
    assert device.holds(50_000) and not device.holds(10**15)  # this machine's available RAM
    # 8 variants: their copies and the joined tensor, less those extraction left there
    needs = [device_need(100, 1), device_need(100, 1, 1), device_need(100, 8), device_need(100, 8, 8)]
    assert needs == [100, 0, 1600, 800]
    monkeypatch.setattr(device, "_memory", lambda: (100_000, 200_000))
    assert device.holds(80_000) and not device.holds(80_001)
    assert feature_source(net, prepared, config).extracted == []  # 98,304 bytes: not kept there
    steps = []
    per_batch = keras.Model.train_on_batch
    monkeypatch.setattr(keras.Model, "train_on_batch", lambda *a, **k: steps.append(1) or per_batch(*a, **k))
    with caplog.at_level("WARNING", logger="leukml.training.compiled"):
        small = train(config)
    assert steps  # batch by batch
    assert "the features for compiled epochs (1 variant(s), 0.0 GB more) do not fit" in caplog.text
    monkeypatch.setattr(device, "_memory", lambda: (10**9, 2 * 10**9))
    steps.clear()
    large = train(config)
    assert steps == []  # compiled epochs
    np.testing.assert_allclose(small.history["val_loss"], large.history["val_loss"], rtol=1e-5)


def test_a_worker_releases_the_least_recently_used_device_copies_beyond_its_limit(monkeypatch):
    rng = np.random.default_rng(0)
    sources = {k: FeatureSource([rng.normal(size=(4, 3)).astype(np.float32)]) for k in "abc"}
    bases = BaseCache()
    monkeypatch.setattr(device, "keep_limit", lambda: 2 * 4 * 3 * 4)  # two sources' copies
    for key in "abc":
        bases.features(key, 1, lambda key=key: sources[key]).on_device()
    assert [s.device_bytes for s in sources.values()] == [48, 48, 48]  # within the limit after c
    bases.features("a", 1, lambda: None)  # a is used again: b is now the least recent
    monkeypatch.setattr(device, "keep_limit", lambda: 48)
    assert bases.features("c", 1, lambda: None) is sources["c"]
    assert [sources[k].device_bytes for k in "abc"] == [48, 0, 48]


def test_extraction_batches_take_a_quarter_of_the_free_device_memory():
    conv = keras.layers.Conv2D(8, 3, padding="same")  # its output is the largest, inside the nested base
    inner = keras.Sequential([keras.Input((32, 32, 3)), conv, keras.layers.MaxPooling2D(4)])
    image = keras.Input((32, 32, 3))
    model = keras.Model(image, keras.layers.GlobalAveragePooling2D()(inner(image)))  # a nested base
    per_image = 4 * 4 * 32 * 32 * 8  # 4x the largest activation, 4 bytes each
    assert device.extraction_batch(model) == 64  # this machine is a CPU: no device memory to fill
    assert device.extraction_batch(model, free=4 * per_image * 100) == 64  # 100 fit: a power of two
    assert device.extraction_batch(model, free=4 * per_image * 128) == 128
    assert device.extraction_batch(model, free=4 * per_image * 100_000) == 1024  # at most
    assert device.extraction_batch(model, free=per_image) == 1


FORWARD_CHILD = """
import keras, numpy as np
from leukml.training import device
from leukml.training import features
layers = [keras.Input((4, 4, 3)), keras.layers.Conv2D(2, 3), keras.layers.BatchNormalization()]
model = keras.Sequential(layers)
x = np.random.default_rng(0).normal(size=(5, 4, 4, 3)).astype("float32")
forward = device.forward(model)
first = np.asarray(forward(x))
model.predict_on_batch(x)  # a Keras step on JAX replaces (donates) the variables' buffers
model.set_weights([w + 1.0 for w in model.get_weights()])
assert device.forward(model) is forward  # made once per model
np.testing.assert_allclose(np.asarray(forward(x)), model.predict_on_batch(x), rtol=1e-5, atol=1e-5)
assert not np.allclose(np.asarray(forward(x)), first)
print("ok", keras.backend.backend())
"""


def test_a_device_forward_reads_the_weights_as_they_are_when_called(child_env):
    """On JAX the compiled forward pass takes the variables' values at each call: a Keras step in
    between replaces (donates) their buffers, and new weights must be used."""
    proc = subprocess.run(
        [sys.executable, "-c", FORWARD_CHILD],
        env=child_env(KERAS_BACKEND="jax"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["ok", "jax"]
