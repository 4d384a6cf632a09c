"""Feature extraction: uint8 batches read ahead on a thread, the same features as float32 batches."""

from __future__ import annotations

import numpy as np

from leukml.archs import ModelConfig
from leukml.augment import dihedral
from leukml.config import TrainConfig
from leukml.inputs import feature_source, read_ahead
from leukml.models import build_network
from leukml.training import prepare_data


def test_read_ahead_gives_every_batch_in_order_as_uint8():
    images = np.random.default_rng(0).integers(0, 255, (10, 8, 8, 3), dtype=np.uint8)
    for variant in (0, 5):
        got = list(read_ahead(images, 4, variant))
        assert [start for start, _ in got] == [0, 4, 8]
        assert all(batch.dtype == np.uint8 for _, batch in got)
        assert np.array_equal(np.concatenate([b for _, b in got]), dihedral(images, variant))
    assert list(read_ahead(images[:0], 4)) == []


def test_features_of_uint8_batches_equal_those_of_float32_images(tiny_data):
    config = TrainConfig.of(data_dir=str(tiny_data), weights="none", image_size=32, tta="dihedral")
    prepared = prepare_data(config)
    network = build_network(ModelConfig(arch="vgg16", weights="none", image_size=32), seed=3)
    source = feature_source(network, prepared, config, batch_size=20)  # 48 images: a partial batch
    images = np.asarray(prepared.images)
    for variant in (0, 3, 6):
        expected = np.asarray(
            network.extractor.predict_on_batch(dihedral(images, variant).astype(np.float32))
        )
        assert np.allclose(source.arrays[variant], expected, atol=1e-5), variant
