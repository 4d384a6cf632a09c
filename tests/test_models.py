from __future__ import annotations

import time

import numpy as np
import pytest

from leukml.models import ARCHS, ModelConfig, build_base, build_network


@pytest.mark.parametrize("arch", list(ARCHS))
def test_every_arch_takes_raw_images(arch):
    net = build_network(ModelConfig(arch=arch, weights="none", image_size=32))
    images = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    probs = np.asarray(net.model.predict(images, verbose=0))
    assert probs.shape == (3, 2)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    assert net.base.trainable is False
    assert net.head.trainable_weights  # only the head learns


def test_weights_file_roundtrip_and_wrong_arch(tmp_path):
    net = build_network(ModelConfig(arch="vgg16", weights="none", image_size=32))
    path = tmp_path / "vgg16_notop.weights.h5"
    net.base.save_weights(str(path))
    loaded = build_base("vgg16", str(path), 32)
    for a, b in zip(net.base.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="does not fit the resnet50 base"):
        build_base("resnet50", str(path), 32)
    with pytest.raises(FileNotFoundError, match="weights=none"):
        build_base("vgg16", str(tmp_path / "missing.weights.h5"), 32)


def test_imagenet_offline_fails_fast_naming_alternatives(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # no cached download
    start = time.monotonic()
    try:
        build_base("vgg16", "imagenet", 32)
    except ValueError as exc:
        assert "weights=none" in str(exc) and "weights=<path" in str(exc)
        assert time.monotonic() - start < 30
    else:
        pytest.skip("ImageNet weights were downloadable: this machine is online")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"arch": "vgg17"}, "choose one of: vgg16, resnet50"),
        ({"pooling": "max"}, "flatten, avg"),
        ({"image_size": 16}, "at least 32"),
    ],
)
def test_bad_model_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(**kwargs)
